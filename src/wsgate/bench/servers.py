"""The servers under test: wsgate and the references, each started as its own process."""

from __future__ import annotations

import sys
from pathlib import Path

from wsgate.bench import node, optional
from wsgate.bench.procs import ServerProcess, free_port

#: The wsgate servers and the app each serves (`wsgate-2w`: `--workers 2`).
WSGATE_APPS = {
    "wsgate": "wsgate.bench.apps:app",
    "wsgate-2w": "wsgate.bench.apps:app",
    "wsgate-sync": "wsgate.bench.apps:sync_app",
}


def unavailable_reason(name: str, workdir: Path) -> str | None:
    """Why `name` cannot run here, or None if it can (installs serverless on first use)."""
    if name in WSGATE_APPS:
        return None
    if name == "websockets":
        if optional.load("websockets") is None:
            return "websockets is not installed (pip install 'wsgate[bench]')"
        return None
    if name == "picows":
        if optional.load("picows") is None:
            return "picows is not installed (pip install 'wsgate[bench]')"
        return None
    if name == "serverless-offline":
        try:
            node.prepare(workdir / "npm-install.log")
        except node.Unavailable as exc:
            return str(exc)
        return None
    return f"unknown server {name!r}"


def create(name: str, workdir: Path, tag: str) -> ServerProcess:
    """A fresh (not yet started) process for server `name`; `tag` names its files."""
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
                *python,
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
    if name in ("websockets", "picows"):
        return ServerProcess(
            name,
            [*python, f"wsgate.bench.refs.{name}_server", "--port", str(port)],
            port=port,
            url=f"ws://127.0.0.1:{port}/",
            log=log,
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
