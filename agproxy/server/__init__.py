"""The HTTP side: listener, route table, middleware, the serve loop."""
