"""Client keys: what the owner hands to users and tools instead of the one `api_key`, each
with a name, the models it may use and its own limits.

Only a SHA-256 digest of a key's secret is stored. The secrets are 24 random bytes
(`sk-` and 48 hex digits) made here, never chosen by a person, so a slow password hash
would add nothing against guessing (2^192 candidates) while costing every request time;
a plain digest also lets a presented key be found by one indexed lookup instead of a
comparison with every stored key. The secret is shown once, when the key is created or
rotated; lists show its first characters.
"""

from __future__ import annotations

import fnmatch
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import Engine

from agproxy.db import revision
from agproxy.db.tables import client_keys

PREFIX_CHARS = 8  # "sk-" and five hex digits: enough to tell keys apart in a list
LIMITS = ("rpm", "tpm", "concurrency", "daily_tokens", "quota_share")


def digest(secret: bytes | str) -> str:
    raw = secret.encode() if isinstance(secret, str) else secret
    return hashlib.sha256(raw).hexdigest()


def new_secret() -> str:
    return "sk-" + secrets.token_hex(24)


@dataclass(frozen=True, slots=True)
class ClientKey:
    id: str
    name: str
    prefix: str
    digest: str
    models: tuple[str, ...] = ()  # id patterns (`*` wildcards); empty: every model
    expires_at: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    daily_tokens: int | None = None
    quota_share: float | None = None  # percent of the pool's use of a model group
    enabled: bool = True
    created_at: float = field(default_factory=time.time)
    rotated_at: float | None = None

    def allows(self, model: str) -> bool:
        if not self.models:
            return True
        lowered = model.lower()
        return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in self.models)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    @property
    def limited(self) -> bool:
        """Has the key any limit the request path must count?"""
        return any(getattr(self, name) is not None for name in LIMITS)

    def public(self) -> dict[str, Any]:
        """The key as lists show it: never its secret or digest."""
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix + "…",
            "models": list(self.models),
            "expires_at": self.expires_at,
            **{name: getattr(self, name) for name in LIMITS},
            "enabled": self.enabled,
            "created_at": self.created_at,
            "rotated_at": self.rotated_at,
        }


def _row_to_key(row: Any) -> ClientKey:
    data = dict(row._mapping)
    data["models"] = tuple(orjson.loads(data["models"])) if data["models"] else ()
    return ClientKey(**data)


class KeyRefused(Exception):
    """A key operation refused (a name taken, a key not found)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class KeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def revision(self) -> int:
        return revision.read(self.engine, "keys")

    @staticmethod
    def _bump(conn: sa.Connection) -> None:
        revision.bump(conn, "keys")

    def all(self) -> list[ClientKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(client_keys).order_by(client_keys.c.created_at)).all()
        return [_row_to_key(r) for r in rows]

    def find(self, id_or_name: str) -> ClientKey:
        for key in self.all():
            if id_or_name in (key.id, key.name):
                return key
        raise KeyRefused(f"no client key is named {id_or_name!r} (see `agproxy keys list`)", 404)

    def create(self, name: str, **settings: Any) -> tuple[ClientKey, str]:
        """A new key; its secret is returned here and never again."""
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise KeyRefused("a key's name is 1 to 100 characters")
        secret = new_secret()
        key = ClientKey(str(uuid.uuid4()), name, secret[:PREFIX_CHARS], digest(secret), **settings)
        values = _values(key)
        with self.engine.begin() as conn:
            taken = conn.execute(
                sa.select(client_keys.c.id).where(client_keys.c.name == name)
            ).first()
            if taken is not None:
                raise KeyRefused(f"a client key named {name!r} exists already", 409)
            conn.execute(sa.insert(client_keys).values(**values))
            self._bump(conn)
        return key, secret

    def update(self, key_id: str, **values: Any) -> None:
        if "models" in values:
            values["models"] = (
                orjson.dumps(list(values["models"])).decode() if values["models"] else None
            )
        with self.engine.begin() as conn:
            conn.execute(sa.update(client_keys).where(client_keys.c.id == key_id).values(**values))
            self._bump(conn)

    def rotate(self, key_id: str) -> str:
        """A new secret for the key (the old one stops working at once); returned once."""
        secret = new_secret()
        self.update(
            key_id, prefix=secret[:PREFIX_CHARS], digest=digest(secret), rotated_at=time.time()
        )
        return secret

    def delete(self, key_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(client_keys).where(client_keys.c.id == key_id))
            self._bump(conn)


def _values(key: ClientKey) -> dict[str, Any]:
    values = {name: getattr(key, name) for name in ClientKey.__slots__}
    values["models"] = _models_json(key.models)
    return values


def _models_json(models: Any) -> str | None:
    return orjson.dumps(list(models)).decode() if models else None
