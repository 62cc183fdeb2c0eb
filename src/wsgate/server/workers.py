"""`wsgate serve --workers N`: one gateway process per core, on one port.

The supervisor (this module) starts N gateway processes (`main`, given the `ServeConfig`)
that share one listening socket: the supervisor binds and listens on the port (without
SO_REUSEPORT, so the gateway owns it: another process cannot bind it too) and each worker
inherits the socket, and accepts from it, so the kernel spreads new connections over
them. Each worker keeps its part of the table in its own store (`wsgate.db` becomes
`wsgate.worker0.db`, ...) and reaches the others through `server/peers.py`; with a Redis
store each worker is a gateway node of its own (`server/redis_bus.py`). The supervisor
stops the workers on SIGINT, SIGTERM and SIGHUP (a closed terminal) and exits 0 once they
have stopped;
if a worker dies, it stops the others and exits 1, so a process manager sees the failure;
if the supervisor dies, even of SIGKILL, the workers see their stdin pipe close and stop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from wsgate.exceptions import ConfigError, WsgateError
from wsgate.server.modes import ServeConfig, configure_logging, run_node
from wsgate.server.peers import MAX_WORKERS, Peers

#: Stores that link gateway nodes themselves: with them each worker is a node of its own.
NODE_STORES = ("redis://", "rediss://", "redis+sentinel://")


def worker_store(url: str, worker: int) -> str:
    """The store URL worker `worker` uses: its own SQLite file; memory:// and Redis (shared,
    each worker a node) as they are."""
    if url.startswith(("memory://", *NODE_STORES)):
        return url
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        name = f"{path.stem}.worker{worker}{path.suffix}"
        return "sqlite:///" + str(path.with_name(name))
    raise ConfigError(
        f"--workers needs a store each worker can own a part of (memory:// or sqlite:///) "
        f"or one that links nodes (redis://); {url!r} is shared by every process and "
        "does not: run one worker per node with it, or use a Redis store"
    )


def _listen(host: str, port: int) -> socket.socket:
    """The workers' one listening socket on `port` (a free one if 0). SO_REUSEADDR (a
    restart need not wait for TIME_WAIT) but never SO_REUSEPORT: nobody else may bind it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(socket.SOMAXCONN)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def supervise(config: ServeConfig) -> int:
    """Run `config` as `config.workers` processes until a signal; return the exit code."""
    count = config.workers
    if not 2 <= count <= MAX_WORKERS:
        raise ConfigError(f"--workers takes 2 to {MAX_WORKERS} (1 is the default, no workers)")
    stores = [worker_store(config.store, worker) for worker in range(count)]
    listener = _listen(config.host, config.port)
    bound = listener.getsockname()[1]
    stopping = False
    processes: list[subprocess.Popen[bytes]] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)

    with tempfile.TemporaryDirectory(prefix="wsgate-workers-") as directory, listener:
        stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {sig: signal.signal(sig, stop) for sig in stop_signals}
        try:
            for worker in range(count):
                own = dataclasses.replace(config, port=bound, store=stores[worker], workers=1)
                command = [
                    sys.executable,
                    "-m",
                    "wsgate.server.workers",
                    own.to_json(),
                    f"{worker}/{count}",
                    directory,
                    str(listener.fileno()),
                ]
                # The worker's stdin is a pipe nobody writes: when this process is gone, for
                # whatever reason, the worker reads end-of-file and stops.
                process = subprocess.Popen(
                    command, stdin=subprocess.PIPE, pass_fds=[listener.fileno()]
                )
                processes.append(process)
                if stopping:  # the signal came while Popen ran: `stop` did not see this one
                    process.send_signal(signal.SIGTERM)
            return _wait(processes, lambda: stopping)
        finally:
            stop(signal.SIGTERM, None)
            for process in processes:
                try:
                    process.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _wait(processes: list[subprocess.Popen[bytes]], stopping: Callable[[], bool]) -> int:
    """Wait until every worker exits; 1 if one died on its own, else 0."""
    while True:
        codes = [process.poll() for process in processes]
        if all(code is not None for code in codes):
            # A worker still starting up when asked to stop dies of the signal itself.
            clean = all(code in (0, -signal.SIGTERM) for code in codes)
            return 0 if stopping() and clean else 1
        if not stopping() and any(code is not None for code in codes):
            dead = [i for i, code in enumerate(codes) if code is not None]
            print(f"wsgate: worker {dead[0]} exited; stopping the others", file=sys.stderr)
            return 1
        time.sleep(0.1)


def main(argv: list[str]) -> int:
    """A worker: `python -m wsgate.server.workers CONFIG_JSON K/N DIRECTORY FD`, FD the
    listening socket its supervisor passed down."""
    config_json, spec, directory, fd = argv
    index, _, count = spec.partition("/")
    worker = (int(index), int(count))
    config = ServeConfig.from_json(config_json)
    listener = socket.socket(fileno=int(fd))
    configure_logging(config)
    try:
        if config.store.startswith(NODE_STORES):  # each worker a node; Redis links them
            node_id = config.node_id or f"{socket.gethostname().split('.')[0]}-{os.getppid()}"
            run_node(
                dataclasses.replace(config, node_id=f"{node_id}-{index}"),
                worker=worker,
                listener=listener,
            )
        else:
            run_node(
                config, worker=worker, peers=Peers(*worker, Path(directory)), listener=listener
            )
    except WsgateError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
