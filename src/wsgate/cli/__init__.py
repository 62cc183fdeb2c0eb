"""The `wsgate` command: thin click commands over the Python API."""

from __future__ import annotations

import click

from wsgate import COMPILED, __version__
from wsgate.bench.command import bench
from wsgate.cli.connect import connect
from wsgate.cli.connections import connections
from wsgate.cli.deploy import deploy, template
from wsgate.cli.serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__,
    prog_name="wsgate",
    message=f"%(prog)s %(version)s, {'compiled (mypyc)' if COMPILED else 'pure Python'}",
)
def cli() -> None:
    """Run API Gateway-style WebSocket apps locally and self-hosted."""


cli.add_command(serve)
cli.add_command(bench)
cli.add_command(connect)
cli.add_command(connections)
cli.add_command(template)
cli.add_command(deploy)


def main() -> None:
    cli(auto_envvar_prefix="WSGATE")
