"""Fuzz corpora: malformed request heads and frame sequences against one running gateway.

A hostile client, or a broken proxy on a bad day, sends anything. For every input of two
corpora (request heads: `tests/fuzz/handshakes.txt` plus variations generated here;
frame sequences: `FRAME_CASES`), the gateway must answer the way API Gateway and RFC 6455
say (an HTTP 4xx, a close frame with the protocol's code, or just a closed socket), never
a 5xx or a 1011 for the client's garbage, never log an error of its own; and after the
whole corpus a well-behaved client still connects and echoes, every accepted connection
had its `$disconnect`, and neither `gateway.live` nor the store holds anything.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import logging
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TIMEOUT, recv, run_gateway, ws_connect
from tests.raw_client import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    RawClient,
    close_payload,
    frame_bytes,
)
from wsgate import App, connections
from wsgate.server import front
from wsgate.server.runner import Server

HANDSHAKES = Path(__file__).resolve().parent.parent / "fuzz" / "handshakes.txt"

#: Close codes the gateway may answer client garbage with (RFC 6455 section 7.4.1):
#: normal (an echoed close), protocol error, unsupported data, invalid payload, too big.
#: Never 1011: that would be the gateway failing on what a client sent.
CLIENT_FAULT_CODES = frozenset({1000, 1002, 1003, 1007, 1009})


class Recorder:
    """What the app's handlers saw, across threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connects = 0
        self.disconnect_codes: list[int] = []

    def app(self) -> App:
        app = App(name="fuzz")

        @app.on_connect
        async def connect(event: dict[str, Any], context: object) -> None:
            with self.lock:
                self.connects += 1

        @app.default
        async def echo(event: dict[str, Any], context: object) -> None:
            await connections.send(event["requestContext"]["connectionId"], event["body"])

        @app.on_disconnect
        async def disconnect(event: dict[str, Any], context: object) -> None:
            with self.lock:
                self.disconnect_codes.append(event["requestContext"]["disconnectStatusCode"])

        return app


@dataclass
class Target:
    server: Server
    recorder: Recorder


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """One gateway for every input of the module: garbage must not wear it down."""
    recorder = Recorder()
    with run_gateway(recorder.app()) as server:
        yield Target(server, recorder)


