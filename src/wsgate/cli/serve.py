"""`wsgate serve [TARGET]`: options in, one `ServeConfig` out, `wsgate.server.run` does the rest."""

from __future__ import annotations

import importlib.util
import shlex
import sys

import click
from click.core import ParameterSource

from wsgate.core.limits import Limits
from wsgate.exceptions import ConfigError, WsgateError
from wsgate.server.modes import ServeConfig, run
from wsgate.store import DEFAULT_STORE_URL


@click.command()
@click.argument("target", required=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--stage", default="dev", show_default=True, help="Stage name in URLs and events.")
@click.option(
    "--store",
    default=DEFAULT_STORE_URL,
    show_default=True,
    help="Connection store: memory://, sqlite:///path/to/file.db, "
    "dynamodb://TABLE[?endpoint=URL&region=REGION&create=true], or "
    "redis://[:PASSWORD@]HOST[:PORT][/DB] (also rediss://, redis+sentinel://) for several "
    "gateway nodes that deliver to each other's connections.",
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
    "--connect-rate",
    type=click.FloatRange(min=0, min_open=True),
    help="New connections a second this gateway accepts (a token bucket); beyond it the "
    "handshake gets 429. API Gateway's account quota is 500. Default: no limit.",
)
@click.option(
    "--connect-burst",
    type=click.IntRange(min=1),
    help="New connections accepted at once before --connect-rate applies "
    "(default: one second's worth).",
)
@click.option(
    "--message-rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Messages a second each connection may send (a token bucket); beyond it a message "
    "gets a 'Too Many Requests' error frame, the connection stays open. Default: no limit.",
)
@click.option(
    "--message-burst",
    type=click.IntRange(min=1),
    help="Messages a connection may send at once before --message-rate applies "
    "(default: one second's worth).",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    help="Open connections this gateway holds at most; beyond it the handshake gets 429. "
    "Default: no limit (API Gateway has none).",
)
@click.option(
    "--allowed-origin",
    "allowed_origins",
    multiple=True,
    metavar="URL",
    help="A browser Origin handshakes may come from, scheme://host[:port] (repeatable); "
    "other origins get 403, clients sending no Origin are let in. Default: any origin.",
)
@click.option(
    "--access-keys",
    "access_keys_file",
    metavar="FILE",
    type=click.Path(exists=True, dir_okay=False),
    help="ACCESS_KEY_ID:SECRET lines: the keys that SigV4-sign AWS_IAM handshakes, and "
    "then every @connections call must be signed by one of them too (else 403).",
)
@click.option(
    "--allow-remote-management",
    is_flag=True,
    help="Answer @connections requests from other hosts too (default: loopback only); "
    "needs --access-keys, or --insecure-management.",
)
@click.option(
    "--insecure-management",
    is_flag=True,
    help="Let --allow-remote-management run without --access-keys: anyone who reaches "
    "the port may send to and close connections.",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="A Host the management API answers besides loopback names and --host "
    "(repeatable; *.example.com for a domain); others get 403 (DNS rebinding).",
)
@click.option(
    "--compression/--no-compression",
    default=True,
    show_default=True,
    help="Accept permessage-deflate when a client offers it (browsers do), as API Gateway "
    "does; --no-compression answers every handshake without it.",
)
@click.option(
    "--console/--no-console",
    default=True,
    show_default=True,
    help="Serve the connections console at /{stage}/@console to the callers the "
    "management API answers.",
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
    "the tables under Resources are created there at start. Default: a local one (moto).",
)
@click.option(
    "--aws",
    is_flag=True,
    help="For serverless.yml/template.yaml: let the handlers use your real AWS account "
    "(DynamoDB included); without it they get placeholder credentials and a local DynamoDB.",
)
@click.option(
    "--strict-connect-result",
    is_flag=True,
    help="For serverless.yml/template.yaml: a $connect function that returns no statusCode "
    "is a 502 (REST APIs' rule) instead of accepting the connection.",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="For serverless.yml: the value of ${param:KEY}, as serverless --param (repeatable); "
    "also a value for a variable that needs AWS, e.g. --param 'ssm:/app/key=VALUE'.",
)
@click.option(
    "--parameter-overrides",
    multiple=True,
    metavar="'KEY=VALUE ...'",
    help="For template.yaml: parameter values, as sam --parameter-overrides (over "
    "samconfig.toml's parameter_overrides and the parameters' Default).",
)
@click.option(
    "--no-install",
    is_flag=True,
    help="For serverless.yml/template.yaml: do not install the functions' requirements.txt "
    "(by default each is installed once into a cached folder of its own).",
)
@click.option(
    "--node-id",
    metavar="NAME",
    help="With a Redis store: this gateway node's id (default: host name and a random "
    "suffix). A node restarting under the same id cleans up what it left.",
)
@click.option(
    "--node-timeout",
    default=30.0,
    show_default=True,
    help="With a Redis store: seconds without a heartbeat after which a node is dead and "
    "the others drop its connections.",
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
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text, or as one JSON object per line.",
)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="A wsgate.access line (INFO) per connect, message, disconnect and management call.",
)
@click.option(
    "--log-config",
    metavar="FILE",
    type=click.Path(exists=True, dir_okay=False),
    help="A logging dictConfig in JSON or YAML; replaces --log-level and --log-format.",
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
    connect_rate: float | None,
    connect_burst: int | None,
    message_rate: float | None,
    message_burst: int | None,
    max_connections: int | None,
    allowed_origins: tuple[str, ...],
    access_keys_file: str | None,
    allow_remote_management: bool,
    insecure_management: bool,
    allowed_hosts: tuple[str, ...],
    compression: bool,
    console: bool,
    lambda_mode: bool,
    dynamodb_endpoint: str | None,
    aws: bool,
    strict_connect_result: bool,
    params: tuple[str, ...],
    parameter_overrides: tuple[str, ...],
    no_install: bool,
    node_id: str | None,
    node_timeout: float,
    reload: bool,
    workers: int,
    log_level: str,
    log_format: str,
    access_log: bool,
    log_config: str | None,
) -> None:
    """Serve TARGET (path.py, path.py:app, module:app, serverless.yml or a SAM template.yaml);
    no TARGET serves the demo app."""
    # Without --stage a serverless.yml/SAM file's own stage is used.
    stage_given = click.get_current_context().get_parameter_source("stage")
    for param in params:
        if "=" not in param.strip("="):
            raise click.BadParameter(f"{param!r}: expected KEY=VALUE", param_hint="--param")
    try:
        config = ServeConfig(
            target=target,
            host=host,
            port=port,
            stage=None if stage_given is ParameterSource.DEFAULT else stage,
            store=store,
            limits=Limits(
                idle_timeout=idle_timeout,
                max_connection_duration=max_duration,
                handler_timeout=handler_timeout,
                max_message_bytes=max_message_bytes,
                max_frame_bytes=max_frame_bytes,
                connect_rate=connect_rate,
                connect_burst=connect_burst,
                message_rate=message_rate,
                message_burst=message_burst,
                max_connections=max_connections,
            ),
            allow_remote_management=allow_remote_management,
            insecure_management=insecure_management,
            allowed_hosts=allowed_hosts,
            allowed_origins=allowed_origins,
            access_keys_file=access_keys_file,
            lambda_mode=lambda_mode,
            dynamodb_endpoint=dynamodb_endpoint,
            aws=aws,
            strict_connect_result=strict_connect_result,
            parameters=(*params, *(w for text in parameter_overrides for w in shlex.split(text))),
            install=not no_install,
            node_id=node_id,
            node_timeout=node_timeout,
            reload=reload,
            workers=workers,
            log_level=log_level,
            log_format=log_format,
            access_log=access_log,
            log_config=log_config,
            console=console,
            compression=compression,
        )
        config.check()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    except ValueError as exc:  # a limit out of range
        raise click.ClickException(str(exc)) from exc
    if lambda_mode and importlib.util.find_spec("boto3") is None:
        raise click.ClickException(
            "--lambda sends over the @connections API with boto3: pip install 'wsgate[aws]'"
        )
    try:
        code = run(config)
    except WsgateError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(code)
