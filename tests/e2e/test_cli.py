"""The `wsgate` command, run as a user runs it: real subprocesses on real ports."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import TIMEOUT, free_port, recv, ws_connect

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
WSGATE = [sys.executable, "-m", "wsgate"]

#: How long a subprocess that should finish on its own may take.
RUN_TIMEOUT = 20 * TIMEOUT / 5

pytestmark = pytest.mark.slow


def run_wsgate(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `wsgate ARGS` to completion (killed if it outlives RUN_TIMEOUT)."""
    return subprocess.run(
        [*WSGATE, *args], cwd=cwd, capture_output=True, text=True, timeout=RUN_TIMEOUT
    )


def wait_for_port(port: int, proc: subprocess.Popen[Any], log: Path) -> None:
    """Wait until 127.0.0.1:port accepts TCP connections; fail early if `proc` died."""
    deadline = time.monotonic() + 2 * TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"wsgate serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"wsgate serve never listened on {port}:\n{log.read_text()}")
            time.sleep(0.05)


@contextmanager
def wsgate_serve(*args: str, cwd: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`wsgate serve ARGS --port PORT` in the background, killed if the block leaves it running."""
    log = cwd / f"serve-{port}-{time.monotonic_ns()}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*WSGATE, "serve", *args, "--port", str(port)],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port, proc, log)
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def stop(proc: subprocess.Popen[Any]) -> int:
    """Ctrl+C the server and return its exit code."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=2 * TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("wsgate serve did not stop on SIGINT")


def live_ids(port: int) -> list[str]:
    """GET /dev/@connections: the ids the gateway lists."""
    url = f"http://127.0.0.1:{port}/dev/@connections"
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        return list(json.load(response)["connections"])


def wait_for_connections(port: int, count: int) -> list[str]:
    deadline = time.monotonic() + 2 * TIMEOUT
    while len(ids := live_ids(port)) != count:
        assert time.monotonic() < deadline, f"expected {count} connections, have {ids}"
        time.sleep(0.05)
    return ids


def assert_clean_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """A failed command: non-zero exit, one line on stderr naming the problem, no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], result.stderr


# -- serve + connect + connections -----------------------------------------------------


def test_topic_message_travels_between_two_cli_clients(tmp_path: Path) -> None:
    """A `wsgate connect` subscriber prints the message another `wsgate connect` published."""
    port = free_port()
    url = f"ws://127.0.0.1:{port}/dev"
    store = f"sqlite:///{tmp_path / 'db'}"
    with wsgate_serve(
        str(EXAMPLES / "topics.py"), "--store", store, cwd=tmp_path, port=port
    ) as srv:
        subscriber = subprocess.Popen(
            [*WSGATE, "connect", url, "-x", '{"type":"subscribe","topic":"t"}', "-w", "3"],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for_connections(port, 1)
            publisher = run_wsgate(
                "connect", url, "-x", '{"type":"message","topic":"t","data":1}', "-w", "0.5"
            )
            out, err = subscriber.communicate(timeout=RUN_TIMEOUT)
        finally:
            if subscriber.poll() is None:
                subscriber.kill()
                subscriber.communicate()
        assert subscriber.returncode == 0, err
        assert publisher.returncode == 0, publisher.stderr
        assert '{"topic": "t", "data": 1}' in out.splitlines(), (out, err)
        assert publisher.stdout == "", "the sender must not receive its own message"
        assert f"connected to {url}" in err
        assert stop(srv) == 0


def test_connections_lists_live_connection_ids(tmp_path: Path) -> None:
    """`wsgate connections` lists the id of each connected client, and none once it left."""
    port = free_port()
    management = f"http://127.0.0.1:{port}/dev"
    with wsgate_serve(
        str(EXAMPLES / "echo.py"), "--store", "memory://", cwd=tmp_path, port=port
    ) as srv:
        empty = run_wsgate("connections", "--url", management)
        assert empty.returncode == 0, empty.stderr
        assert empty.stdout.strip() == "no connections"

        with (
            ws_connect(f"ws://127.0.0.1:{port}/dev") as first,
            ws_connect(f"ws://127.0.0.1:{port}/dev", user_agent_header="test-agent/1") as second,
        ):
            for ws in (first, second):  # both are fully registered once they get an echo
                ws.send("ping")
                assert recv(ws) == "ping"
            ids = live_ids(port)
            assert len(ids) == 2
            table = run_wsgate("connections", "--url", management)
            assert table.returncode == 0, table.stderr
            for connection_id in ids:
                assert connection_id in table.stdout
            assert "127.0.0.1" in table.stdout
            as_json = run_wsgate("connections", "--url", management, "--json")
            assert as_json.returncode == 0, as_json.stderr
            rows = json.loads(as_json.stdout)
            assert sorted(row["connectionId"] for row in rows) == sorted(ids)
            agents = {row["identity"].get("userAgent") for row in rows}
            assert "test-agent/1" in agents

        wait_for_connections(port, 0)
        after = run_wsgate("connections", "--url", management)
        assert after.stdout.strip() == "no connections"
        assert stop(srv) == 0


def test_connections_reports_an_unreachable_gateway() -> None:
    """`wsgate connections` against a port nobody listens on fails with a clear message."""
    result = run_wsgate("connections", "--url", f"http://127.0.0.1:{free_port()}/dev")
    assert_clean_error(result, "cannot reach")


def test_serve_without_target_serves_the_demo(tmp_path: Path) -> None:
    """`wsgate serve` with no TARGET runs the demo app: it echoes and answers whoAmI."""
    port = free_port()
    with wsgate_serve(cwd=tmp_path, port=port) as srv:
        with ws_connect(f"ws://127.0.0.1:{port}/dev") as ws:
            ws.send("hello demo")
            assert recv(ws) == "hello demo"
            ws.send(json.dumps({"action": "whoAmI"}))
            me = recv(ws)
            assert me in live_ids(port)
        cli = run_wsgate("connect", f"ws://127.0.0.1:{port}/dev", "-x", "via cli", "-w", "0.5")
        assert cli.returncode == 0, cli.stderr
        assert cli.stdout.splitlines() == ["via cli"]
        assert stop(srv) == 0


# -- errors ----------------------------------------------------------------------------


def test_serve_frame_and_message_limits(tmp_path: Path) -> None:
    """The 32 KB frame quota holds by default; `--max-frame-bytes` lifts it for local work;
    `--max-message-bytes` sets the message limit."""
    body = "x" * 40_000  # one frame, as a browser sends it
    port = free_port()
    with wsgate_serve(cwd=tmp_path, port=port):
        with ws_connect(f"ws://127.0.0.1:{port}/dev") as ws:
            ws.send(body)
            with pytest.raises(ConnectionClosed) as closed:
                recv(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    port = free_port()
    with wsgate_serve("--max-frame-bytes", "131072", cwd=tmp_path, port=port):
        with ws_connect(f"ws://127.0.0.1:{port}/dev") as ws:
            ws.send(body)
            assert recv(ws) == body
    port = free_port()
    with wsgate_serve("--max-message-bytes", "1000", cwd=tmp_path, port=port):
        with ws_connect(f"ws://127.0.0.1:{port}/dev") as ws:
            ws.send("y" * 1000)
            assert recv(ws) == "y" * 1000
            ws.send("y" * 1001)
            with pytest.raises(ConnectionClosed) as closed:
                recv(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_serve_rejects_a_frame_limit_below_a_control_frame(tmp_path: Path) -> None:
    """A limit that would refuse close frames and pings is a clean error, not a broken server."""
    result = run_wsgate("serve", "--max-frame-bytes", "100", "--port", str(free_port()))
    assert_clean_error(result, "max_frame_bytes must be at least 125", "got 100")


def test_serve_missing_file_is_a_clean_error(tmp_path: Path) -> None:
    """Serving a file that does not exist fails with one line naming the file."""
    result = run_wsgate("serve", "missing_app.py", "--port", str(free_port()), cwd=tmp_path)
    assert_clean_error(result, "no such file", "missing_app.py")


def test_serve_file_without_app_is_a_clean_error(tmp_path: Path) -> None:
    """Serving a Python file that defines no App fails with one line saying so."""
    (tmp_path / "not_an_app.py").write_text("VALUE = 1\n")
    result = run_wsgate("serve", "not_an_app.py", "--port", str(free_port()), cwd=tmp_path)
    assert_clean_error(result, "not_an_app.py", "no wsgate.App")


@pytest.mark.parametrize(
    ("target", "fragments"),
    [
        ("wsgate.demo:no_such_app", ("wsgate.demo", "no attribute 'no_such_app'")),
        ("no_such_module_xyz:app", ("no module named 'no_such_module_xyz'",)),
        ("EXAMPLES/echo.py:nope", ("echo.py", "no attribute 'nope'")),
    ],
    ids=["missing-attr", "missing-module", "file-missing-attr"],
)
def test_serve_missing_module_attr_is_a_clean_error(
    tmp_path: Path, target: str, fragments: tuple[str, ...]
) -> None:
    """Serving a module:attr or file:attr that does not exist fails with one clear line."""
    target = target.replace("EXAMPLES", str(EXAMPLES))
    result = run_wsgate("serve", target, "--port", str(free_port()), cwd=tmp_path)
    assert_clean_error(result, *fragments)


def test_serve_on_a_busy_port_says_cannot_listen(tmp_path: Path) -> None:
    """Serving on a port another socket listens on fails with "cannot listen", no traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_wsgate(
            "serve",
            str(EXAMPLES / "echo.py"),
            "--port",
            str(port),
            "--store",
            "memory://",
            cwd=tmp_path,
        )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr, result.stderr


def test_connect_to_nothing_says_cannot_connect() -> None:
    """`wsgate connect` to a port where nothing listens exits 1 with "cannot connect"."""
    url = f"ws://127.0.0.1:{free_port()}/dev"
    result = run_wsgate("connect", url, "-x", "hi", "-w", "0.2")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert f"cannot connect to {url}" in result.stderr
    assert result.stdout == ""


REFUSING_APP = """\
from wsgate import App

app = App(name="bouncer")


@app.on_connect
def refuse(event, context):
    return {"statusCode": 401}
"""


def test_connect_refused_by_connect_handler_shows_status(tmp_path: Path) -> None:
    """A $connect handler returning 401 makes `wsgate connect` exit 1 with the HTTP status."""
    (tmp_path / "bouncer.py").write_text(REFUSING_APP)
    port = free_port()
    with wsgate_serve("bouncer.py", "--store", "memory://", cwd=tmp_path, port=port) as srv:
        result = run_wsgate("connect", f"ws://127.0.0.1:{port}/dev", "-x", "hi", "-w", "0.2")
        assert result.returncode == 1
        assert "refused the handshake (401 Unauthorized)" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert live_ids(port) == []
        assert stop(srv) == 0


# -- help ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ((), ("serve", "connect", "connections")),
        (("serve",), ("TARGET", "--port", "--store")),
        (("connect",), ("URL", "--execute", "--wait")),
        (("connections",), ("--url", "--json")),
    ],
    ids=["wsgate", "serve", "connect", "connections"],
)
def test_help(command: tuple[str, ...], expected: tuple[str, ...]) -> None:
    """`--help` prints usage and the command's options, and exits 0."""
    result = run_wsgate(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage:")
    for word in expected:
        assert word in result.stdout
