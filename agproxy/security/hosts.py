"""Host check: a request must name this gateway in its Host header.

A web page can make a browser talk to 127.0.0.1 under a name it controls (DNS
rebinding: evil.example resolves first to the attacker, then to 127.0.0.1), and the
browser then treats the gateway as that page's own origin. Such a request carries the
attacker's name in Host. Accepted are: no Host at all (HTTP/1.0 tools), any IP
address literal (a rebinding attack needs a name), `localhost`, this machine's host
name (and its `.local` mDNS form), and the `allowed_hosts` setting (exact names,
`.example.com` for a domain and its subdomains, or `*` to switch the check off, e.g.
behind a reverse proxy that checks names itself).
"""

from __future__ import annotations

import ipaddress
import socket


def host_name(header: bytes) -> str:
    """The name part of a Host header, lower case, without port or IPv6 brackets."""
    text = header.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    name, _, _ = text.partition(":")
    return name.rstrip(".")


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def machine_names() -> frozenset[str]:
    names = {"localhost"}
    hostname = socket.gethostname().lower().rstrip(".")
    if hostname:
        names |= {hostname, hostname + ".local", hostname.split(".")[0]}
    return frozenset(names)


def host_allowed(name: str, machine: frozenset[str], allowed: tuple[str, ...]) -> bool:
    if not name or name in machine or is_ip_literal(name):
        return True
    for entry in allowed:
        if entry == "*" or entry == name:
            return True
        if entry.startswith(".") and (name == entry[1:] or name.endswith(entry)):
            return True
    return False
