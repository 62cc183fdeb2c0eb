"""`wsgate connect` as a developer uses it: against real gateways, in a pipe and on a terminal."""

from __future__ import annotations

import base64
import hashlib
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import TIMEOUT, free_port, run_gateway
from tests.e2e.test_cli import RUN_TIMEOUT, WSGATE, assert_clean_error, run_wsgate
from wsgate import App, connections
from wsgate.cli.client_input import Close, Mistake, Ping, Send, parse_line
from wsgate.cli.client_output import decorate, describe_close, pretty_json
from wsgate.cli.connect import refusal_message, with_scheme

pytestmark = pytest.mark.slow


class Recorder:
    """The events `$connect` and `$disconnect` saw, across threads."""

    def __init__(self) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any] | None:
        self.events.put(dict(event))
        query = event.get("queryStringParameters") or {}
        return {"statusCode": int(query["status"])} if "status" in query else None

    def next(self, route_key: str) -> dict[str, Any]:
        while True:
            event = self.events.get(timeout=TIMEOUT)
            if event["requestContext"]["routeKey"] == route_key:
                return event


def echo_app() -> tuple[App, Recorder]:
    """Echoes every message; `{"action": "bye"}` makes the server close with 1000; a
    `?status=N` query makes `$connect` answer N."""
    app = App(name="echo")
    recorder = Recorder()
    app.on_connect(recorder)
    app.on_disconnect(recorder)

    @app.route("bye")
    async def bye(event: Any, context: Any) -> None:
        await connections.disconnect(event.connection_id)

    @app.default
    async def echo(event: Any, context: Any) -> None:
        await connections.send(event.connection_id, event["body"])

    return app, recorder


@contextmanager
def echo_gateway() -> Iterator[tuple[str, Recorder]]:
    """The echo app on an ephemeral port: its URL (no scheme) and its recorder."""
    app, recorder = echo_app()
    with run_gateway(app) as server:
        yield f"127.0.0.1:{server.port}", recorder


def start_connect(*args: str) -> subprocess.Popen[str]:
    """`wsgate connect ARGS` with stdin a pipe the test keeps open."""
    return subprocess.Popen(
        [*WSGATE, "connect", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], within: float = TIMEOUT) -> tuple[str, str]:
    """Wait (stdin still open) for the client to exit by itself; return stdout and stderr."""
    try:
        proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"wsgate connect did not exit within {within} s:\n{out}\n{err}")
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return out, err


