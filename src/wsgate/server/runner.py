"""Start and stop a gateway: `serve()` for Python and tests, `run()` for the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from wsgate.app import App
from wsgate.core.limits import Limits
from wsgate.exceptions import ConfigError
from wsgate.server.front import FrontDoor
from wsgate.server.gateway import Gateway
from wsgate.server.http import build_http_app, socket_paths
from wsgate.server.peers import Peers
from wsgate.store import DEFAULT_STORE_URL, Store, open_store

log = logging.getLogger("wsgate.server")


@dataclass(frozen=True, slots=True)
class Server:
    """A running gateway and where to reach it."""

    gateway: Gateway
    host: str
    port: int

    @property
    def url(self) -> str:
        """The WebSocket URL clients connect to, stage included."""
        return f"ws://{self._authority}/{self.gateway.stage}"

    @property
    def management_url(self) -> str:
        """The `endpoint_url` for boto3's `apigatewaymanagementapi` client."""
        return f"http://{self._authority}/{self.gateway.stage}"

    @property
    def _authority(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"{host}:{self.port}"


@contextlib.asynccontextmanager
async def serve(
    app: App,
    *,
    # Network
    host: str = "127.0.0.1",
    port: int = 8080,
    # API Gateway
    stage: str = "dev",
    api_id: str | None = None,
    stage_variables: Mapping[str, str] | None = None,
    # State
    store: Store | str = DEFAULT_STORE_URL,
    # Limits
    limits: Limits | None = None,
    # Security
    allow_remote_management: bool = False,
    # Workers (`wsgate serve --workers N`): this one's link to the others
    peers: Peers | None = None,
) -> AsyncIterator[Server]:
    """Run `app` until the block exits; port 0 picks a free port (see `Server.port`).

    async with serve(app, port=0, store="memory://") as server:
        print(server.url)
    """
    _check_stage(stage)
    gateway = Gateway(
        app,
        open_store(store) if isinstance(store, str) else store,
        stage=stage,
        limits=limits,
        api_id=api_id,
        stage_variables=stage_variables,
        others=peers,
    )
    await gateway.start()
    runner = web.AppRunner(
        build_http_app(gateway, allow_remote_management=allow_remote_management),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=1.0,
    )
    listener: asyncio.Server | None = None
    try:
        await runner.setup()
        http_protocol = runner.server
        assert http_protocol is not None
        paths = socket_paths(stage)
        loop = asyncio.get_running_loop()

        def front_door() -> FrontDoor:
            return FrontDoor(
                paths, gateway.open_connection, http_protocol, gateway.connection_tasks, loop
            )

        try:
            listener = await loop.create_server(
                front_door, host, port, reuse_address=True, reuse_port=peers is not None
            )
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        yield Server(gateway, host, _bound_port(listener))
    finally:
        if listener is not None:
            listener.close()
        await gateway.stop()
        await runner.cleanup()


def _check_stage(stage: str) -> None:
    if not stage or "/" in stage or stage.startswith(("@", "%40")):
        raise ConfigError(f"bad stage name {stage!r}: use letters, digits, '-' or '_'")


def _bound_port(listener: asyncio.Server) -> int:
    for sock in listener.sockets:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            return int(sock.getsockname()[1])
    raise RuntimeError("the listener has no TCP socket")


def run(
    app: App,
    *,
    on_ready: Callable[[Server], None] | None = None,
    stop_when_closed: int | None = None,
    **options: object,
) -> None:
    """Serve `app` until SIGINT/SIGTERM, then close every connection and stop.

    `stop_when_closed`: a pipe's read end; the gateway also stops when its writer is gone
    (a `--workers` worker watches its supervisor this way, even one killed with SIGKILL).
    """

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if stop_when_closed is not None:
            fd = stop_when_closed

            def readable() -> None:
                if not os.read(fd, 4096):  # end of file: the writer is gone
                    loop.remove_reader(fd)
                    log.warning("the supervisor is gone; stopping")
                    stop.set()

            loop.add_reader(fd, readable)
        async with serve(app, **options) as server:  # type: ignore[arg-type]
            _tune_gc()
            if on_ready is not None:
                on_ready(server)
            await stop.wait()
            log.info("stopping: closing %d connections", len(server.gateway.live))

    with asyncio.Runner(loop_factory=fastest_loop()) as runner:
        runner.run(main())


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
