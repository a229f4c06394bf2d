"""`agproxy logs`: the monitor's newest request records, or follow new ones."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import click
import httpx
import orjson

from agproxy.cli.client import AdminClient


def _line(log: dict[str, Any]) -> str:
    at = datetime.fromtimestamp(log["started_at"]).strftime("%H:%M:%S")
    model = log.get("routed_model") or log.get("requested_model") or "-"
    tokens = f"{log.get('input_tokens') or 0}→{log.get('output_tokens') or 0}"
    error = f"  {str(log['error'])[:80]}" if log.get("error") else ""
    return (
        f"{at} {log['status']:>3} {log['duration_ms']:>8.1f}ms {log['protocol']:<9} "
        f"{log['method']} {log['path']}  {model}  {log.get('account') or '-'}  "
        f"{tokens}{error}"
    )


@click.command()
@click.option("--limit", default=20, show_default=True, help="How many records to show.")
@click.option("--errors", "errors_only", is_flag=True, help="Only failed requests.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new records (Ctrl+C stops).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def logs(limit: int, errors_only: bool, follow: bool, as_json: bool) -> None:
    """Show the requests the gateway served (the monitor), newest last.

    Each line: time, status, duration, protocol, path, model, account (masked),
    input→output tokens and the error if any.
    """
    client = AdminClient.from_data_dir()
    params = f"?limit={limit}" + ("&errors_only=1" if errors_only else "")

    def show(records: list[dict[str, Any]]) -> None:
        for log in reversed(records):
            click.echo(orjson.dumps(log).decode() if as_json else _line(log))

    if not follow:
        show(client.call_ok("GET", "/api/logs" + params)["logs"])
        return
    try:
        _follow(client, params, errors_only, show)
    except KeyboardInterrupt:
        return


def _follow(
    client: AdminClient,
    params: str,
    errors_only: bool,
    show: Callable[[list[dict[str, Any]]], None],
) -> None:
    """Print the backlog, then each request as it finishes (the live stream), and
    reconnect when the gateway restarts."""
    seen: set[str] = set()
    headers = {"Authorization": f"Bearer {client.secret}"}
    first = True
    while True:
        try:
            # The stream is opened before the backlog is read: nothing falls in between.
            with httpx.stream(
                "GET",
                client.base_url + "/api/logs/stream",
                headers=headers,
                timeout=httpx.Timeout(10, read=None),
            ) as stream:
                if stream.status_code != 200:
                    stream.read()
                    client.call_ok("GET", "/api/logs/stream")  # raises with the reason
                lines = stream.iter_lines()
                next(lines, None)  # ": watching": the gateway now queues for us
                backlog = client.call_ok("GET", "/api/logs" + params)["logs"]
                fresh = [r for r in backlog if r["id"] not in seen]
                show(fresh)  # after a reconnect: what finished while we were away
                seen.update(r["id"] for r in backlog)
                first = False
                for line in lines:
                    if not line.startswith("data: "):
                        continue
                    row = orjson.loads(line[6:])
                    if row["id"] in seen or (errors_only and row["status"] < 400):
                        continue
                    seen.add(row["id"])
                    show([row])
        except (httpx.TransportError, click.ClickException) as exc:
            if first:
                raise click.ClickException(str(exc)) from exc
        time.sleep(1.0)  # the gateway went away: wait for it to come back