@contextmanager
def raw_server(answer: Callable[[socket.socket, bytes], None]) -> Iterator[int]:
    """A one-connection TCP server: `answer(conn, request_bytes)`; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            answer(conn, conn.recv(65536))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        listener.close()
        thread.join(TIMEOUT)


def accept_then_drop(conn: socket.socket, request: bytes) -> None:
    """Answer the upgrade with a 101, then close the TCP socket without a close frame."""
    key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", request)
    assert key is not None
    accept = base64.b64encode(
        hashlib.sha1(key.group(1) + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    )
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    conn.recv(100)  # the client's first message: then the socket goes away


# -- the session ends with the connection ------------------------------------------------


def test_exits_0_when_the_server_closes_normally_while_stdin_stays_open() -> None:
    """A server close (1000) ends the client at once, stdin still open: code printed, exit 0."""
    with echo_gateway() as (url, _):
        proc = start_connect(url)
        assert proc.stdin is not None
        proc.stdin.write('{"action": "bye"}\n')
        proc.stdin.flush()
        out, err = finish(proc)
    assert proc.returncode == 0, err
    assert out == ""
    assert 'disconnected: 1000 (normal closure) "Connection Closed Normally"' in err


def test_exits_1_when_the_server_drops_the_socket() -> None:
    """A connection that drops without a close frame is 1006: the client exits 1 at once."""
    with raw_server(accept_then_drop) as port:
        proc = start_connect(f"127.0.0.1:{port}", "-x", "hello", "-w", "30")
        out, err = finish(proc)
    assert proc.returncode == 1, err
    assert "disconnected: 1006 (abnormal closure: no close frame)" in err
    assert "Traceback" not in err


def test_execute_ends_early_when_the_server_closes() -> None:
    """With -x, a server close ends the client before --wait has passed."""
    with echo_gateway() as (url, _):
        started = time.monotonic()
        result = run_wsgate("connect", url, "-x", "one", "-x", '{"action":"bye"}', "-w", "30")
    assert time.monotonic() - started < 15
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["one"]
    assert "disconnected: 1000" in result.stderr


# -- the URL and errors ------------------------------------------------------------------


def test_a_url_without_a_scheme_gets_ws() -> None:
    """`wsgate connect 127.0.0.1:PORT/dev` connects as ws://, like wscat."""
    with echo_gateway() as (url, _):
        result = run_wsgate("connect", f"{url}/dev", "-x", "hi", "-w", "0.5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["hi"]
    assert f"connected to ws://{url}/dev" in result.stderr


def test_a_refused_port_says_is_wsgate_serve_running() -> None:
    """Nothing listening: one line with the URL and a hint, exit 1, no traceback."""
    url = f"ws://127.0.0.1:{free_port()}/dev"
    result = run_wsgate("connect", url, "-x", "hi", "-w", "0.2")
    assert result.returncode == 1
    assert result.stdout == ""
    assert_clean_error(
        result,
        f"cannot connect to {url}: connection refused — is `wsgate serve` running on that port?",
    )


@pytest.mark.parametrize(
    ("path", "fragments"),
    [
        ("/dev?status=403", ("(403 Forbidden)", "wrong stage in the URL?")),
        ("/prod", ("(403 Forbidden)", "wrong stage in the URL?")),
        ("/dev?status=401", ("(401 Unauthorized)", "authorizer", "-H")),
        ("/dev?status=504", ("(504 Gateway Timeout)", "$connect took too long")),
    ],
    ids=["connect-403", "wrong-stage", "connect-401", "connect-504"],
)
def test_a_refused_handshake_says_why(path: str, fragments: tuple[str, ...]) -> None:
    """A handshake answered with an HTTP error: one line with the status and a hint."""
    with echo_gateway() as (url, _):
        result = run_wsgate("connect", url + path, "-x", "hi", "-w", "0.2")
    assert result.returncode == 1
    assert_clean_error(result, "the server refused the handshake", *fragments)


def test_a_refusal_shows_the_json_message_of_its_body() -> None:
    """A refusal's `{"message": ...}` body is part of the line."""

    def not_found(conn: socket.socket, request: bytes) -> None:
        body = b'{"message": "No API here"}'
        conn.sendall(
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )

    with raw_server(not_found) as port:
        result = run_wsgate("connect", f"127.0.0.1:{port}/dev", "-x", "hi", "-w", "0.2")
    assert_clean_error(result, "refused the handshake (404 Not Found): No API here")


def test_wss_to_a_plain_server_says_so() -> None:
    """wss:// to a server without TLS: the line says so and offers the ws:// URL."""

    def plain_http(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    with raw_server(plain_http) as port:
        result = run_wsgate("connect", f"wss://127.0.0.1:{port}/dev", "-x", "hi", "-w", "0.2")
    assert_clean_error(result, "TLS handshake failed", f"try ws://127.0.0.1:{port}/dev")


# -- commands typed on stdin -------------------------------------------------------------


def test_close_command_reaches_disconnect_with_its_code_and_reason() -> None:
    """`/close 4000 bye now` closes with that code and reason, as `$disconnect` sees; exit 0."""
    with echo_gateway() as (url, recorder):
        proc = start_connect(url)
        assert proc.stdin is not None
        proc.stdin.write("/close 4000 bye now\n")
        proc.stdin.flush()
        out, err = finish(proc)
        context = recorder.next("$disconnect")["requestContext"]
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (4000, "bye now")
    assert proc.returncode == 0, err
    assert 'closed: 4000 "bye now"' in err


def test_ping_prints_the_pong_and_double_slash_sends_one_slash() -> None:
    """`/ping DATA` prints the pong; `//x` sends `/x`; an unknown command sends nothing."""
    with echo_gateway() as (url, _):
        result = subprocess.run(
            [*WSGATE, "connect", url, "-w", "1"],
            input="/ping are you there\n//x\n/nope\nplain\n",
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["/x", "plain"]
    assert "pong are you there" in result.stderr.splitlines()
    assert "unknown command /nope: type //nope" in result.stderr


def test_help_lists_the_commands() -> None:
    """`--help` says what /ping, /close and // do."""
    result = run_wsgate("connect", "--help")
    assert result.returncode == 0
    for word in ("/ping [DATA]", "/close [CODE [REASON]]", "//TEXT", "send /TEXT"):
        assert word in result.stdout


# -- output ------------------------------------------------------------------------------


def test_piped_output_is_each_message_unchanged() -> None:
    """Piped, stdout holds exactly what arrived, one per line: no time, marker or indent."""
    message = '{"a": [1, 2], "b": "x"}'
    with echo_gateway() as (url, _):
        result = run_wsgate("connect", url, "-x", message, "-x", "two", "-w", "0.5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [message, "two"]


TIME = r"\d\d:\d\d:\d\d"


@pytest.mark.skipif(
    sys.platform != "linux" or shutil.which("script") is None, reason="needs util-linux script"
)
def test_terminal_output_is_marked_timed_and_indented_and_exits_on_close() -> None:
    """On a terminal: `HH:MM:SS > ` for sent, `< ` for received, JSON indented; a server
    close ends the client while the terminal stays open."""
    with echo_gateway() as (url, recorder):
        command = " ".join([sys.executable, "-m", "wsgate", "connect", url])
        proc = subprocess.Popen(
            ["script", "-qfec", command, "/dev/null"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None
        recorder.next("$connect")
        proc.stdin.write('{"b": [1, 2]}\r')
        proc.stdin.flush()
        time.sleep(0.5)
        proc.stdin.write('{"action": "bye"}\r')
        proc.stdin.flush()
        out, err = finish(proc, within=2 * TIMEOUT)
    assert proc.returncode == 0, out + err
    screen = out.replace("\r\n", "\n")
    prefix = " " * len("00:00:00 < ")
    for marker in (">", "<"):
        indented = f'{TIME} {marker} {{\n{prefix}  "b": \\[\n{prefix}    1,\n'
        assert re.search(indented, screen), screen
    assert re.search(rf'{TIME} disconnected: 1000 \(normal closure\) "Connection', screen)


# -- the pure parts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1:8080/dev", "ws://127.0.0.1:8080/dev"),
        ("localhost:8080", "ws://localhost:8080"),
        ("wss://example.com/prod", "wss://example.com/prod"),
        ("ws://127.0.0.1:8080", "ws://127.0.0.1:8080"),
    ],
)
def test_with_scheme(given: str, expected: str) -> None:
    """A URL without a scheme gets ws://; ws:// and wss:// stay."""
    assert with_scheme(given) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("hello", Send("hello")),
        ("", Send("")),
        ("//x", Send("/x")),
        ("///", Send("//")),
        ("/ping", Ping(b"")),
        ("/ping a b", Ping(b"a b")),
        ("/close", Close(1000, "")),
        ("/close 4000", Close(4000, "")),
        ("/close 4000 bye now", Close(4000, "bye now")),
    ],
)
def test_parse_line(line: str, expected: object) -> None:
    """Typed lines: messages, `//` for a leading slash, /ping and /close with arguments."""
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    "line",
    ["/nope", "/close abc", "/close 1006", "/close 999", "/close 5000", "/ping " + "x" * 126],
)
def test_parse_line_mistakes(line: str) -> None:
    """A command that is wrong sends nothing and says why."""
    assert isinstance(parse_line(line), Mistake)


def test_decorate_times_marks_and_indents_json() -> None:
    """A message on a terminal: the time, the marker, JSON indented under the first line."""
    at = datetime(2024, 1, 2, 3, 4, 5)
    assert decorate("hello", "<", at) == "03:04:05 < hello"
    assert decorate('{"a":1}', ">", at) == '03:04:05 > {\n             "a": 1\n           }'
    assert decorate("two\nlines", "<", at) == "03:04:05 < two\n           lines"


def test_pretty_json_leaves_other_text_alone() -> None:
    """Only JSON objects and arrays are reformatted."""
    assert pretty_json("[1]") == "[\n  1\n]"
    assert pretty_json("{not json") == "{not json"
    assert pretty_json("42") == "42"


def test_describe_close() -> None:
    assert describe_close(1000, "") == "1000 (normal closure)"
    assert describe_close(1011, "boom") == '1011 (internal error) "boom"'
    assert describe_close(4000, "bye") == '4000 "bye"'


def test_refusal_message() -> None:
    """The status, the body's message when it adds something, and a hint."""
    assert refusal_message(426, "Upgrade Required", b'{"message": "use a WebSocket"}') == (
        "the server refused the handshake (426 Upgrade Required): use a WebSocket"
    )
    assert (
        refusal_message(418, "", b"not json")
        == "the server refused the handshake (418 I'm a Teapot)"
    )
    assert refusal_message(200, "OK", b"{}").startswith("the server answered 200 OK")
