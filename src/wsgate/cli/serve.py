"""`wsgate serve [TARGET]`: run an app on the local gateway."""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

import click

from wsgate.app import App
from wsgate.core.limits import Limits
from wsgate.exceptions import WsgateError
from wsgate.store import DEFAULT_STORE_URL


def _load(target: str | None) -> App:
    if target is None:
        from wsgate.demo import app

        return app
    from wsgate.importer import load_app

    return load_app(target)


@click.command()
@click.argument("target", required=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--stage", default="dev", show_default=True, help="Stage name in URLs and events.")
@click.option(
    "--store",
    default=DEFAULT_STORE_URL,
    show_default=True,
    help="Connection store: memory://, sqlite:///path/to/file.db or "
    "dynamodb://TABLE[?endpoint=URL&region=REGION&create=true].",
)
@click.option("--idle-timeout", default=600.0, show_default=True, help="Seconds without a message.")
@click.option(
    "--max-duration", default=7200.0, show_default=True, help="Seconds a connection may live."
)
@click.option(
    "--handler-timeout", default=29.0, show_default=True, help="Seconds a handler may run."
)
@click.option(
    "--allow-remote-management",
    is_flag=True,
    help="Answer @connections requests from other hosts too (default: loopback only).",
)
@click.option(
    "--lambda",
    "lambda_mode",
    is_flag=True,
    help="Run each route through the Lambda adapter, as on AWS: state in --store, "
    "sends over the @connections API.",
)
@click.option("--reload", is_flag=True, help="Restart when a Python file under the app changes.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def serve(
    target: str | None,
    host: str,
    port: int,
    stage: str,
    store: str,
    idle_timeout: float,
    max_duration: float,
    handler_timeout: float,
    allow_remote_management: bool,
    lambda_mode: bool,
    reload: bool,
    log_level: str,
) -> None:
    """Serve TARGET (path.py, path.py:app or module:app); no TARGET serves the demo app."""
    if reload:
        _serve_with_reload(target)
        return
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        app = _load(target)
        limits = Limits(
            idle_timeout=idle_timeout,
            max_connection_duration=max_duration,
            handler_timeout=handler_timeout,
        )
    except (WsgateError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    from wsgate.server.runner import Server, run

    served, gateway_store = app, store
    if lambda_mode:
        from wsgate.aws.lambda_handler import LambdaAdapter
        from wsgate.store import open_store

        try:
            adapter = LambdaAdapter(
                app, open_store(store), management_endpoint="http://{domainName}/{stage}"
            )
        except WsgateError as exc:
            raise click.ClickException(str(exc)) from exc
        # The gateway only holds sockets; the app's state lives in the adapter's store.
        served, gateway_store = adapter.as_app(), "memory://"

    def ready(server: Server) -> None:
        click.echo(
            f"wsgate: serving {app.name} ({len(app.routes)} routes, "
            f"selection {app.route_selection}) with store {store}"
            f"{' in Lambda mode' if lambda_mode else ''}\n"
            f"  WebSocket:  {server.url}\n"
            f"  @connections: {server.management_url}/@connections\n"
            "Press Ctrl+C to stop.",
            err=True,
        )

    try:
        run(
            served,
            on_ready=ready,
            host=host,
            port=port,
            stage=stage,
            store=gateway_store,
            limits=limits,
            allow_remote_management=allow_remote_management,
        )
    except WsgateError as exc:
        raise click.ClickException(str(exc)) from exc


def _serve_with_reload(target: str | None) -> None:
    """Run `wsgate serve` (without --reload) in a child and restart it on .py changes."""
    import watchfiles

    args = [arg for arg in sys.argv[1:] if arg != "--reload"]
    command = shlex.join([sys.executable, "-m", "wsgate", *args])
    location = (target or "").partition(":")[0]
    watched = Path(location).resolve().parent if location.endswith(".py") else Path.cwd()
    click.echo(f"wsgate: watching {watched} for changes", err=True)
    watchfiles.run_process(
        watched,
        target=command,
        target_type="command",
        watch_filter=watchfiles.PythonFilter(),
        callback=lambda changes: click.echo(
            f"wsgate: {len(changes)} file(s) changed, restarting", err=True
        ),
    )
