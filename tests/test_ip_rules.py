"""allowed_ips: only listed addresses (and this machine) reach the gateway, whatever the
path; checked with real connections from a non-loopback address of this machine."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import httpx
import pytest

from agproxy.security.ip_rules import is_allowed, parse_networks
from conftest import ZAI_ENV


def lan_address() -> str | None:
    """This machine's own non-loopback IPv4 address, if it has one."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if ipaddress.ip_address(address).is_loopback else address


@pytest.mark.parametrize(
    ("host", "rules", "allowed"),
    [
        ("192.168.1.20", (), True),
        ("192.168.1.20", ("192.168.1.0/24",), True),
        ("192.168.2.20", ("192.168.1.0/24", "10.0.0.5"), False),
        ("10.0.0.5", ("192.168.1.0/24", "10.0.0.5"), True),
        ("127.0.0.1", ("10.0.0.5",), True),  # this machine always gets in
        ("::1", ("10.0.0.5",), True),
        ("::ffff:10.0.0.5", ("10.0.0.5",), True),  # IPv4-mapped IPv6
        ("fd00::7", ("fd00::/64",), True),
        ("not-an-ip", ("10.0.0.5",), False),
    ],
)
def test_rules(host: str, rules: tuple[str, ...], allowed: bool) -> None:
    assert is_allowed(host, parse_networks(rules)) is allowed


def test_only_listed_addresses_get_in(gateway_factory: Any) -> None:
    address = lan_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to connect from")
    gw = gateway_factory("gw", AGPROXY_ALLOW_LAN_ACCESS="true", AGPROXY_AUTH_MODE="off", **ZAI_ENV)
    remote = f"http://{address}:{gw.port}"
    assert httpx.get(remote + "/healthz", timeout=10).json() == {"status": "ok"}

    saved = gw.admin("PUT", "/api/config", json={"allowed_ips": "10.9.9.0/24"})
    assert saved.status_code == 200
    for path, shape in (
        ("/healthz", "error"),
        ("/v1/models", "error"),
        ("/", "error"),
        ("/v1beta/models", "error"),
    ):
        refused = httpx.get(remote + path, timeout=10)
        assert refused.status_code == 403, path
        assert f"{address} is not in allowed_ips" in str(refused.json()[shape])
    google = httpx.get(remote + "/v1beta/models", timeout=10).json()["error"]
    assert google["status"] == "PERMISSION_DENIED"  # the Gemini shape on Gemini paths
    assert gw.get("/healthz").status_code == 200  # from this machine, still in

    bad = gw.admin("PUT", "/api/config", json={"allowed_ips": "10.9.9.0/24, nonsense"})
    assert bad.status_code == 400 and "'nonsense' is not an IP address" in bad.text
    gw.admin("PUT", "/api/config", json={"allowed_ips": f"10.9.9.0/24, {address}"})
    assert httpx.get(remote + "/healthz", timeout=10).status_code == 200
