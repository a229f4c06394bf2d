"""What a setting names outside the gateway, checked, and how secrets are shown: an
outbound proxy's URL, the store's URL, a URL or a secret masked for display."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")


def normalize_proxy(url: str) -> str:
    """An outbound proxy URL: http(s) or SOCKS5 (a bare host:port gets http://), with a host
    that can be a proxy (a dotted name, an address, localhost) and a valid port."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    scheme, _, rest = url.partition("://")
    url = f"{scheme.lower()}://{rest}"
    if scheme.lower() not in PROXY_SCHEMES:
        raise ValueError(
            f"{mask_url(url)!r}: only http://, https://, socks5:// and socks5h:// proxies "
            "are supported"
        )
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{mask_url(url)!r}: the port is not a number from 1 to 65535") from None
    host = parts.hostname or ""
    if not host or not (port or "." in host or ":" in host or host == "localhost"):
        raise ValueError(
            f"{mask_url(url)!r} is not a proxy address; write it as "
            "http://host:port (e.g. http://127.0.0.1:7890)"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{mask_url(url)!r}: a proxy URL has no path or query")
    if parts.scheme.startswith("socks"):
        _check_socks(url, port)
    return url


def _check_socks(url: str, port: int | None) -> None:
    """What a SOCKS5 connection can carry: a port (no default is assumed) and, for a
    login (RFC 1929), a user and a password of 1 to 255 ASCII characters each."""
    if not port:
        raise ValueError(f"{mask_url(url)!r}: write a SOCKS proxy as socks5://host:port")
    parts = urlsplit(url)
    if parts.username is None:
        return
    login = (unquote(parts.username), unquote(parts.password or ""))
    if not all(0 < len(part) <= 255 and part.isascii() for part in login):
        raise ValueError(
            f"{mask_url(url)!r}: a SOCKS5 login needs a user and a password, "
            "each 1 to 255 ASCII characters"
        )


POSTGRES_SCHEMES = ("postgresql+psycopg", "postgresql", "postgres")
STORE_URL_RULE = (
    "write sqlite:///path/to/file.db (four slashes before an absolute path) or "
    "postgresql+psycopg://user:password@host:5432/database"
)


def normalize_store_url(url: str) -> str | None:
    """The database `store_url` names, checked: SQLite (`sqlite:///path`; a relative path
    is in the data directory) or PostgreSQL through psycopg, the driver agproxy ships.
    `postgresql://` and `postgres://`, as hosting services hand them out, are read as
    `postgresql+psycopg://`. Blank: None, the data directory's own SQLite file."""
    from sqlalchemy.engine import make_url  # only when a store is named
    from sqlalchemy.exc import ArgumentError

    url = url.strip()
    if not url:
        return None
    refused = ValueError(
        f"store_url {mask_url(url)!r} is not a database agproxy can use; {STORE_URL_RULE}"
    )
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme == "sqlite" and sep:
        # No :memory: (the store would vanish at each start), no options.
        if rest.rstrip("/") in ("", "/:memory:") or not rest.startswith("/") or "?" in rest:
            raise refused
        return f"sqlite://{rest}"
    if scheme not in POSTGRES_SCHEMES or not sep:
        raise refused
    url = f"postgresql+psycopg://{rest}"
    try:
        parsed = make_url(url)  # as the engine will read it; a port that is no number fails
    except (ArgumentError, ValueError):
        raise refused from None
    if "password" in parsed.query:
        raise ValueError(  # mask_url hides the password of user:password@ only
            "store_url: write the password as postgresql+psycopg://user:password@host/…, "
            "not as ?password= (which would be shown where settings are)"
        )
    return url


def mask_url(url: str | None) -> str | None:
    """A URL as it may be shown: the password of `user:password@` replaced by ••••."""
    if not url or "@" not in url:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, _, hostpart = rest.rpartition("@")
    user, has_password, _ = userinfo.partition(":")
    shown = f"{user}:••••" if has_password else "••••"
    return f"{scheme}{sep}{shown}@{hostpart}"


def mask(value: str | None, password: bool = False) -> str | None:
    """A secret as it may be shown: at most its last 4 characters, and only when they are
    a small part of it; nothing of a password."""
    if not value:
        return value
    return "••••" + value[-4:] if len(value) >= 16 and not password else "••••"
