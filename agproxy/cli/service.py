"""`serve`, and `status` / `start` / `stop` against a running gateway."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click
import orjson

from agproxy.cli.client import AdminClient
from agproxy.config import ConfigStore
from agproxy.datadir import data_dir


@click.command()
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="How much the gateway logs to stderr.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processes serving the port (SO_REUSEPORT); more than 1 needs redis_url.",
)
def serve(log_level: str, workers: int) -> None:
    """Run the gateway in the foreground.

    Binds 127.0.0.1 (or 0.0.0.0 with allow_lan_access) on the configured port,
    serves the console, the admin API and the AI routes, and starts the proxy
    service when auto_start is true and an account (or z.ai) can serve.
    Ctrl+C (or SIGTERM) stops it after in-flight requests finish.
    Exits with status 1 when the port cannot be bound, 2 when the config or the
    store (store_url) cannot be used.

    With --workers N, N processes serve the one port and share state through
    Redis (redis_url); see the README, "Running more than one process".
    """
    from agproxy.db import StoreError
    from agproxy.server.runner import serve as run_serve  # server stack only when serving
    from agproxy.shared.workers import WorkerRole

    role = WorkerRole.from_env()
    who = f"[worker {role.index}] " if role else ""
    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {who}%(name)s: %(message)s",
    )
    store = ConfigStore(data_dir())
    if workers > 1:
        from agproxy.server.supervisor import serve_workers

        sys.exit(serve_workers(store, lambda line: click.echo(line), workers, log_level))
    try:
        status = run_serve(store, lambda line: click.echo(line))
    except StoreError as exc:
        click.echo(f"error: {exc}")
        status = 2
    sys.exit(status)


def _print_status(status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(orjson.dumps(status).decode())
        return
    state = "running" if status["running"] else "stopped"
    click.echo(f"proxy service: {state}")
    click.echo(f"listening:     {status['host']}:{status['port']}")
    click.echo(f"base url:      {status['base_url']}")
    click.echo(f"active accounts: {status['active_accounts']}")
    processes = status.get("processes") or []
    if len(processes) > 1:
        click.echo(f"processes:     {len(processes)} (sharing state through Redis)")
        for p in processes:
            mark = "*" if p.get("this_process") else " "
            state = "running" if p.get("running") else "stopped"
            click.echo(
                f"  {mark} {p.get('host')} pid {p.get('pid')} worker {p.get('worker')}: "
                f"{state} on {p.get('listen')}, {p.get('requests', 0)} requests"
            )


_json_option = click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")


@click.command()
@_json_option
def status(as_json: bool) -> None:
    """Show whether the proxy service runs, where, with how many accounts, the last
    hour's traffic and the accounts that need attention (cooling down, refused)."""
    client = AdminClient.from_data_dir()
    _print_status(client.call_ok("GET", "/api/proxy/status"), as_json)
    if not as_json:
        _print_health(client.call_ok("GET", "/api/dashboard"))


def _print_health(board: dict[str, Any]) -> None:
    hour = board["last_hour"]
    rate = f" ({hour['error_rate'] * 100:.1f}% failed)" if hour["errors"] else ""
    click.echo(
        f"last hour:     {hour['requests']} requests, {hour['errors']} errors{rate}, "
        f"{hour['input_tokens']} in / {hour['output_tokens']} out tokens"
    )
    for item in board["attention"]:
        if item["state"] == "cooling_down":
            seconds = int(item["seconds_left"])
            what = (
                f"cooling down for {item['model'] or 'all models'}, "
                f"{seconds // 60}m{seconds % 60:02d}s left"
            )
        else:
            what = item["state"].replace("_", " ") + (
                f": {item['reason']}" if item.get("reason") else ""
            )
        click.echo(f"  ! {item['email']}: {what}")


@click.command()
@_json_option
def start(as_json: bool) -> None:
    """Start the proxy service of the running gateway.

    Fails with `no available accounts, please add an account first` when no
    Google account is enabled and z.ai is off. Port and LAN changes made since
    the last start take effect now.
    """
    _print_status(AdminClient.from_data_dir().call_ok("POST", "/api/proxy/start"), as_json)


@click.command()
@_json_option
def stop(as_json: bool) -> None:
    """Stop the proxy service (the console and admin API stay up)."""
    _print_status(AdminClient.from_data_dir().call_ok("POST", "/api/proxy/stop"), as_json)
