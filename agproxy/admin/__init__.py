"""The admin HTTP API under /api (always behind the admin password)."""
