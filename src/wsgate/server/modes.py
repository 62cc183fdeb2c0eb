"""The modes of `wsgate serve`: `run(ServeConfig)` picks one process, `--workers`,
`--reload`, an offline serverless.yml/SAM app or `--lambda`, and runs it until a signal.

Each mode is a keyword of `ServeConfig`, so every one has a Python API, as uvicorn's
`run()` does; the CLI only builds the config (`cli/serve.py`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from wsgate.app import App
from wsgate.core.limits import Limits
from wsgate.exceptions import ConfigError
from wsgate.server.gateway import Gateway
from wsgate.server.observability import JsonFormatter, access_log as access_logger
from wsgate.server.pages import Pages
from wsgate.server.peers import Peers
from wsgate.server.redis_bus import NODE_TIMEOUT
from wsgate.server.signatures import AccessKeys
from wsgate.store import DEFAULT_STORE_URL, open_store

if TYPE_CHECKING:
    from wsgate.aws.lambda_handler import LambdaAdapter
    from wsgate.offline.app import OfflineApp
    from wsgate.server.reload import CodeReload

from wsgate.server.runner import Server, serve

log = logging.getLogger("wsgate.server")


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """Everything `wsgate serve` takes, for `run()`: the CLI builds one from its options.

    `target`: `path.py`, `path.py:app`, `module:app`, a serverless.yml or SAM template, or
    None for the demo app. `stage` None: "dev", or a serverless.yml/SAM file's own stage.
    """

    target: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    stage: str | None = None
    store: str = DEFAULT_STORE_URL
    limits: Limits = field(default_factory=Limits)
    allow_remote_management: bool = False
    #: `allow_remote_management` without `access_keys_file`: anyone who reaches the port
    #: may manage connections. Refused unless this says it is meant.
    insecure_management: bool = False
    #: Host names the management API answers besides loopback and `host` (DNS rebinding).
    allowed_hosts: tuple[str, ...] = ()
    #: Browser origins a handshake may come from (`scheme://host[:port]`); empty: any.
    allowed_origins: tuple[str, ...] = ()
    #: `ACCESS_KEY_ID:SECRET` lines: the keys that sign `AWS_IAM` handshakes and every
    #: management call. A file, so secrets stay out of argv and the workers' config.
    access_keys_file: str | None = None
    #: Every route through the Lambda adapter, as on AWS (state in `store`, sends over HTTP).
    lambda_mode: bool = False
    #: For serverless.yml/SAM targets: the handlers' DynamoDB endpoint (else a local one).
    dynamodb_endpoint: str | None = None
    #: For serverless.yml/SAM targets: the handlers use the user's real AWS account.
    aws: bool = False
    #: For serverless.yml/SAM targets: `$connect` must return a proxy response (else 502).
    strict_connect_result: bool = False
    #: For serverless.yml/SAM targets: `KEY=VALUE` words, serverless.yml's `${param:KEY}`
    #: (`--param`) and a template's parameter overrides (`--parameter-overrides`).
    parameters: tuple[str, ...] = ()
    #: For serverless.yml/SAM targets: install each function's requirements.txt (cached).
    install: bool = True
    reload: bool = False
    workers: int = 1
    #: With a Redis store: this node's id (random if None; `-K` is added per worker), and
    #: how long a node may be silent before the others purge its connections.
    node_id: str | None = None
    node_timeout: float = NODE_TIMEOUT
    log_level: str = "info"
    #: The connections console at `/{stage}/@console` (`--no-console`: none).
    console: bool = True
    #: permessage-deflate for the clients that offer it (`--no-compression`: never).
    compression: bool = True
    #: Log lines as `text` or `json` (one object per line).
    log_format: str = "text"
    #: The `wsgate.access` lines (INFO: `log_level` warning or error leaves them out).
    access_log: bool = True
    #: A logging dictConfig file (JSON, or YAML with pyyaml) that replaces `log_level`
    #: and `log_format`.
    log_config: str | None = None

    @property
    def is_offline(self) -> bool:
        """The target is Lambda functions described by serverless.yml or a SAM template."""
        return self.target is not None and self.target.endswith(OFFLINE_SUFFIXES)

    def check(self) -> None:
        """Refuse modes that do not go together (ConfigError)."""
        if self.reload and self.workers > 1:
            raise ConfigError("--reload runs one process; leave out --workers")
        if self.workers > 1 and (self.lambda_mode or self.is_offline):
            raise ConfigError("--workers serves Python apps on the gateway (not --lambda)")
        if self.lambda_mode and self.is_offline:
            raise ConfigError("--lambda is for Python apps; these are Lambda functions")
        if (
            self.allow_remote_management
            and self.access_keys_file is None
            and not self.insecure_management
        ):
            raise ConfigError(
                "--allow-remote-management without --access-keys lets anyone who reaches the "
                "port manage connections; add --access-keys FILE, or --insecure-management "
                "if that is meant"
            )

    def to_json(self) -> str:
        """For the processes `run()` starts (the workers)."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        fields = json.loads(text)
        limits = Limits(**fields["limits"])
        return cls(
            **{
                **fields,
                "limits": limits,
                "allowed_hosts": tuple(fields["allowed_hosts"]),
                "allowed_origins": tuple(fields["allowed_origins"]),
            }
        )


