"""The request monitor: one record per proxied request, written in batches off the
request path to the `request_logs` table (plain SQLite you can query yourself)."""

from agproxy.monitor.record import current, note, note_attempt, note_tokens

__all__ = ["current", "note", "note_attempt", "note_tokens"]
