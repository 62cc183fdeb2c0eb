"""The developer loop: `wsgate serve --reload` picks up edits; `wsgate connect` is interactive."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT, free_port, recv, ws_connect

APP = """
from wsgate import App, connections

app = App()


@app.default
async def default(event, context):
    await connections.send(event.connection_id, {reply!r})
"""


def wait_for_port(port: int, timeout: float = TIMEOUT * 3) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def ask(port: int) -> str | bytes:
    with ws_connect(f"ws://127.0.0.1:{port}/dev") as ws:
        ws.send("hi")
        return recv(ws)


def start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "wsgate", *args],
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[str]) -> str:
    """Stop with SIGINT (SIGKILL if it hangs); close the pipes; return what it printed."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
    try:
        _, err = process.communicate(timeout=TIMEOUT * 2)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, err = process.communicate()
    return err


@pytest.mark.slow
def test_reload_restarts_on_edit(tmp_path: Path) -> None:
    """Editing the app file under --reload restarts the gateway with the new code."""
    app_file = tmp_path / "app.py"
    app_file.write_text(APP.format(reply="first"))
    port = free_port()
    server = start(
        ["serve", "app.py", "--reload", "--port", str(port), "--store", "memory://"], tmp_path
    )
    try:
        wait_for_port(port)
        assert ask(port) == "first"
        app_file.write_text(APP.format(reply="second"))
        deadline = time.monotonic() + TIMEOUT * 4
        answer: str | bytes = "first"
        while answer != "second" and time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                answer = ask(port)
            except (OSError, TimeoutError, Exception):
                answer = "restarting"
        assert answer == "second"
    finally:
        log = stop(server)
    assert "restarting" in log
    assert "watchfiles" not in log  # the reloader says what happens in wsgate's words


@pytest.mark.slow
def test_connect_sends_stdin_lines_and_prints_replies(tmp_path: Path) -> None:
    """`wsgate connect` sends each stdin line and prints each message on its own line."""
    port = free_port()
    server = start(["serve", "--port", str(port), "--store", "memory://"], tmp_path)
    try:
        wait_for_port(port)
        client = start(["connect", f"ws://127.0.0.1:{port}/dev", "-w", "1"], tmp_path)
        out, err = client.communicate('first line\n{"action": "whoAmI"}\n', timeout=TIMEOUT * 2)
        lines = out.splitlines()
        assert lines[0] == "first line"  # the demo echoes what is not an action
        assert len(lines[1]) == 16 and lines[1].endswith("=")
        assert client.returncode == 0, err
    finally:
        stop(server)
