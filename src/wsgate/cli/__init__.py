"""The `wsgate` command: thin click commands over the Python API."""

from __future__ import annotations

import importlib

import click

from wsgate import COMPILED, __version__

#: Each command and where it lives, imported when it runs (or a help page lists it):
#: `wsgate connect` need not load the server, nor `wsgate serve` the HTTP client.
COMMANDS = {
    "serve": "wsgate.cli.serve:serve",
    "bench": "wsgate.bench.command:bench",
    "connect": "wsgate.cli.connect:connect",
    "connections": "wsgate.cli.connections:connections",
    "template": "wsgate.cli.deploy:template",
    "deploy": "wsgate.cli.deploy:deploy",
}


class LazyCommands(click.Group):
    """A group whose commands are imported on first use, from `COMMANDS`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        module, _, name = where.partition(":")
        command = getattr(importlib.import_module(module), name)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyCommands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__,
    prog_name="wsgate",
    message=f"%(prog)s %(version)s, {'compiled (mypyc)' if COMPILED else 'pure Python'}",
)
def cli() -> None:
    """Run API Gateway-style WebSocket apps locally and self-hosted."""


def main() -> None:
    cli(auto_envvar_prefix="WSGATE")
