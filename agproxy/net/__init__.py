"""Listening sockets and the HTTP connection protocol under the app (uvicorn, extended)."""
