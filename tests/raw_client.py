"""A WebSocket client that sends exactly the bytes a test builds (RFC 6455, by hand).

Real clients (python-websockets, browsers) never send an oversized frame, set RSV bits,
send data after their close frame or stop reading their pongs; a hostile client does all
of these. `RawClient` does the opening handshake on a plain socket, then writes frames
built by `frame_bytes` and reads the server's frames back, so a test can be that client.
Loopback only, and every read has a timeout.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from tests.conftest import TIMEOUT

#: RFC 6455 opcodes.
CONTINUATION = 0x0
TEXT = 0x1
BINARY = 0x2
CLOSE = 0x8
PING = 0x9
PONG = 0xA

_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame_bytes(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
) -> bytes:
    """One client frame: header, masking key and masked payload (RFC 6455 section 5.2).

    `rsv` is the three RSV bits as a number (0-7). `mask` is the masking key (random if
    None); a key of four zero bytes leaves the payload as it is, which spares masking a
    frame of megabytes.
    """
    key = os.urandom(4) if mask is None else mask
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", first, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, length)
    if key == b"\0\0\0\0":
        return head + key + payload
    repeated = (key * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        length, "big"
    )
    return head + key + masked


def close_payload(code: int, reason: str = "") -> bytes:
    """A close frame's payload: the code, then the UTF-8 reason."""
    return struct.pack("!H", code) + reason.encode()


@dataclass(frozen=True, slots=True)
class Frame:
    """A frame the server sent (servers do not mask)."""

    opcode: int
    payload: bytes
    fin: bool
    #: Set on a compressed message's frame (permessage-deflate, RFC 7692).
    rsv1: bool = False

    @property
    def close_code(self) -> int | None:
        """A close frame's code; None if it carries none (or is not a close frame)."""
        if self.opcode != CLOSE or len(self.payload) < 2:
            return None
        code: int = struct.unpack("!H", self.payload[:2])[0]
        return code


class RawClient:
    """One WebSocket connection on a plain socket: handshake, then frames by hand."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""
        #: The server's `Sec-WebSocket-Extensions` answer, if any.
        self.extensions: str | None = None

    @classmethod
    def connect(cls, url: str, timeout: float = TIMEOUT, *, extensions: str | None = None) -> Self:
        """Open a loopback connection to `url` (ws://host:port/path) and upgrade it,
        offering `extensions` (a `Sec-WebSocket-Extensions` value) if given."""
        parts = urlsplit(url)
        assert parts.hostname in ("127.0.0.1", "localhost"), "loopback only"
        sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)
        client = cls(sock)
        try:
            client._handshake(f"{parts.hostname}:{parts.port}", parts.path or "/", extensions)
        except BaseException:
            sock.close()
            raise
        return client

    def _handshake(self, host: str, path: str, extensions: str | None) -> None:
        key = base64.b64encode(os.urandom(16))
        offer = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions is not None else ""
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{offer}\r\n".encode()
        )
        while b"\r\n\r\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed during the handshake: {self._buffer!r}")
            self._buffer += chunk
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        accept = base64.b64encode(hashlib.sha1(key + _ACCEPT_GUID).digest())
        assert b"sec-websocket-accept: " + accept.lower() in head.lower(), head
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-extensions":
                self.extensions = value.strip()

    # -- writing -------------------------------------------------------------------------

    def send(self, opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> None:
        """Send one frame, masked with a random key (see `frame_bytes`)."""
        self.sock.sendall(frame_bytes(opcode, payload, fin=fin, rsv=rsv))

    def send_text(self, text: str) -> None:
        self.send(TEXT, text.encode())

    def send_raw(self, data: bytes | memoryview) -> None:
        self.sock.sendall(data)

    # -- reading -------------------------------------------------------------------------

    def recv(self, timeout: float = TIMEOUT) -> Frame | None:
        """The server's next frame; None once the server closed the socket."""
        self.sock.settimeout(timeout)
        head = self._read(2)
        if head is None:
            return None
        length = head[1] & 0x7F
        if length == 126:
            more = self._read(2)
            length = struct.unpack("!H", more)[0] if more else 0
        elif length == 127:
            more = self._read(8)
            length = struct.unpack("!Q", more)[0] if more else 0
        payload = self._read(length) if length else b""
        if payload is None:
            return None
        return Frame(head[0] & 0x0F, payload, bool(head[0] & 0x80), bool(head[0] & 0x40))

    def recv_close_code(self, timeout: float = TIMEOUT) -> int | None:
        """Read until the server's close frame and return its code (None: no close frame
        came before the socket closed, or one without a code)."""
        while (frame := self.recv(timeout)) is not None:
            if frame.opcode == CLOSE:
                return frame.close_code
        return None

    def closed_by_server(self, timeout: float = TIMEOUT) -> bool:
        """Whether the server closed the socket within `timeout` (frames read are dropped)."""
        try:
            while self.recv(timeout) is not None:
                pass
        except TimeoutError:
            return False
        return True

    def _read(self, size: int) -> bytes | None:
        while len(self._buffer) < size:
            try:
                chunk = self.sock.recv(max(65536, size - len(self._buffer)))
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    # -- the socket ----------------------------------------------------------------------

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
