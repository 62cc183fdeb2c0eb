"""Start-up and resource errors: one line each, never a traceback or a flood of them."""

from __future__ import annotations

import base64
import os
import resource
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT
from tests.e2e.test_cli import (
    EXAMPLES,
    WSGATE,
    assert_clean_error,
    free_port,
    run_wsgate,
    wait_for_port as wait_for_listener,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("where", ["parent-is-a-file", "a-directory"])
def test_a_store_path_that_cannot_be_opened_is_one_line(tmp_path: Path, where: str) -> None:
    """A store path under a file, or naming a directory: exit 1 and one `Error:` line with
    the path and the reason."""
    (tmp_path / "file").touch()
    (tmp_path / "dir").mkdir()
    path = tmp_path / ("file/wsgate.db" if where == "parent-is-a-file" else "dir")
    result = run_wsgate(
        "serve",
        str(EXAMPLES / "echo.py"),
        "--store",
        f"sqlite:///{path}",
        "--port",
        str(free_port()),
    )
    assert result.returncode == 1
    assert_clean_error(result, "Error:", str(tmp_path))


@contextmanager
def serve_with_files(tmp_path: Path, soft: int, hard: int) -> Iterator[tuple[int, int, Path]]:
    """`wsgate serve` with an open-files limit of (soft, hard): (pid, port, log)."""
    port = free_port()
    log = tmp_path / f"serve-{port}.log"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                *WSGATE,
                "serve",
                str(EXAMPLES / "echo.py"),
                "--store",
                "memory://",
                "--port",
                str(port),
                "--no-access-log",  # one line per request by design: these count errors
            ],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=limit,
        )
        try:
            wait_for_listener(port, proc, log)
            yield proc.pid, port, log
        finally:
            proc.kill()
            proc.wait()


def test_serve_raises_its_open_files_limit_to_the_hard_limit(tmp_path: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    hard = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    with serve_with_files(tmp_path, 256, hard) as (pid, _, _):
        limits = Path(f"/proc/{pid}/limits").read_text()
        line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        assert line.split()[3:5] == [str(hard), str(hard)], line


def test_running_out_of_file_descriptors_is_logged(tmp_path: Path) -> None:
    """At the open-files limit new connections are closed with a warning, not once per
    connection."""
    with serve_with_files(tmp_path, 128, 128) as (_, port, log), ExitStack() as stack:
        for _ in range(160):
            stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT))
        time.sleep(0.5)
        text = log.read_text()
    warnings = [line for line in text.splitlines() if "out of open files" in line]
    assert 1 <= len(warnings) <= 3, text


def _upgrade(port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    client.sendall(
        f"GET /dev HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert client.recv(12) == b"HTTP/1.1 101"
    return client


def test_a_flood_of_malformed_requests_and_frames_does_not_flood_the_log(
    tmp_path: Path,
) -> None:
    """200 bad requests and frames: a few one-line errors, a count of the rest."""
    with serve_with_files(tmp_path, 1024, 1024) as (_, port, log):
        for _ in range(100):
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
                client.sendall(b"GET /dev/@connections HTTP/1.1\r\nContent-Length: x\r\n\r\n")
                client.recv(100)
            with _upgrade(port) as client:
                client.sendall(b"\x81\x05hello")  # not masked: RFC 6455 forbids it
                client.recv(100)
        time.sleep(1.1)  # the next line says how many were left out
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
            client.sendall(b"GET /dev/@connections HTTP/1.1\r\nContent-Length: x\r\n\r\n")
            client.recv(100)
        time.sleep(0.5)
        text = log.read_text()
    assert "Traceback" not in text, text
    assert len(text.splitlines()) < 40, text
    assert "suppressed" in text, text
