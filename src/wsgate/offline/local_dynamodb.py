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
import sys
import urllib.error
import urllib.request
from types import TracebackType

from wsgate.exceptions import ConfigError
from wsgate.offline.background import BackgroundServer
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
        self._server: BackgroundServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it answers; retry if its port was taken meanwhile."""
        output = ""
        for _ in range(3):
            self.port = _free_port()
            self._server = BackgroundServer(
                [sys.executable, "-m", "wsgate.offline.local_dynamodb", str(self.port)],
                self._answers,
                own_session=True,
            )
            if self._server.start(START_TIMEOUT):
                return
            output = self._server.output()
            self.stop()
        raise ConfigError(f"the local DynamoDB (moto server) did not start:\n{output}")

    def _answers(self) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"{self.endpoint}/moto-api/", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def pid(self) -> int | None:
        return self._server.pid if self._server is not None else None

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a grace period); its data is gone."""
        if self._server is not None:
            self._server.stop()
            self._server = None

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
