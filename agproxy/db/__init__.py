"""The database: one SQLAlchemy engine (SQLite by default), forward-only migrations, tables."""

from agproxy.db.engine import open_database
from agproxy.db.migrations import MIGRATIONS, migrate

__all__ = ["MIGRATIONS", "migrate", "open_database"]