#: Targets that are Lambda functions described by serverless.yml or a SAM template.
OFFLINE_SUFFIXES = (".yml", ".yaml", ".json")


def run(config: ServeConfig) -> int:
    """Serve `config.target` until SIGINT/SIGTERM; the process's exit status.

    The one entry point of `wsgate serve`, each mode a keyword: `reload` (new code swapped
    into the running gateway), `workers` (N processes on one port), an offline
    serverless.yml/SAM target, `lambda_mode`. Raises ConfigError for what cannot run.
    """
    config.check()
    _raise_open_files_limit()
    if config.workers > 1:
        from wsgate.server.workers import supervise

        return supervise(config)
    # Only where a gateway runs: the supervisor's own output is wsgate's lines.
    configure_logging(config)
    run_node(config)
    return 0


def configure_logging(config: ServeConfig) -> None:
    """The log of a process that runs a gateway: `config.log_config` if given, else
    stderr at `log_level` in `log_format`. ConfigError for a log config that cannot load."""
    if config.log_config is None:
        handler = logging.StreamHandler()
        handler.setFormatter(
            JsonFormatter()
            if config.log_format == "json"
            else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        logging.basicConfig(level=config.log_level.upper(), handlers=[handler])
        return
    from logging.config import dictConfig

    path = Path(config.log_config)
    try:
        text = path.read_text()
        if path.suffix == ".json":
            settings = json.loads(text)
        else:
            import yaml

            settings = yaml.safe_load(text)
        dictConfig(settings)
    except ImportError as exc:
        raise ConfigError(
            f"--log-config {path}: a YAML file needs pyyaml (pip install pyyaml), or use JSON"
        ) from exc
    except Exception as exc:
        raise ConfigError(f"--log-config {path}: {exc}") from exc


def _raise_open_files_limit() -> None:
    """Raise the soft open-files limit to the hard one, as servers do: each connection
    is a file descriptor, and the usual soft default (1024) is a thousand clients."""
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # macOS: an infinite hard limit is refused
            log.warning("could not raise the open-files limit from %d: %s", soft, exc)


def run_node(
    config: ServeConfig,
    *,
    worker: tuple[int, int] | None = None,
    peers: Peers | None = None,
    listener: socket.socket | None = None,
) -> None:
    """One gateway process: load the app, serve it until a signal (or, for `worker` K of N
    of `--workers`, until its supervisor is gone: its stdin closes). `peers`: how a worker
    reaches the others, unless its store links the nodes (Redis); `listener`: the
    supervisor's listening socket, which the workers share."""
    functions: OfflineApp | None = None
    stage = config.stage or "dev"
    if config.is_offline:
        from wsgate.offline.app import open_offline_app

        assert config.target is not None
        functions = open_offline_app(
            Path(config.target),
            stage=config.stage,
            dynamodb_endpoint=config.dynamodb_endpoint,
            aws=config.aws,
            strict_connect_result=config.strict_connect_result,
            parameters=config.parameters,
            install=config.install,
        )
        app, stage = functions.app, functions.stage
    else:
        app = load_target(config.target)
    served, gateway_store = app, config.store
    adapter: LambdaAdapter | None = None
    if config.lambda_mode:
        from wsgate.aws.lambda_handler import LambdaAdapter

        adapter = LambdaAdapter(
            app, open_store(config.store), management_endpoint="http://{domainName}/{stage}"
        )
        # The gateway only holds sockets; the app's state lives in the adapter's store.
        served, gateway_store = adapter.as_app(), "memory://"
    code_reload = _code_reload(config, functions, adapter) if config.reload else None

    def ready(server: Server) -> None:
        if functions is not None:
            functions.attach(server.host, server.port)
        if worker is not None and worker[0] > 0:
            return  # worker 0 speaks for all
        pages = f"  Console:    {server.management_url}/@console\n" if config.console else ""
        if config.target is None:
            root = server.management_url.removesuffix(f"/{server.gateway.stage}")
            pages += f"  Demo page:  {root}/  (open it in a browser)\n"
        print(
            f"wsgate: serving {app.name} ({len(app.routes)} routes, "
            f"selection {app.route_selection}) with store {config.store}"
            f"{' in Lambda mode' if config.lambda_mode else ''}"
            f"{f' on {worker[1]} workers' if worker is not None else ''}\n"
            f"  WebSocket:  {server.url}\n"
            f"  @connections: {server.management_url}/@connections\n"
            f"{pages}"
            "Press Ctrl+C to stop.",
            file=sys.stderr,
            flush=True,
        )

    try:
        _serve_until_stopped(
            served,
            ready,
            host=config.host,
            port=config.port,
            stage=stage,
            store=gateway_store,
            limits=config.limits,
            allow_remote_management=config.allow_remote_management,
            allowed_hosts=config.allowed_hosts,
            allowed_origins=config.allowed_origins,
            access_keys=(
                AccessKeys.from_file(config.access_keys_file)
                if config.access_keys_file is not None
                else None
            ),
            peers=peers,
            node_id=config.node_id,
            node_timeout=config.node_timeout,
            worker=worker is not None,
            listener=listener,
            api_id=functions.api_id if functions is not None else None,
            pages=Pages(demo=config.target is None, console=config.console),
            # Off unless a handler takes `wsgate.access`'s INFO lines: one `if` a message.
            access_log=config.access_log and access_logger.isEnabledFor(logging.INFO),
            compression=config.compression,
            code_reload=code_reload,
        )
    finally:
        if functions is not None:
            functions.close()  # after the gateway stopped: $disconnect ran in the processes


def load_target(target: str | None) -> App:
    """The App a Python target names; None is the demo app."""
    if target is None:
        from wsgate.demo import app

        return app
    from wsgate.importer import load_app

    return load_app(target)


def _serve_until_stopped(
    app: App,
    on_ready: Callable[[Server], None],
    *,
    host: str,
    port: int,
    stage: str,
    store: str,
    limits: Limits,
    allow_remote_management: bool,
    allowed_hosts: tuple[str, ...],
    allowed_origins: tuple[str, ...],
    access_keys: AccessKeys | None,
    peers: Peers | None,
    node_id: str | None,
    node_timeout: float,
    worker: bool,
    listener: socket.socket | None,
    pages: Pages,
    access_log: bool,
    compression: bool,
    api_id: str | None = None,
    code_reload: CodeReload | None = None,
) -> None:
    """Serve `app` until SIGINT/SIGTERM, then close every connection and stop.

    A `worker` accepts from `listener`, shared with the other workers, and also stops
    when its stdin reaches end of file: its supervisor is gone, even one killed with
    SIGKILL. With `code_reload`, code changes are swapped in while it serves.
    """

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # SIGHUP too (a closed terminal, a process manager): every client still gets
        # 1001 and its `$disconnect`.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        if worker:
            fd = sys.stdin.fileno()

            def readable() -> None:
                if not os.read(fd, 4096):  # end of file: the writer is gone
                    loop.remove_reader(fd)
                    log.warning("the supervisor is gone; stopping")
                    stop.set()

            loop.add_reader(fd, readable)
        async with serve(
            app,
            host=host,
            port=port,
            stage=stage,
            store=store,
            limits=limits,
            allow_remote_management=allow_remote_management,
            allowed_hosts=allowed_hosts,
            allowed_origins=allowed_origins,
            access_keys=access_keys,
            peers=peers,
            node_id=node_id,
            node_timeout=node_timeout,
            api_id=api_id,
            sock=listener,
            pages=pages,
            access_log=access_log,
            compression=compression,
        ) as server:
            _tune_gc()
            on_ready(server)
            watching = None
            if code_reload is not None:
                watching = asyncio.create_task(code_reload.watch(server.gateway, stop))
            await stop.wait()
            if watching is not None:
                await watching
            log.info("stopping: closing %d connections", len(server.gateway.live))

    with asyncio.Runner(loop_factory=fastest_loop()) as runner:
        runner.run(main())


def _code_reload(
    config: ServeConfig, functions: OfflineApp | None, adapter: LambdaAdapter | None
) -> CodeReload:
    """What `--reload` watches (the target's folder, else the current one) and how it swaps
    new code in: a Python app is imported afresh; a serverless.yml/SAM app's function
    processes are restarted, so the next invocation starts cold on the new code."""
    from wsgate.importer import reload_app
    from wsgate.server.reload import CodeReload

    location = (config.target or "").partition(":")[0]
    folder = (
        Path(location).resolve().parent
        if location.endswith((".py", *OFFLINE_SUFFIXES))
        else Path.cwd()
    )
    print(f"wsgate: watching {folder} for changes", file=sys.stderr, flush=True)

    def swap(gateway: Gateway) -> str:
        if functions is not None:
            return functions.restart_processes()
        app = reload_app(config.target or "wsgate.demo:app", folder)
        if adapter is None:
            gateway.replace_app(app)
        else:  # its proxy app carries no authorization: replace_app cannot refuse it
            adapter.app = app
            gateway.replace_app(adapter.as_app())
        return f"{app.name} ({len(app.routes)} routes)"

    return CodeReload(folder, swap)


def _tune_gc() -> None:
    """Collect cycles less often, and never look at what startup made again.

    A gateway's garbage is almost all acyclic (freed at once by reference counting), while
    each live connection keeps several container objects that every full collection
    walks: with thousands of connections, the default thresholds spent over a third of a
    connection's CPU time in the collector. Process-wide, so only for `run()` (the CLI),
    not for `serve()` embedded in someone else's program.
    """
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def fastest_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (Linux, macOS): the event loop in C, most of a
    message's CPU time; asyncio's own loop elsewhere."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
