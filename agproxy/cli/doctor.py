"""`agproxy doctor`: walk the user's loop (reachable → /healthz → key forms) and say what to fix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
        report(Check(False, f"nothing answers at {base} ({exc})",
                     "start the gateway with `agproxy serve`, or check the port "
                     "(`agproxy config get port`) and AGPROXY_DATA_DIR"))
        return False
    report(Check(True, f"gateway reachable at {base}"))

    admin = client.get("/api/proxy/status", headers={"Authorization": f"Bearer {admin_secret}"})
    if admin.status_code != 200:
        report(Check(False, f"admin API refused the admin password (HTTP {admin.status_code})",
                     "AGPROXY_DATA_DIR must point at the data directory of this gateway"))
        return False
    status = admin.json()
    if not status["running"]:
        report(Check(False, "proxy service is stopped",
                     "`agproxy start` (it prints why it cannot start), or Start in the console"))
    else:
        report(Check(True, f"proxy service running with {status['active_accounts']} active "
                           "accounts"))

    if health.status_code == 200 and health.json() == {"status": "ok"}:
        report(Check(True, 'GET /healthz → {"status":"ok"}'))
    elif status["running"]:
        report(Check(False, f"GET /healthz answered HTTP {health.status_code}: {health.text[:200]}",
                     "see the message above"))

    if not status["running"]:
        return False
    for label, path, headers, query in _key_forms(api_key):
        response = client.get(path, headers=headers, params=query)
        if response.status_code == 200:
            report(Check(True, f"key accepted as {label} ({path})"))
        else:
            report(Check(False, f"key refused as {label} ({path}): HTTP {response.status_code}",
                         "the CLI sends the api_key of this data directory; if a client gets "
                         "401, its key differs from `agproxy config get api_key --reveal`"))
    report(_gemini_request(client, api_key))
    return healthy


def _gemini_request(client: httpx.Client, api_key: str) -> Check:
    """One real Gemini-native request, to the first model the pool lists."""
    headers = {"x-goog-api-key": api_key}
    models = client.get("/v1beta/models", headers=headers).json().get("models", [])
    if not models:
        return Check(False, "no model to send a request to (no account with quota)",
                     "add a Google account: `agproxy accounts login`, then "
                     "`agproxy accounts quota`")
    names = [m["name"].removeprefix("models/") for m in models]
    model = next((n for n in names if "flash" in n), names[0])
    response = client.post(f"/v1beta/models/{model}:generateContent", headers=headers,
                           timeout=120, json={"contents": [
                               {"role": "user", "parts": [{"text": "Reply with: OK"}]}]})
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        return Check(False, f"Gemini request to {model} failed: HTTP {response.status_code}: "
                            f"{message}", "see `agproxy accounts list` for account states")
    parts = (response.json().get("candidates") or [{}])[0].get("content", {}).get("parts", [])
    text = "".join(p.get("text", "") for p in parts if not p.get("thought"))
    if not text.strip():
        return Check(False, f"Gemini request to {model} came back without text",
                     "try another model; check `agproxy accounts quota`")
    return Check(True, f"Gemini request to {model} answered: {text.strip()[:60]!r}")


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
    does a real Gemini request come back with text. Then prints the base URL
    for each SDK.
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
