"""Translation between client protocols and the upstream's Gemini shapes: pure functions,
no I/O (request in, request out; event in, events out)."""
