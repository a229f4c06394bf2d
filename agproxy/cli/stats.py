"""`agproxy stats`: requests and tokens from the monitor, as a table, a series or CSV."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Any

import click

from agproxy.cli.client import AdminClient


def _tz_offset() -> int:
    return int(datetime.now().astimezone().utcoffset().total_seconds())  # type: ignore[union-attr]


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cells(name: str, r: dict[str, Any]) -> list[str]:
    return [
        name,
        f"{r['requests']:,}",
        f"{r['errors']:,}",
        f"{r['input_tokens']:,}",
        f"{r['output_tokens']:,}",
        f"{r['thinking_tokens']:,}",
        f"{r['avg_ms']:,.0f}",
    ]


HEADER = ["requests", "errors", "input tok", "output tok", "thinking tok", "avg ms"]


@click.command()
@click.option("--hours", type=float, default=24, show_default=True, help="How far back to look.")
@click.option(
    "--by",
    type=click.Choice(["model", "account", "protocol", "key", "provider"]),
    default="model",
    show_default=True,
    help="Break the totals down by this (key: the client key's name; - is the owner's "
    "api_key or no key; provider: google or a key-based provider; account: a Google "
    "account or a provider key's name).",
)
@click.option(
    "--bucket",
    type=click.Choice(["hour", "day", "week"]),
    help="Show a time series with one line per bucket instead.",
)
@click.option(
    "--csv",
    "as_csv",
    is_flag=True,
    help="Write CSV (bucket × model × account × key) to stdout; --bucket defaults to hour.",
)
def stats(hours: float, by: str, bucket: str | None, as_csv: bool) -> None:
    """Requests, errors and tokens the gateway served (from the monitor's records).

    \b
      agproxy stats                      totals of the last 24 h by model
      agproxy stats --by account --hours 168
      agproxy stats --by key             usage per client key
      agproxy stats --bucket day --hours 720
      agproxy stats --csv --bucket day > usage.csv
    """
    client = AdminClient.from_data_dir()
    window = f"hours={hours:g}&tz_offset={_tz_offset()}"
    if as_csv:
        response = client.call("GET", f"/api/stats/export.csv?bucket={bucket or 'hour'}&{window}")
        if response.status_code != 200:
            raise click.ClickException(response.text)
        sys.stdout.write(response.text)
        return
    if bucket:
        series = client.call_ok("GET", f"/api/stats/usage?bucket={bucket}&{window}")["series"]
        fmt = {"hour": "%Y-%m-%d %H:00", "day": "%Y-%m-%d", "week": "week of %Y-%m-%d"}[bucket]
        rows = [[bucket, *HEADER]] + [
            _cells(time.strftime(fmt, time.localtime(p["t"])), p) for p in series
        ]
        click.echo(_table(rows))
        return
    summary = client.call_ok("GET", f"/api/stats/summary?{window}")
    breakdown = client.call_ok("GET", f"/api/stats/breakdown?by={by}&{window}")["rows"]
    rows = [[by, *HEADER], *(_cells(str(r[by]), r) for r in breakdown), _cells("total", summary)]
    click.echo(
        f"last {hours:g} h: {summary['requests']:,} requests, {summary['errors']:,} "
        f"errors, {summary['accounts']} accounts used"
    )
    click.echo(_table(rows))
