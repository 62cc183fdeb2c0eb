"""Commands that start processes stop them when they are stopped: by Ctrl+C, and by
SIGTERM (a process manager, `kill`) or SIGHUP (the terminal closed) too.

Each test starts the command, finds the processes it started (Linux: /proc), signals the
command and checks that none of them survives it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import TIMEOUT, recv, ws_connect
from tests.e2e.test_cli import EXAMPLES, free_port, wsgate_serve

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]

STOP_SIGNALS = [
    pytest.param(signal.SIGTERM, id="SIGTERM"),
    pytest.param(signal.SIGHUP, id="SIGHUP"),
]


def descendants(pid: int) -> set[int]:
    """Every process `pid` started, and theirs, still running."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    children = {int(child) for child in f.read().split()}
            except OSError:
                continue
            todo.extend(children - found)
            found |= children
    return found


def alive(pid: int) -> bool:
    """`pid` runs (a zombie nobody reaped yet does not)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def survivors(pids: set[int], within: float) -> set[int]:
    """The pids still alive after waiting up to `within` seconds for them to end."""
    deadline = time.monotonic() + within
    while (left := {pid for pid in pids if alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def kill_all(pids: set[int]) -> None:
    """Leave no stray behind, whatever the test found."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for_children(pid: int, count: int, within: float) -> set[int]:
    deadline = time.monotonic() + within
    while len(children := descendants(pid)) < count:
        assert time.monotonic() < deadline, f"{pid} started {children}, not {count} processes"
        time.sleep(0.05)
    return children


@pytest.mark.parametrize("signum", STOP_SIGNALS)
def test_serve_with_workers_stops_them_and_exits_0(tmp_path: Path, signum: int) -> None:
    """The supervisor of `--workers 2` stops its workers on SIGTERM or SIGHUP, then exits 0."""
    port = free_port()
    with wsgate_serve(
        str(EXAMPLES / "echo.py"), "--workers", "2", "--store", "memory://", cwd=tmp_path, port=port
    ) as proc:
        workers = wait_for_children(proc.pid, 2, TIMEOUT)
        try:
            proc.send_signal(signum)
            assert proc.wait(2 * TIMEOUT) == 0
            assert survivors(workers, TIMEOUT) == set()
        finally:
            kill_all(workers)


DISCONNECT_RECORDER = """
from pathlib import Path

from wsgate import App

app = App()


@app.on_disconnect
def disconnect(event, context):
    code = event["requestContext"]["disconnectStatusCode"]
    with Path("disconnects.txt").open("a") as f:
        f.write(f"{code}\\n")
"""


@pytest.mark.parametrize("signum", STOP_SIGNALS)
def test_serve_closes_every_client_with_1001_and_runs_disconnect(
    tmp_path: Path, signum: int
) -> None:
    """A plain `wsgate serve` stopped by SIGTERM or SIGHUP (the terminal closed) still closes
    each client with 1001 and runs its `$disconnect`, then exits 0."""
    (tmp_path / "recorder.py").write_text(DISCONNECT_RECORDER)
    port = free_port()
    with (
        wsgate_serve("recorder.py", "--store", "memory://", cwd=tmp_path, port=port) as proc,
        ws_connect(f"ws://127.0.0.1:{port}/dev") as first,
        ws_connect(f"ws://127.0.0.1:{port}/dev") as second,
    ):
        proc.send_signal(signum)
        assert proc.wait(2 * TIMEOUT) == 0
        for client in (first, second):
            with pytest.raises(ConnectionClosed) as closed:
                recv(client)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert (tmp_path / "disconnects.txt").read_text().split() == ["1001", "1001"]


FUNCTIONS_YML = """
service: signals
provider:
  name: aws
  runtime: python3.12
functions:
  connect:
    handler: handler.connect
    events:
      - websocket: $connect
  echo:
    handler: handler.echo
    events:
      - websocket: {route: $default, routeResponseSelectionExpression: $default}
"""

FUNCTIONS_PY = """
def connect(event, context):
    return {"statusCode": 200}


def echo(event, context):
    return {"statusCode": 200, "body": event["body"]}
"""


@pytest.mark.parametrize("signum", STOP_SIGNALS)
def test_serve_of_lambda_functions_leaves_no_function_process(tmp_path: Path, signum: int) -> None:
    """The function processes of a serverless.yml app end with the gateway."""
    (tmp_path / "serverless.yml").write_text(textwrap.dedent(FUNCTIONS_YML))
    (tmp_path / "handler.py").write_text(textwrap.dedent(FUNCTIONS_PY))
    port = free_port()
    with wsgate_serve("serverless.yml", cwd=tmp_path, port=port) as proc:
        with ws_connect(f"ws://127.0.0.1:{port}/dev") as ws:
            ws.send("warm")
            assert recv(ws) == "warm"
            functions = wait_for_children(proc.pid, 2, TIMEOUT)  # connect and echo
            try:
                proc.send_signal(signum)
                proc.wait(2 * TIMEOUT)
                assert survivors(functions, TIMEOUT) == set()
            finally:
                kill_all(functions)


@pytest.mark.parametrize("signum", STOP_SIGNALS)
def test_bench_stops_its_servers(tmp_path: Path, signum: int) -> None:
    """`wsgate bench` signalled while its servers run stops them (they run in sessions of
    their own, out of reach of signals sent to the bench's process group)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wsgate.bench",
            "--scale",
            "0.02",
            "--repeat",
            "20",
            "--servers",
            "wsgate,websockets",
            "--scenarios",
            "echo",
            "--json",
            str(tmp_path / "bench.json"),
        ],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    servers: set[int] = set()
    try:
        servers = wait_for_children(proc.pid, 2, 6 * TIMEOUT)
        time.sleep(0.5)  # into the runs
        servers |= descendants(proc.pid)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=6 * TIMEOUT)
        assert survivors(servers, TIMEOUT) == set()
        assert proc.returncode == 128 + signum, stderr.decode(errors="replace")
        assert b"Traceback" not in stderr, stderr.decode(errors="replace")
        assert not (tmp_path / "bench.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_all(servers)
