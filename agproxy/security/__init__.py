"""Security checks in front of every route: who may call what."""
