"""`agproxy doctor`: walk the user's loop (reachable → /healthz → key forms) and say what to fix."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import click
import httpx

from agproxy.cli.client import gateway_address, load_settings


@dataclass
class Check:
    ok: bool
    what: str
    fix: str = ""


def _key_forms(key: str) -> list[tuple[str, str, dict[str, str], dict[str, str]]]:
    """(label, path, headers, query) for every way a client may send the key."""
    return [
        ("Authorization: Bearer", "/v1/models", {"Authorization": f"Bearer {key}"}, {}),
        ("Authorization (bare)", "/v1/models", {"Authorization": key}, {}),
        ("x-api-key", "/v1/models", {"x-api-key": key}, {}),
        ("x-goog-api-key", "/v1beta/models", {"x-goog-api-key": key}, {}),
        ("?key= (Gemini paths)", "/v1beta/models", {}, {"key": key}),
    ]


def run_checks(base: str, api_key: str, admin_secret: str, emit: Callable[[Check], None]) -> bool:
    healthy = True

    def report(check: Check) -> None:
        nonlocal healthy
        healthy &= check.ok
        emit(check)

    client = httpx.Client(base_url=base, timeout=10)
    try:
        health = client.get("/healthz", headers={"Authorization": f"Bearer {api_key}"})
    except httpx.TransportError as exc:
        report(
            Check(
                False,
                f"nothing answers at {base} ({exc})",
                "start the gateway with `agproxy serve`, or check the port "
                "(`agproxy config get port`) and AGPROXY_DATA_DIR",
            )
        )
        return False
    report(Check(True, f"gateway reachable at {base}"))

    admin = client.get("/api/proxy/status", headers={"Authorization": f"Bearer {admin_secret}"})
    if admin.status_code != 200:
        report(
            Check(
                False,
                f"admin API refused the admin password (HTTP {admin.status_code})",
                "AGPROXY_DATA_DIR must point at the data directory of this gateway",
            )
        )
        return False
    status = admin.json()
    for check in _service_checks(status, health):
        report(check)
    if not status["running"]:
        return False
    for check in _key_checks(client, api_key):
        report(check)
    for check in _real_requests(client, api_key):
        report(check)
    return healthy


def _service_checks(status: dict[str, Any], health: httpx.Response) -> Iterator[Check]:
    """Is the proxy service running, and does /healthz answer as the seed shows?"""
    if not status["running"]:
        yield Check(
            False,
            "proxy service is stopped",
            "`agproxy start` (it prints why it cannot start), or Start in the console",
        )
    else:
        yield Check(True, f"proxy service running with {status['active_accounts']} active accounts")
    if health.status_code == 200 and health.json() == {"status": "ok"}:
        yield Check(True, 'GET /healthz → {"status":"ok"}')
    elif status["running"]:
        yield Check(
            False,
            f"GET /healthz answered HTTP {health.status_code}: {health.text[:200]}",
            "see the message above",
        )


def _key_checks(client: httpx.Client, api_key: str) -> Iterator[Check]:
    """The key in each form the seed shows, on a cheap authenticated route."""
    for label, path, headers, query in _key_forms(api_key):
        response = client.get(path, headers=headers, params=query)
        if response.status_code == 200:
            yield Check(True, f"key accepted as {label} ({path})")
        else:
            yield Check(
                False,
                f"key refused as {label} ({path}): HTTP {response.status_code}",
                "the CLI sends the api_key of this data directory; if a client gets "
                "401, its key differs from `agproxy config get api_key --reveal`",
            )


PROMPT = "Reply with: OK"


def _failure(protocol: str, model: str, response: httpx.Response) -> Check:
    try:
        error = response.json()["error"]
        message = error["message"] if isinstance(error, dict) else str(error)
    except (ValueError, KeyError, TypeError):
        message = response.text[:200]
    return Check(
        False,
        f"{protocol} request to {model} failed: HTTP {response.status_code}: {message}",
        "see `agproxy accounts list` for account states and "
        "`agproxy logs --errors` for what the upstream said",
    )


def _answered(protocol: str, model: str, text: str) -> Check:
    if not text.strip():
        return Check(
            False,
            f"{protocol} request to {model} came back without text",
            "try another model; check `agproxy accounts quota`",
        )
    return Check(True, f"{protocol} request to {model} answered: {text.strip()[:60]!r}")


def _real_requests(client: httpx.Client, api_key: str) -> list[Check]:
    """One real request per protocol, each in the shape its SDK sends."""
    models = client.get("/v1beta/models", headers={"x-goog-api-key": api_key}).json()
    names = [m["name"].removeprefix("models/") for m in models.get("models", [])]
    if names:
        model = next((n for n in names if "flash" in n and "image" not in n), names[0])
        checks = [_gemini_request(client, api_key, model), _openai_request(client, api_key, model)]
    else:
        checks = [
            Check(
                False,
                "no model to send a request to (no account with quota)",
                "add a Google account: `agproxy accounts login`, then `agproxy accounts quota`",
            )
        ]
    return [*checks, _anthropic_request(client, api_key, names)]


def _gemini_request(client: httpx.Client, api_key: str, model: str) -> Check:
    response = client.post(
        f"/v1beta/models/{model}:generateContent",
        timeout=120,
        headers={"x-goog-api-key": api_key},
        json={"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]},
    )
    if response.status_code != 200:
        return _failure("Gemini", model, response)
    parts = (response.json().get("candidates") or [{}])[0].get("content", {}).get("parts", [])
    return _answered(
        "Gemini", model, "".join(p.get("text", "") for p in parts if not p.get("thought"))
    )


def _openai_request(client: httpx.Client, api_key: str, model: str) -> Check:
    response = client.post(
        "/v1/chat/completions",
        timeout=120,
        headers={"Authorization": f"Bearer {api_key}"},
        json={"model": model, "messages": [{"role": "user", "content": PROMPT}]},
    )
    if response.status_code != 200:
        return _failure("OpenAI", model, response)
    choices = response.json().get("choices") or [{}]
    return _answered("OpenAI", model, str(choices[0].get("message", {}).get("content") or ""))


def _anthropic_request(client: httpx.Client, api_key: str, names: list[str]) -> Check:
    """A Claude model when the pool has one; else whatever serves `claude-sonnet-4-6`
    (z.ai, or a mapping rule)."""
    model = next(
        (n for n in names if n.startswith("claude") and "thinking" not in n), "claude-sonnet-4-6"
    )
    response = client.post(
        "/v1/messages",
        timeout=120,
        headers={"x-api-key": api_key, "anthropic-version": "2023-06-01"},
        json={"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": PROMPT}]},
    )
    if response.status_code != 200:
        return _failure("Anthropic", model, response)
    blocks = response.json().get("content") or []
    return _answered(
        "Anthropic", model, "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    )


def _print_check(check: Check) -> None:
    mark = click.style("✓", fg="green") if check.ok else click.style("✗", fg="red")
    click.echo(f"{mark} {check.what}")
    if not check.ok and check.fix:
        click.echo(f"    fix: {check.fix}")


@click.command()
def doctor() -> None:
    """Check the loop a client goes through and print the fix for what fails.

    Is the gateway reachable on the configured port, does the proxy service
    run, does /healthz answer, is the api key accepted in each header form,
    does one real request per protocol (Gemini, OpenAI, Anthropic) come back with
    text. Then prints the base URL for each SDK.
    """
    store = load_settings()
    settings = store.settings
    host, port = gateway_address(store)
    base = f"http://{host}:{port}"
    click.echo(f"data dir: {store.directory}  auth_mode: {settings.auth_mode}  port: {port}")
    healthy = run_checks(base, settings.api_key, settings.admin_secret, _print_check)
    click.echo("")
    click.echo("Base URLs:")
    click.echo(f"  OpenAI SDK:              base_url={base}/v1")
    click.echo(f"  Anthropic SDK / Claude:  ANTHROPIC_BASE_URL={base}   (no /v1)")
    click.echo(f"  Gemini SDK (google-genai): http_options={{'base_url': '{base}'}}")
    click.echo("  key: `agproxy config get api_key --reveal`")
    if not healthy:
        raise SystemExit(1)
