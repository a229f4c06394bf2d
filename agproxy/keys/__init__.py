"""Client keys: per-user keys with their own models, limits and usage."""

from agproxy.keys.store import ClientKey, KeyRefused, KeyStore, digest

__all__ = ["ClientKey", "KeyRefused", "KeyStore", "digest"]
