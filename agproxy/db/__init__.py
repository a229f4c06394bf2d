"""The store: one SQLAlchemy engine (SQLite by default, or PostgreSQL), forward-only
migrations, tables."""

from agproxy.db.engine import StoreError, open_database, open_store, store_location
from agproxy.db.migrations import MIGRATIONS, migrate

__all__ = ["MIGRATIONS", "StoreError", "migrate", "open_database", "open_store", "store_location"]
