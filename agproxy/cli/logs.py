"""`agproxy logs`: the monitor's newest request records, or follow new ones."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import click
import orjson

from agproxy.cli.client import AdminClient


def _line(log: dict[str, Any]) -> str:
    at = datetime.fromtimestamp(log["started_at"]).strftime("%H:%M:%S")
    model = log.get("routed_model") or log.get("requested_model") or "-"
    tokens = f"{log.get('input_tokens') or 0}→{log.get('output_tokens') or 0}"
    error = f"  {str(log['error'])[:80]}" if log.get("error") else ""
    return (f"{at} {log['status']:>3} {log['duration_ms']:>8.1f}ms {log['protocol']:<9} "
            f"{log['method']} {log['path']}  {model}  {log.get('account') or '-'}  "
            f"{tokens}{error}")


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

    records = client.call_ok("GET", "/api/logs" + params)["logs"]
    show(records)
    if not follow:
        return
    since = max((r["started_at"] for r in records), default=time.time() - 1)
    try:
        while True:
            time.sleep(1.0)
            fresh = client.call_ok("GET", f"/api/logs{params}&since={since}")["logs"]
            if fresh:
                show(fresh)
                since = max(r["started_at"] for r in fresh)
    except KeyboardInterrupt:
        return
