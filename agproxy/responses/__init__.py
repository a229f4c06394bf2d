"""Responses the gateway keeps for the Responses API's `store` and `previous_response_id`."""

from agproxy.responses.store import ResponseStore, StoredResponse

__all__ = ["ResponseStore", "StoredResponse"]
