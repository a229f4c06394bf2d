"""IP rules: with `allowed_ips` set, only those addresses (and this machine) get in.

Checked first, before auth, on every path (console and admin API included): a
LAN-exposed gateway can then be limited to known machines. The address is the TCP
peer's; X-Forwarded-For is not trusted (any client could write it).
"""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def is_allowed(host: str | None, networks: tuple[Network, ...]) -> bool:
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    # This machine always gets in, so a rule can never lock its owner out of the console.
    return address.is_loopback or any(address in network for network in networks)
