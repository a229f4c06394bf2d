"""The `agproxy` command line."""

from __future__ import annotations

import click

from agproxy import __version__
from agproxy.cli import (
    accounts,
    config_cmd,
    doctor,
    keys,
    logs,
    providers,
    service,
    setup,
    stats,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="agproxy")
def cli() -> None:
    """agproxy: a local AI gateway.

    It serves a pool of Google accounts and z.ai keys as OpenAI-, Anthropic- and
    Gemini-compatible APIs on one local port (default 8045).

    \b
    Quick start:
      agproxy serve            run the gateway (console at http://127.0.0.1:8045/)
      curl -sS http://127.0.0.1:8045/healthz
      agproxy doctor           check the whole loop and print the SDK base URLs

    State lives in $AGPROXY_DATA_DIR (default ~/.agproxy).
    """


cli.add_command(service.serve)
cli.add_command(service.status)
cli.add_command(service.start)
cli.add_command(service.stop)
cli.add_command(config_cmd.config)
cli.add_command(doctor.doctor)
cli.add_command(accounts.accounts)
cli.add_command(keys.keys)
cli.add_command(providers.providers)
cli.add_command(logs.logs)
cli.add_command(stats.stats)
cli.add_command(setup.setup)


def main() -> None:
    cli(prog_name="agproxy")
