"""Routing a requested model id to one the pool can serve."""