@pytest.fixture
def gateway_errors(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """Errors the gateway logged during the test: a failure of its own. (aiohttp and
    picows, under `wsgate.websocket`, log a client's malformed request or frame at ERROR
    too; those are the client's, and not counted.)"""
    caplog.set_level(logging.WARNING)
    errors: list[logging.LogRecord] = []
    yield errors
    errors.extend(
        record
        for record in caplog.records
        if record.levelno >= logging.ERROR
        and record.name.startswith("wsgate")
        and record.name != "wsgate.websocket"
    )


def assert_gateway_intact(target: Target, tried: int) -> None:
    """After a corpus: a good client still echoes, every accepted connection had its
    `$disconnect`, and nothing is left in `gateway.live` or the store."""
    with ws_connect(target.server.url) as ws:
        ws.send("still here")
        assert recv(ws) == "still here", f"no echo after {tried} inputs"
    gateway = target.server.gateway
    recorder = target.recorder
    deadline = time.monotonic() + 2 * TIMEOUT
    while time.monotonic() < deadline:
        with recorder.lock:
            settled = recorder.connects == len(recorder.disconnect_codes)
        if settled and not gateway.live and not gateway.connection_tasks:
            break
        time.sleep(0.05)
    with recorder.lock:
        connects, disconnects = recorder.connects, list(recorder.disconnect_codes)
    assert connects == len(disconnects), (
        f"{connects} connections accepted, {len(disconnects)} $disconnect after {tried} inputs"
    )
    assert not gateway.live, f"{len(gateway.live)} connections left live after {tried} inputs"
    assert 1011 not in disconnects, f"the gateway failed a connection: {disconnects}"
    stored = asyncio.run_coroutine_threadsafe(gateway.store.connection_ids(), gateway.loop).result(
        TIMEOUT
    )
    assert stored == [], f"the store kept {stored} after {tried} inputs"


# -- request heads -------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadCase:
    name: str
    request: bytes
    expect: frozenset[str]  # statuses ("400"), classes ("4xx"), or "closed"


_KEY = base64.b64encode(b"0123456789abcdef").decode()
_WS = (
    f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {_KEY}\r\n"
    "Sec-WebSocket-Version: 13\r\n"
)
_BIG = "a" * (17 * 1024)
_VALID = [
    ("Host", "$HOST"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", _KEY),
    ("Sec-WebSocket-Version", "13"),
]


def _head(
    headers: list[tuple[str, str]],
    method: str = "GET",
    path: str = "/dev",
    version: str = "HTTP/1.1",
) -> str:
    lines = [f"{method} {path} {version}", *(f"{name}: {value}" for name, value in headers)]
    return "\r\n".join(lines) + "\r\n\r\n"


def corpus_cases() -> list[HeadCase]:
    """The lines of tests/fuzz/handshakes.txt (see its header for the format)."""
    cases = []
    for number, line in enumerate(HANDSHAKES.read_text("ascii").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        expect, request = line.split(None, 1)
        cases.append(HeadCase(f"handshakes.txt:{number}", _unescape(request), _expect(expect)))
    return cases


def _unescape(text: str) -> bytes:
    text = text.replace("$WS", _WS).replace("$KEY", _KEY).replace("$BIG", _BIG)
    data: bytes = codecs.escape_decode(text.encode("latin-1"))[0]
    return data


def _expect(text: str) -> frozenset[str]:
    return frozenset(text.split("|"))


def generated_cases() -> list[HeadCase]:
    """Variations of the valid upgrade: every header dropped, doubled, oversized or
    garbled; other methods, versions and paths."""
    cases = []

    def add(name: str, head: str, expect: str) -> None:
        cases.append(HeadCase(name, head.encode("latin-1"), _expect(expect)))

    once = {"Host", "Sec-WebSocket-Key", "Sec-WebSocket-Version"}  # RFC 9112 and 6455
    dropped = {
        "Host": "400",  # RFC 9112: an HTTP/1.1 request without Host is a 400
        "Upgrade": "426",  # a plain GET of the socket path
        "Connection": "400",
        "Sec-WebSocket-Key": "400",
        "Sec-WebSocket-Version": "426",
    }
    for index, (name, _) in enumerate(_VALID):
        rest = _VALID[:index] + _VALID[index + 1 :]
        add(f"without {name}", _head(rest), dropped[name])
        twice = "400" if name in once else "101|4xx"  # Upgrade, Connection: lists
        add(f"{name} twice", _head([*_VALID, (name, "x")]), twice)
        add(f"{name} oversized", _head([*_VALID, (name, _BIG)]), "431|closed")
        for label, garbage in [
            ("empty", ""),
            ("NUL", "\x00"),
            ("DEL", "\x7f"),
            ("latin-1", "\xe9\xff"),
            ("4 KB token", "t" * 4096),
            ("commas", ",,,,"),
        ]:
            garbled = [(n, garbage if n == name else v) for n, v in _VALID]
            host = "400" if label in ("empty", "NUL") else "400|101"
            add(f"{name} {label}", _head(garbled), "4xx" if name != "Host" else host)
    for method in ["POST", "PUT", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PATCH"]:
        add(f"method {method}", _head(_VALID, method=method), "4xx|closed")
    for method in ["get", "GeT", "G\x00T", "GET\x7f", "\xffGET", "X" * 2000]:
        add(f"method {method[:10]!r}", _head(_VALID, method=method), "4xx|closed")
    for version, expect in [
        ("HTTP/1.0", "400"),
        ("HTTP/0.9", "400"),
        ("HTTP/2.0", "400"),
        ("HTTP/3", "400"),
        ("http/1.1", "400"),
        ("HTTP/1.2", "400"),
        ("HTTP/1.1x", "400"),
        ("HTTP/1.", "400"),
        ("HTTP/", "400"),
    ]:
        add(f"version {version}", _head(_VALID, version=version), expect)
    for path, expect in [
        ("/", "101"),
        ("/dev/", "101"),
        ("//dev", "4xx"),
        ("/DEV", "4xx"),
        ("/dev/../dev", "4xx"),
        ("/dev/./", "4xx"),
        ("/dev#fragment", "4xx"),
        ("/dev;params", "4xx"),
        ("*", "4xx"),
        ("http://evil.example/dev", "4xx"),
        ("dev", "4xx"),
        ("/%2e%2e/%2e%2e/etc/passwd", "4xx"),
        ("/\xff\xfe", "4xx"),
        ("/" + "a/" * 3000, "4xx"),
        ("/@connections", "200|4xx"),
        ("/dev/@connections/%", "4xx"),
    ]:
        add(f"path {path[:24]!r}", _head(_VALID, path=path), expect)
    return cases


HEAD_CASES = corpus_cases() + generated_cases()


@dataclass(frozen=True)
class HeadOutcome:
    status: int | None  # None: closed without an answer
    close_code: int | None = None  # after a 101: the gateway's answer to our close frame


def exchange_head(port: int, request: bytes) -> HeadOutcome:
    """Send one request head (half-closing if it never ends) and read the answer; after a
    101, close the WebSocket as a client should and return the code the gateway echoed."""
    request = request.replace(b"$HOST", f"127.0.0.1:{port}".encode())
    half_close = b"\r\n\r\n" not in request or request.endswith(b"$EOF")
    request = request.removesuffix(b"$EOF")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        try:
            sock.sendall(request)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the gateway stopped reading an oversized head: its answer may be in
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            data += chunk
        if not data:
            return HeadOutcome(None)
        status = int(data.split(b" ", 2)[1])
        if status != 101:
            return HeadOutcome(status)
        client = RawClient(sock)
        client._buffer = data.partition(b"\r\n\r\n")[2]
        try:
            client.send(CLOSE, close_payload(1000))
        except OSError:
            pass  # already closed for what came after the head
        return HeadOutcome(101, client.recv_close_code())


def _matches(outcome: HeadOutcome, expect: frozenset[str]) -> bool:
    if outcome.status is None:
        return "closed" in expect
    return str(outcome.status) in expect or f"{outcome.status // 100}xx" in expect


def test_malformed_request_heads(target: Target, gateway_errors: list[logging.LogRecord]) -> None:
    """Every request head of the corpus gets its 4xx (or a closed socket), none a 5xx;
    those accepted close cleanly; the gateway serves on with nothing left behind."""
    port = target.server.port
    wrong = []
    for case in HEAD_CASES:
        try:
            outcome = exchange_head(port, case.request)
        except TimeoutError:
            wrong.append(f"{case.name}: no answer within {TIMEOUT} s")
            continue
        if outcome.status is not None and outcome.status >= 500:
            wrong.append(f"{case.name}: {outcome.status} (a 5xx for client garbage)")
        elif not _matches(outcome, case.expect):
            wrong.append(f"{case.name}: {outcome} where {'|'.join(sorted(case.expect))}")
        elif outcome.status == 101 and outcome.close_code not in CLIENT_FAULT_CODES | {None}:
            wrong.append(f"{case.name}: closed with {outcome.close_code}")
    tried = len(HEAD_CASES)
    assert not wrong, f"{len(wrong)} of {tried} request heads:\n" + "\n".join(wrong)
    assert tried >= 150, f"only {tried} request heads"
    assert_gateway_intact(target, tried)
    assert not gateway_errors, [r.getMessage() for r in gateway_errors]


# -- frame sequences -----------------------------------------------------------------------


@dataclass(frozen=True)
class FrameCase:
    """Bytes sent after a good handshake, and the close codes the gateway may answer.

    `then_eof`: the client half-closes right after (the bytes leave a frame unfinished,
    so nothing after them could be read as a frame); the gateway may answer with one of
    `codes` or simply close. Otherwise a ping follows: a pong means the gateway kept the
    connection (allowed only if `open_ok`), a close frame must carry one of `codes`.
    """

    name: str
    data: bytes
    codes: frozenset[int]
    then_eof: bool = False
    open_ok: bool = False


def raw_frame(
    first: int, payload: bytes = b"", *, masked: bool = True, length: bytes | None = None
) -> bytes:
    """A frame built without checks: `first` is the whole first byte; `length` replaces
    the length field (7-bit value and extension) to make it lie."""
    if length is None:
        size = len(payload)
        if size < 126:
            length = bytes([size])
        elif size < 1 << 16:
            length = bytes([126]) + struct.pack("!H", size)
        else:
            length = bytes([127]) + struct.pack("!Q", size)
    if not masked:
        return bytes([first]) + length + payload
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([first, length[0] | 0x80]) + length[1:] + key + body


FIN = 0x80


def frame_cases() -> list[FrameCase]:
    cases: list[FrameCase] = []

    def add(
        name: str, data: bytes, *codes: int, then_eof: bool = False, open_ok: bool = False
    ) -> None:
        cases.append(FrameCase(name, data, frozenset(codes), then_eof, open_ok))

    f = frame_bytes
    start = f(TEXT, b"he", fin=False)
    # Opcodes RFC 6455 reserves.
    for opcode in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]:
        add(f"reserved opcode {opcode:#x}", f(opcode, b"x"), 1002)
    for opcode in [3, 7, 0xB]:
        add(f"reserved opcode {opcode:#x} unfinished", f(opcode, b"x", fin=False), 1002)
    add("reserved opcode inside a message", start + f(0x5, b"x"), 1002)
    # RSV bits, no extension being negotiated.
    for rsv in range(1, 8):
        add(f"text with rsv={rsv}", f(TEXT, b"hello", rsv=rsv), 1002)
    for rsv in [1, 2, 4]:
        add(f"ping with rsv={rsv}", f(PING, b"p", rsv=rsv), 1002)
        add(f"continuation with rsv={rsv}", start + f(CONTINUATION, b"llo", rsv=rsv), 1002)
    add("binary with rsv=4", f(BINARY, b"\x00", rsv=4), 1002)
    add("close with rsv=1", f(CLOSE, close_payload(1000), rsv=1), 1002)
    # Client frames must be masked.
    for name, first, payload in [
        ("text", FIN | TEXT, b"hello"),
        ("binary", FIN | BINARY, b"\x01"),
        ("ping", FIN | PING, b"p"),
        ("close", FIN | CLOSE, close_payload(1000)),
        ("first fragment", TEXT, b"he"),
        ("empty text", FIN | TEXT, b""),
    ]:
        add(f"unmasked {name}", raw_frame(first, payload, masked=False), 1002)
    # Control frames: at most 125 bytes, never fragmented.
    for opcode, size in [(PING, 126), (PING, 1000), (PONG, 126), (PONG, 40000), (PING, 70000)]:
        add(f"opcode {opcode:#x} of {size} bytes", f(opcode, b"c" * size), 1002, 1009)
    add("close of 126 bytes", f(CLOSE, close_payload(1000, "r" * 124)), 1002, 1009)
    for opcode in [PING, PONG, CLOSE]:
        payload = close_payload(1000) if opcode == CLOSE else b"c"
        add(f"fragmented control {opcode:#x}", f(opcode, payload, fin=False), 1002)
    add("fragmented ping inside a message", start + f(PING, b"c", fin=False), 1002)
    # Length fields that lie.
    add(
        "text length in 16 bits for 5 bytes",
        raw_frame(FIN | TEXT, b"hello", length=bytes([126, 0, 5])),
        1002,
        open_ok=True,
    )
    add(
        "text length in 64 bits for 5 bytes",
        raw_frame(FIN | TEXT, b"hello", length=bytes([127]) + struct.pack("!Q", 5)),
        1002,
        open_ok=True,
    )
    add(
        "64-bit length with its top bit set",
        raw_frame(FIN | TEXT, b"", length=bytes([127]) + struct.pack("!Q", 1 << 63)),
        1002,
        1009,
        then_eof=True,
    )
    add(
        "64-bit length of 2**64-1",
        raw_frame(FIN | TEXT, b"", length=bytes([127]) + b"\xff" * 8),
        1002,
        1009,
        then_eof=True,
    )
    add(
        "64-bit length of a terabyte",
        raw_frame(FIN | BINARY, b"", length=bytes([127]) + struct.pack("!Q", 1 << 40)),
        1009,
        then_eof=True,
    )
    add("a 40 KB frame", f(TEXT, b"x" * 40000), 1009)
    for claimed, sent in [(100, 10), (1000, 10), (32000, 100), (5, 0)]:
        length = bytes([claimed]) if claimed < 126 else bytes([126]) + struct.pack("!H", claimed)
        frame = raw_frame(FIN | TEXT, b"y" * claimed, length=length)
        header = len(length) + 1 + 4
        add(f"claims {claimed} bytes, sends {sent}", frame[: header + sent], 1002, then_eof=True)
    add("one header byte", bytes([FIN | TEXT]), 1002, then_eof=True)
    add("half a 64-bit length", bytes([FIN | TEXT, 0x80 | 127, 0, 0, 0]), 1002, then_eof=True)
    add("half a masking key", bytes([FIN | TEXT, 0x85, 1, 2]), 1002, then_eof=True)
    add("an empty text message", f(TEXT, b""), open_ok=True)
    # Continuation misuse.
    add("continuation first", f(CONTINUATION, b"x"), 1002)
    add("unfinished continuation first", f(CONTINUATION, b"x", fin=False), 1002)
    add("text inside a text message", start + f(TEXT, b"x"), 1002)
    add("binary inside a text message", start + f(BINARY, b"x"), 1002)
    add("text inside a binary message", f(BINARY, b"\x00", fin=False) + f(TEXT, b"x"), 1002)
    add("continuation after a whole message", f(TEXT, b"a") + f(CONTINUATION, b"b"), 1002)
    add(
        "two messages interleaved",
        start + f(CONTINUATION, b"l", fin=False) + f(TEXT, b"x", fin=False),
        1002,
    )
    add(
        "1100 empty continuations",
        start + b"".join(f(CONTINUATION, b"", fin=False) for _ in range(1100)),
        1009,
    )
    add(
        "129 KB in 1 KB fragments",
        f(TEXT, b"z" * 1024, fin=False)
        + b"".join(f(CONTINUATION, b"z" * 1024, fin=False) for _ in range(128))
        + f(CONTINUATION, b"z" * 1024),
        1009,
    )
    add("a close inside a message", start + f(CLOSE, close_payload(1000)), 1000)
    add("a ping inside a message", start + f(PING, b"c") + f(CONTINUATION, b"llo"), open_ok=True)
    add("a message left unfinished", start, 1002, then_eof=True)
    # Close frames: codes a client may not send, reasons that are not UTF-8.
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]:
        add(f"close code {code}", f(CLOSE, close_payload(code)), 1002)
    add("close with a 1-byte payload", f(CLOSE, b"\x03"), 1002)
    for label, reason in [
        ("\\xff", b"\xff"),
        ("overlong /", b"\xc0\xaf"),
        ("a UTF-16 surrogate", b"\xed\xa0\x80"),
        ("a cut sequence", b"bye \xe2\x82"),
        ("code point over U+10FFFF", b"\xf4\x90\x80\x80"),
    ]:
        add(f"close reason with {label}", f(CLOSE, struct.pack("!H", 1000) + reason), 1007, 1002)
    add("close reason of 123 bytes", f(CLOSE, close_payload(1000, "r" * 123)), 1000)
    add("text after the close", f(CLOSE, close_payload(1000)) + f(TEXT, b"late"), 1000)
    add(
        "two close frames",
        f(CLOSE, close_payload(1000)) + f(CLOSE, close_payload(1001)),
        1000,
        1002,
    )
    # Text that is not UTF-8; binary without `binary=`.
    for label, payload in [
        ("\\xff", b"\xff"),
        ("overlong /", b"\xc0\xaf"),
        ("a UTF-16 surrogate", b"\xed\xa0\x80"),
        ("a cut sequence", b"\xe2\x82"),
        ("code point over U+10FFFF", b"\xf4\x90\x80\x80"),
    ]:
        add(f"text with {label}", f(TEXT, payload), 1007)
    add(
        "a fragmented text with a bad byte",
        f(TEXT, b"ok", fin=False) + f(CONTINUATION, b"\xff"),
        1007,
    )
    add(
        "a fragmented text cut inside a character",
        f(TEXT, b"\xe2\x82", fin=False) + f(CONTINUATION, b"!"),
        1007,
    )
    add("binary", f(BINARY, b"\x00\x01"), 1003)
    add("fragmented binary", f(BINARY, b"\x00", fin=False) + f(CONTINUATION, b"\x01"), 1003)
    # Not WebSocket at all.
    add("an HTTP request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1002, 1009, then_eof=True)
    rng = random.Random(6455)
    for size in [1, 7, 64, 500, 4096]:
        garbage = bytes(rng.randrange(256) for _ in range(size))
        add(f"{size} random bytes", garbage, 1002, 1003, 1007, 1009, then_eof=True)
    return cases


FRAME_CASES = frame_cases()


@dataclass(frozen=True)
class FrameOutcome:
    close_code: int | None  # None: no close frame (or one without a code)
    stayed_open: bool = False


def exchange_frames(url: str, case: FrameCase) -> FrameOutcome:
    """Connect, send the case's bytes, then a ping or a half-close, and read the answer."""
    with RawClient.connect(url) as client:
        try:
            client.send_raw(case.data)
            if case.then_eof:
                client.sock.shutdown(socket.SHUT_WR)
            else:
                client.send(PING, b"still open?")
        except OSError:
            pass  # the gateway closed before reading it all
        while (frame := client.recv()) is not None:
            if frame.opcode == CLOSE:
                return FrameOutcome(frame.close_code)
            if frame.opcode == PONG and frame.payload == b"still open?":
                client.send(CLOSE, close_payload(1000))
                return FrameOutcome(client.recv_close_code(), stayed_open=True)
        return FrameOutcome(None)


def test_malformed_frame_sequences(target: Target, gateway_errors: list[logging.LogRecord]) -> None:
    """Every frame sequence of the corpus is answered with its RFC 6455 close code (or a
    closed socket), never 1011; the gateway serves on with nothing left behind."""
    wrong = []
    for case in FRAME_CASES:
        try:
            outcome = exchange_frames(target.server.url, case)
        except TimeoutError:
            wrong.append(f"{case.name}: no answer within {TIMEOUT} s")
            continue
        if outcome.stayed_open:
            if not case.open_ok:
                wrong.append(f"{case.name}: the connection stayed open")
        elif outcome.close_code is None:
            if not case.then_eof:
                wrong.append(f"{case.name}: closed without a close frame")
        elif outcome.close_code not in case.codes:
            wrong.append(
                f"{case.name}: closed with {outcome.close_code} where {sorted(case.codes)}"
            )
    tried = len(FRAME_CASES)
    assert not wrong, f"{len(wrong)} of {tried} frame sequences:\n" + "\n".join(wrong)
    assert tried >= 100, f"only {tried} frame sequences"
    assert_gateway_intact(target, tried)
    assert not gateway_errors, [r.getMessage() for r in gateway_errors]


def test_a_management_body_that_never_comes_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller that promises 100 bytes and sends 2 gets a 408 within HEAD_TIMEOUT, and
    the connection is closed like a slow head's."""
    monkeypatch.setattr(front, "HEAD_TIMEOUT", 0.5)
    with run_gateway(Recorder().app()) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(
                f"POST /dev/@connections/x HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                "Content-Length: 100\r\n\r\nab".encode()
            )
            sock.settimeout(4 * front.HEAD_TIMEOUT)
            answer = b""
            try:
                while chunk := sock.recv(65536):
                    answer += chunk
            except TimeoutError:
                pytest.fail(f"still open 4 HEAD_TIMEOUTs after the head, having sent {answer!r}")
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert answer.endswith(
                b'{"message": "Request Timeout: the body did not come within 0.5 s"}'
            )
