"""Every middleware of the gateway, each a plain ASGI class in its own short module; the
stack is assembled, in order, in server/app.py."""
