"""`agproxy setup CLIENT`: write a client's configuration to use this gateway, check it
with that client's own request shape, and roll back when the check fails."""

from __future__ import annotations

import json
from pathlib import Path

import click
import httpx

from agproxy.addresses import mask
from agproxy.cli.client import gateway_address, load_settings
from agproxy.clientsetup import CLIENTS, Client, SetupError, roll_back, undo, write


@click.command()
@click.argument("client", type=click.Choice(sorted(CLIENTS)))
@click.option("--undo", "undo_", is_flag=True, help="Put the client's file back as it was.")
@click.option("--print", "print_", is_flag=True, help="Show what would be written; change nothing.")
def setup(client: str, undo_: bool, print_: bool) -> None:
    """Point CLIENT (claude-code, codex, gemini-cli, opencode) at this gateway.

    Only the settings that name the gateway and its key are set in the client's own
    file; everything else in it stays, and the file as it was is kept for --undo."""
    target = CLIENTS[client]
    path = target.path(Path.home())
    try:
        if undo_:
            click.echo(undo(path))
            return
        store = load_settings(create=True)
        host, port = gateway_address(store)
        base, key = f"http://{host}:{port}", store.settings.api_key
        old = path.read_bytes() if path.exists() else None
        new = target.merge(old.decode("utf-8", "replace") if old is not None else None, base, key)
    except SetupError as exc:
        raise click.ClickException(exc.message) from exc
    if print_:
        click.echo(f"# {path}\n" + new.replace(key, mask(key) or ""), nl=False)
        return
    made = write(path, new)
    problem = _verify(target, base, key)
    if problem is not None:
        roll_back(path, old, made)
        raise click.ClickException(
            f"{client} was not set up: {problem}. {path} is as it was. Start the gateway "
            "(`agproxy serve`) and check it with `agproxy doctor`, then run this again."
        )
    click.echo(f"{client}: {path} now points at {base} (the file as it was: --undo)")


def _verify(target: Client, base: str, key: str) -> str | None:
    """The client's own kind of request through the gateway; None when it answered."""
    method, url, headers, body = target.probe(base, key)
    try:
        response = httpx.request(method, url, headers=headers, json=body, timeout=120)
    except httpx.HTTPError as exc:
        return f"no answer from the gateway at {base} ({type(exc).__name__})"
    if response.status_code != 200:
        return f"the gateway answered HTTP {response.status_code}: {response.text[:300]}"
    said = response.text
    if _failed(said):  # an error inside a 200 (a kept-alive answer, a stream)
        return f"the gateway answered with an error: {said[:300]}"
    return None


def _failed(text: str) -> bool:
    """An error object as the answer, or an error event in a stream."""
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return True
        return isinstance(data, dict) and (bool(data.get("error")) or data.get("type") == "error")
    lines = text.splitlines()
    return any(
        line.startswith(("event: error", 'data: {"error"'))
        or '"type":"response.failed"' in line.replace(" ", "")
        for line in lines
    )
