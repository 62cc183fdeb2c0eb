"""`wsgate serve [TARGET]`: run an app on the local gateway."""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from wsgate.app import App
from wsgate.core.limits import Limits
from wsgate.exceptions import WsgateError
from wsgate.store import DEFAULT_STORE_URL

#: TARGETs that are Lambda functions described by serverless.yml or a SAM template.
CONFIG_SUFFIXES = (".yml", ".yaml", ".json")


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
    "--max-message-bytes",
    default=128 * 1024,
    show_default=True,
    help="Largest message, in and out (API Gateway's 128 KB).",
)
@click.option(
    "--max-frame-bytes",
    default=32 * 1024,
    show_default=True,
    help="Largest inbound frame (API Gateway's 32 KB; a browser sends a message as one frame).",
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
@click.option(
    "--dynamodb-endpoint",
    metavar="URL",
    help="For serverless.yml/template.yaml: the handlers' DynamoDB (AWS_ENDPOINT_URL_DYNAMODB); "
    "the tables under Resources are created there at start.",
)
@click.option("--reload", is_flag=True, help="Restart when a Python file under the app changes.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processes sharing the port (one per core); each holds its own connections and "
    "they deliver to each other's.",
)
@click.option("--worker", "worker_spec", hidden=True, help="K/N: set by --workers, for a worker.")
@click.option("--worker-dir", hidden=True, type=click.Path(), help="Set by --workers.")
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
    max_message_bytes: int,
    max_frame_bytes: int,
    allow_remote_management: bool,
    lambda_mode: bool,
    dynamodb_endpoint: str | None,
    reload: bool,
    workers: int,
    worker_spec: str | None,
    worker_dir: str | None,
    log_level: str,
) -> None:
    """Serve TARGET (path.py, path.py:app, module:app, serverless.yml or a SAM template.yaml);
    no TARGET serves the demo app."""
    if reload:
        if workers > 1:
            raise click.UsageError("--reload runs one process; leave out --workers")
        _serve_with_reload(target)
        return
    if workers > 1:
        if lambda_mode or (target is not None and target.endswith(CONFIG_SUFFIXES)):
            raise click.UsageError("--workers serves Python apps on the gateway (not --lambda)")
        from wsgate.server.workers import supervise

        args = _without_option(sys.argv[sys.argv.index("serve") + 1 :], "--workers")
        try:
            code = supervise(workers, args, host=host, port=port, store=store)
        except WsgateError as exc:
            raise click.ClickException(str(exc)) from exc
        sys.exit(code)
    peers = None
    if worker_spec is not None and worker_dir is not None:
        from wsgate.server.peers import Peers

        worker, _, count = worker_spec.partition("/")
        peers = Peers(int(worker), int(count), Path(worker_dir))
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    functions = None
    try:
        if target is not None and target.endswith(CONFIG_SUFFIXES):
            if lambda_mode:
                raise click.UsageError("--lambda is for Python apps; these are Lambda functions")
            from wsgate.offline.app import open_offline_app

            # Without --stage the file's own stage is used (provider.stage, the Stage resource).
            stage_given = click.get_current_context().get_parameter_source("stage")
            functions = open_offline_app(
                Path(target),
                stage=None if stage_given is ParameterSource.DEFAULT else stage,
                dynamodb_endpoint=dynamodb_endpoint,
            )
            app, stage = functions.app, functions.stage
        else:
            app = _load(target)
        limits = Limits(
            idle_timeout=idle_timeout,
            max_connection_duration=max_duration,
            handler_timeout=handler_timeout,
            max_message_bytes=max_message_bytes,
            max_frame_bytes=max_frame_bytes,
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
        if functions is not None:
            functions.attach(server.host, server.port)
        if peers is not None and peers.worker > 0:
            return  # worker 0 speaks for all
        click.echo(
            f"wsgate: serving {app.name} ({len(app.routes)} routes, "
            f"selection {app.route_selection}) with store {store}"
            f"{' in Lambda mode' if lambda_mode else ''}"
            f"{f' on {peers.count} workers' if peers is not None else ''}\n"
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
            peers=peers,
            stop_when_closed=sys.stdin.fileno() if peers is not None else None,
        )
    except WsgateError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if functions is not None:
            functions.close()  # after the gateway stopped: $disconnect ran in the workers


def _without_option(args: list[str], name: str) -> list[str]:
    """`args` without `name VALUE` or `name=VALUE`."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            kept.append(arg)
    return kept


def _serve_with_reload(target: str | None) -> None:
    """Run `wsgate serve` (without --reload) in a child and restart it on .py changes."""
    import watchfiles

    args = [arg for arg in sys.argv[1:] if arg != "--reload"]
    command = shlex.join([sys.executable, "-m", "wsgate", *args])
    location = (target or "").partition(":")[0]
    watched = (
        Path(location).resolve().parent
        if location.endswith((".py", *CONFIG_SUFFIXES))
        else Path.cwd()
    )
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
