"""The account pool: which accounts can serve, held in memory for the request path."""

from agproxy.pool.pool import Pool

__all__ = ["Pool"]
