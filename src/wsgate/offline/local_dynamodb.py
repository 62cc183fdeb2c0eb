"""The local DynamoDB an offline app gets by default: moto in server mode, in a subprocess.

    with LocalDynamoDB() as dynamodb:          # python -m wsgate.offline.local_dynamodb PORT
        ...dynamodb.endpoint...                # http://127.0.0.1:PORT

Why by default: handlers create their boto3 clients as on AWS, and without an endpoint
their DynamoDB calls would reach the user's real account. moto speaks DynamoDB's HTTP API,
keeps everything in memory and needs no Java or Docker (DynamoDB Local does), so a plain
`wsgate serve serverless.yml` is safe and self-contained; `--dynamodb-endpoint` picks
another one, `--aws` the real one.

Why a module of our own rather than `python -m moto.server`: the server must outlive
Ctrl+C (the gateway runs every `$disconnect` after it, and those write to DynamoDB) but
not the gateway, even one killed with SIGKILL. So it runs in its own session (the
terminal's Ctrl+C does not reach it) with a thread that exits when its parent changes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from types import TracebackType
from typing import IO

from wsgate.exceptions import ConfigError
from wsgate.offline.function_process import exit_with_parent

#: Seconds moto may take to answer its first request (about 1 s on a laptop).
START_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalDynamoDB:
    """A moto server on a free port of 127.0.0.1, from `start()` to `stop()`."""

    def __init__(self) -> None:
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it answers; retry if its port was taken meanwhile."""
        for _ in range(3):
            self.port = _free_port()
            # A file, not a pipe: moto logs every request, and a pipe nobody reads fills up.
            self._log = tempfile.TemporaryFile()
            self._process = subprocess.Popen(
                [sys.executable, "-m", "wsgate.offline.local_dynamodb", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            if self._wait_until_ready():
                return
            output = self._output()
            self.stop()
        raise ConfigError(f"the local DynamoDB (moto server) did not start:\n{output}")

    def _wait_until_ready(self) -> bool:
        assert self._process is not None
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False  # exited: most likely the port was taken meanwhile
            try:
                with opener.open(f"{self.endpoint}/moto-api/", timeout=1) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        return False

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a grace period); its data is gone."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LocalDynamoDB:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        sys.exit("usage: python -m wsgate.offline.local_dynamodb PORT")
    exit_with_parent(os.getppid())
    from moto.server import main as moto_main

    moto_main(["-H", "127.0.0.1", "-p", args[0]])


if __name__ == "__main__":
    main()
