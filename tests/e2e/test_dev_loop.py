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
from websockets.sync.client import ClientConnection

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
def test_reload_swaps_in_an_edit(tmp_path: Path) -> None:
    """Editing the app file under --reload serves the new code to new clients."""
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
    assert "reloaded" in log
    assert "watchfiles" not in log  # the reloader says what happens in wsgate's words


CHAT = """
from wsgate import App, connections

app = App()
ANSWERED = []  # module-level state: starts over with each reload


@app.route("subscribe")
async def subscribe(event, context):
    await connections.subscribe(event.connection_id, event.json["topic"])
    await connections.send(event.connection_id, "subscribed")


@app.route("publish")
async def publish(event, context):
    await connections.publish(event.json["topic"], {reply!r} + ":" + event.json["data"])


@app.default
async def default(event, context):
    ANSWERED.append(event.body)
    await connections.send(event.connection_id, f"{reply}-{{len(ANSWERED)}}")
"""


def serve_reloading(
    folder: Path, port: int, log: Path, target: str = "app.py"
) -> subprocess.Popen[str]:
    """`wsgate serve TARGET --reload` in `folder`, its stderr in `log` (readable meanwhile)."""
    with log.open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "wsgate", "serve", target, "--reload", "--port", str(port)]
            + ["--store", "memory://"],
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
            start_new_session=True,
        )


def ask_until(ws: ClientConnection, prefix: str) -> str | bytes:
    """Send "hi" until the answer starts with `prefix` (the reload is picked up)."""
    deadline = time.monotonic() + TIMEOUT * 2
    answer: str | bytes = ""
    while time.monotonic() < deadline:
        ws.send("hi")
        answer = recv(ws)
        if isinstance(answer, str) and answer.startswith(prefix):
            return answer
        time.sleep(0.1)
    raise AssertionError(f"still {answer!r}, not {prefix}...")


def wait_for_log(log: Path, text: str) -> None:
    deadline = time.monotonic() + TIMEOUT * 2
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"{text!r} not in: {log.read_text()}"
        time.sleep(0.05)


@pytest.mark.slow
def test_reload_keeps_clients_and_their_subscriptions(tmp_path: Path) -> None:
    """A client connected before the edit stays connected and gets the new code's reply;
    its subscription still receives publishes; module-level state starts over."""
    app_file, log = tmp_path / "app.py", tmp_path / "stderr.txt"
    app_file.write_text(CHAT.format(reply="first"))
    port = free_port()
    server = serve_reloading(tmp_path, port, log)
    try:
        wait_for_port(port)
        url = f"ws://127.0.0.1:{port}/dev"
        with ws_connect(url) as listener, ws_connect(url) as talker:
            listener.send('{"action": "subscribe", "topic": "news"}')
            assert recv(listener) == "subscribed"
            assert ask_until(talker, "first") == "first-1"
            assert ask_until(talker, "first") == "first-2"
            app_file.write_text(CHAT.format(reply="second"))
            assert ask_until(talker, "second") == "second-1"  # fresh module state
            talker.send('{"action": "publish", "topic": "news", "data": "hello"}')
            assert recv(listener) == "second:hello"
        wait_for_log(log, "2 connections kept")
    finally:
        stop(server)


@pytest.mark.slow
def test_reload_keeps_the_old_code_when_the_new_does_not_import(tmp_path: Path) -> None:
    """A SyntaxError is logged once with its traceback and the old code keeps answering;
    the fixed file is then picked up."""
    app_file, log = tmp_path / "app.py", tmp_path / "stderr.txt"
    app_file.write_text(CHAT.format(reply="first"))
    port = free_port()
    server = serve_reloading(tmp_path, port, log)
    try:
        wait_for_port(port)
        with ws_connect(f"ws://127.0.0.1:{port}/dev") as ws:
            assert ask_until(ws, "first") == "first-1"
            app_file.write_text(CHAT.format(reply="second") + "\ndef broken(:\n")
            wait_for_log(log, "did not load")
            assert ask_until(ws, "first") == "first-2"
            app_file.write_text(CHAT.format(reply="third"))
            assert ask_until(ws, "third") == "third-1"
    finally:
        stop(server)
    text = log.read_text()
    assert text.count("SyntaxError") >= 1
    assert text.count("still running the code of before") == 1
    assert text.count("Traceback") == 1


HANDLERS = """
from wsgate import connections


def default(event, context):
    connections.send(event.connection_id, {reply!r})
"""


@pytest.mark.slow
def test_reload_picks_up_a_route_tables_module(tmp_path: Path) -> None:
    """An app whose route table names plain functions in handlers.py picks up an edit to
    handlers.py."""
    (tmp_path / "app.py").write_text(
        'from wsgate import App\n\napp = App(routes={"$default": "handlers.default"})\n'
    )
    handlers, log = tmp_path / "handlers.py", tmp_path / "stderr.txt"
    handlers.write_text(HANDLERS.format(reply="v1"))
    port = free_port()
    server = serve_reloading(tmp_path, port, log)
    try:
        wait_for_port(port)
        with ws_connect(f"ws://127.0.0.1:{port}/dev") as ws:
            assert ask_until(ws, "v1") == "v1"
            handlers.write_text(HANDLERS.format(reply="v2-new"))
            assert ask_until(ws, "v2") == "v2-new"
    finally:
        stop(server)


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


FUNCTION = """
def echo(event, context):
    return {{"statusCode": 200, "body": {reply!r} + event["body"]}}
"""

SERVERLESS = f"""
service: reloaded
provider: {{name: aws, runtime: python{sys.version_info.major}.{sys.version_info.minor}}}
functions:
  echo:
    handler: handler.echo
    events: [{{websocket: {{route: $default, routeResponseSelectionExpression: $default}}}}]
"""


@pytest.mark.slow
def test_reload_restarts_a_serverless_apps_functions_and_keeps_its_clients(
    tmp_path: Path,
) -> None:
    """A serverless.yml app's function processes restart on an edit: the next invocation
    runs the new code, on the connection opened before it."""
    (tmp_path / "serverless.yml").write_text(SERVERLESS)
    function, log = tmp_path / "handler.py", tmp_path / "stderr.txt"
    function.write_text(FUNCTION.format(reply="one:"))
    port = free_port()
    server = serve_reloading(tmp_path, port, log, target="serverless.yml")
    try:
        wait_for_port(port)
        with ws_connect(f"ws://127.0.0.1:{port}/dev") as ws:
            assert ask_until(ws, "one:") == "one:hi"
            function.write_text(FUNCTION.format(reply="two-new:"))
            assert ask_until(ws, "two-new:") == "two-new:hi"
    finally:
        stop(server)
