"""404 answers that name the likely mistake in the client's base URL."""

from __future__ import annotations

import re

# Endpoints a client might mean, without their /v1 prefix.
OPENAI_ENDPOINTS = (
    "/chat/completions",
    "/completions",
    "/responses",
    "/models",
    "/images/generations",
    "/images/edits",
    "/embeddings",
)
ANTHROPIC_ENDPOINTS = ("/messages", "/messages/count_tokens")
KNOWN = tuple("/v1" + e for e in OPENAI_ENDPOINTS + ANTHROPIC_ENDPOINTS)
_BASE_HINT = (
    "Base URLs: OpenAI SDKs use http://HOST:PORT/v1; Anthropic SDKs and Claude Code use "
    "http://HOST:PORT (no /v1); Gemini SDKs use http://HOST:PORT."
)


def hint_for(method: str, path: str) -> str:
    """The 404 message for `path`, naming the likely mistake when there is one."""
    prefix = f"no route for {method} {path}"
    if re.search(r"/v1(beta)?/v1(beta)?(/|$)", path):
        fixed = re.sub(r"(/v1(?:beta)?)+(/v1(?:beta)?)(?=/|$)", r"\2", path, count=1)
        return (
            f"{prefix}: the path repeats '/v1' ({path}). Your base URL probably already ends "
            f"in /v1 and the client adds /v1 again; the endpoint is {fixed}. {_BASE_HINT}"
        )
    for endpoint in KNOWN:
        if path.startswith(endpoint + "/") and path != endpoint:
            tail = path[len(endpoint) :]
            if endpoint == "/v1/models":
                break  # /v1/models/{id} is a real route shape; no joined-endpoint hint
            base = (
                "http://HOST:PORT"
                if endpoint.startswith("/v1/messages")
                else ("http://HOST:PORT/v1")
            )
            return (
                f"{prefix}: '{endpoint}' has '{tail}' appended to it. The client's base URL "
                f"probably already includes the endpoint; set it to {base} and let the "
                f"client add the endpoint path itself. {_BASE_HINT}"
            )
    if path in OPENAI_ENDPOINTS or path in ANTHROPIC_ENDPOINTS:
        return f"{prefix}: the '/v1' prefix is missing; the endpoint is /v1{path}. {_BASE_HINT}"
    return f"{prefix}. {_BASE_HINT}"
