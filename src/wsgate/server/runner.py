"""Start and stop a gateway: `serve()`, to embed one (tests, your own program).

`wsgate serve` and its modes (reload, workers, offline serverless/SAM, Lambda) are in
`server/modes.py`, on top of this."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wsgate.app import App
from wsgate.core.limits import Limits
from wsgate.exceptions import ConfigError
from wsgate.server.delivery import OtherNodes
from wsgate.server.front import FrontDoor, limit_log_floods
from wsgate.server.gateway import Gateway, check_authorization
from wsgate.server.http import http_runner, socket_paths
from wsgate.server.listener import Listener, listening_socket
from wsgate.server.pages import DEFAULT_PAGES, Pages
from wsgate.server.peers import Peers
from wsgate.server.redis_bus import NODE_TIMEOUT, RedisBus
from wsgate.server.signatures import AccessKeys
from wsgate.store import DEFAULT_STORE_URL, Store, open_store

if TYPE_CHECKING:
    pass

log = logging.getLogger("wsgate.server")


@dataclass(frozen=True, slots=True)
class Server:
    """A running gateway and where to reach it (`port` 0: no socket, `serve(listen=False)`)."""

    gateway: Gateway
    host: str
    port: int
    #: The protocol a new connection starts with, whatever carries it (the listening
    #: socket's connections, or `server/socketless.py`'s in-memory ones).
    front_door: Callable[[], FrontDoor]

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
        return f"{host}:{self.port}" if self.port else host  # 0: no socket (listen=False)


@contextlib.asynccontextmanager
async def serve(
    app: App,
    *,
    # Network; `backlog`: connects the kernel queues while the loop is busy, the system's
    # maximum by default (as uvicorn) so a burst waits in the queue, not in SYN retries
    host: str = "127.0.0.1",
    port: int = 8080,
    backlog: int = socket.SOMAXCONN,
    # WebSocket: permessage-deflate for the clients that offer it, as API Gateway
    compression: bool = True,
    # API Gateway
    stage: str = "dev",
    api_id: str | None = None,
    stage_variables: Mapping[str, str] | None = None,
    # State
    store: Store | str = DEFAULT_STORE_URL,
    # Limits
    limits: Limits | None = None,
    # Security: management callers (loopback only unless `allow_remote_management`),
    # `Host`s the management API answers, browser `Origin`s a handshake may come from
    # (any without a list), and the access keys that sign `AWS_IAM` handshakes and, when
    # given, every management call
    allow_remote_management: bool = False,
    allowed_hosts: Iterable[str] = (),
    allowed_origins: Iterable[str] = (),
    access_keys: AccessKeys | Mapping[str, str] | None = None,
    # Browser pages: the connections console (for the management API's callers) and,
    # for the demo app, its chat page at `/`
    pages: Pages = DEFAULT_PAGES,
    # Several nodes: a worker's link to the others (`wsgate serve --workers N`); with a
    # Redis store, this node's id (random if None) and when a silent node counts as dead;
    # `sock`: a listening socket to accept from instead of binding `host:port` (the workers
    # share their supervisor's: the kernel spreads connections over the processes)
    peers: Peers | None = None,
    node_id: str | None = None,
    node_timeout: float = NODE_TIMEOUT,
    sock: socket.socket | None = None,
    # Observability: one `wsgate.access` line per connect, message, disconnect and
    # management call (off by default, so an embedding program's log stays its own)
    access_log: bool = False,
    # No socket at all: connections only come through `Server.front_door` (in memory,
    # `wsgate.testing`'s socketless mode)
    listen: bool = True,
) -> AsyncIterator[Server]:
    """Run `app` until the block exits; port 0 picks a free port (see `Server.port`).

    async with serve(app, port=0, store="memory://") as server:
        print(server.url)
    """
    _check_stage(stage)
    limit_log_floods()
    keys = AccessKeys(access_keys) if isinstance(access_keys, Mapping) else access_keys
    check_authorization(app, keys)
    opened = open_store(store) if isinstance(store, str) else store
    node, others = _node(opened, peers, node_id=node_id, node_timeout=node_timeout)
    gateway = Gateway(
        app,
        opened,
        stage=stage,
        limits=limits,
        api_id=api_id,
        stage_variables=stage_variables,
        node=node,
        others=others,
        allowed_origins=tuple(allowed_origins),
        access_keys=keys,
        access_log=access_log,
        compression=compression,
    )
    await gateway.start()
    runner = http_runner(
        gateway,
        allow_remote_management=allow_remote_management,
        allowed_hosts=tuple(allowed_hosts),
        bind_host=host,
        access_keys=keys,
        pages=pages,
        workers=peers,
    )
    listener: Listener | None = None
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

        if not listen:
            yield Server(gateway, host, 0, front_door)
            return
        try:
            listening = sock if sock is not None else listening_socket(host, port, backlog)
            listener = Listener(loop, front_door, listening, backlog)
            await listener.start()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        yield Server(gateway, host, listener.port, front_door)
    finally:
        if listener is not None:
            listener.close()
        await gateway.stop()
        await runner.cleanup()


def _node(
    store: Store, peers: Peers | None, *, node_id: str | None, node_timeout: float
) -> tuple[str | None, OtherNodes | None]:
    """This gateway's node id, and how it reaches the other nodes: the workers of
    `--workers N`, the nodes sharing a Redis store, or none."""
    from wsgate.store.redis import RedisStore

    if not isinstance(store, RedisStore):
        if node_id is not None:
            raise ConfigError("--node-id is for the Redis store (several gateway nodes)")
        return None, peers
    if peers is not None:
        raise ConfigError("a Redis store links the nodes itself; it takes no workers' bus")
    node = node_id or f"{socket.gethostname().split('.')[0]}-{os.urandom(3).hex()}"
    store.node = node
    return node, RedisBus(store, node, node_timeout=node_timeout)


def _check_stage(stage: str) -> None:
    if not stage or "/" in stage or stage.startswith(("@", "%40")):
        raise ConfigError(f"bad stage name {stage!r}: use letters, digits, '-' or '_'")
