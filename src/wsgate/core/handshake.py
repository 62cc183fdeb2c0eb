"""The opening HTTP request of a connection: read its head, decide who serves it.

Pure: bytes in, a `RequestHead` or a `HandshakeError` out. The network edge reads a
request head, and only a well-formed WebSocket upgrade to a socket path becomes a
WebSocket connection (after `$connect`); every other request goes to the HTTP app.
Checking the upgrade here, before `$connect` runs, means a bad handshake never invokes a
handler, as on API Gateway.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from wsgate.exceptions import ConfigError

#: Longest request head accepted (request line and headers); API Gateway's quotas
#: allow 10 KB of headers, aiohttp and picows 8-16 KB.
MAX_HEAD_BYTES = 16 * 1024

_END = b"\r\n\r\n"

#: A header name: an RFC 9110 token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

#: What a header value may never hold (RFC 9110 section 5.5): a NUL, or a CR or LF not
#: ending the line, which some other parser would read as the end of the header.
_UNSAFE_VALUE = re.compile(r"[\x00\r\n]")

#: Headers an upgrade request may carry once only (RFC 9112 section 3.2, RFC 6455 section
#: 11.3): two answers to "which host, which key, which version" are an attack or a bug.
_SINGLE = frozenset({"host", "sec-websocket-key", "sec-websocket-version"})


class HandshakeError(Exception):
    """The upgrade request is refused with `status`; `headers` go into the answer."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass(frozen=True, slots=True)
class RequestHead:
    """The request line and headers, header names as the client wrote them."""

    method: str
    path: str  # raw, still percent-encoded, without the query
    query_string: str
    headers: tuple[tuple[str, str], ...]
    version: str = "HTTP/1.1"

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def values(self, name: str) -> list[str]:
        """Every value of header `name` (case-insensitive), in order."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    def tokens(self, name: str) -> set[str]:
        """The comma-separated, lower-cased tokens of every `name` header."""
        wanted = name.lower()
        found: set[str] = set()
        for key, value in self.headers:
            if key.lower() == wanted:
                found.update(token.strip().lower() for token in value.split(","))
        return found

    @property
    def query(self) -> list[tuple[str, str]]:
        """The query parameters, decoded, in order, blank values kept."""
        return parse_qsl(self.query_string, keep_blank_values=True)

    @property
    def is_websocket_upgrade(self) -> bool:
        return self.method == "GET" and "websocket" in self.tokens("Upgrade")


def head_length(buffer: bytes | bytearray) -> int:
    """Bytes of the request head in `buffer` (blank line included), or -1 if incomplete."""
    end = buffer.find(_END)
    return -1 if end < 0 else end + len(_END)


def parse_head(head: bytes) -> RequestHead:
    """Parse a complete request head. Raises HandshakeError(400) when it is malformed."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise HandshakeError(400, "Bad Request") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HandshakeError(400, "Bad Request: malformed request line")
    method, target, version = parts
    path, _, query_string = target.partition("?")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise HandshakeError(400, "Bad Request: malformed header line")
        headers.append((name, value.strip()))
    return RequestHead(method, path, query_string, tuple(headers), version)


def check_upgrade(head: RequestHead) -> None:
    """Check what RFC 6455 section 4.2.1 asks of an upgrade, and that its head is one
    RFC 9110/9112 accept, so nothing malformed reaches `$connect`. Raises HandshakeError.

    Only upgrades are held to this: other requests go to the HTTP server, which parses
    them itself.
    """
    if head.version != "HTTP/1.1":
        raise HandshakeError(400, "Bad Request: a WebSocket upgrade needs HTTP/1.1")
    seen: set[str] = set()
    for name, value in head.headers:
        if _TOKEN.fullmatch(name) is None:
            raise HandshakeError(400, "Bad Request: a header name is not a token")
        if _UNSAFE_VALUE.search(value) is not None:
            raise HandshakeError(400, "Bad Request: a header value holds a NUL, CR or LF")
        lowered = name.lower()
        if lowered in _SINGLE:
            if lowered in seen:
                raise HandshakeError(400, f"Bad Request: {name} sent more than once")
            seen.add(lowered)
        elif lowered == "transfer-encoding" or (lowered == "content-length" and value != "0"):
            raise HandshakeError(400, "Bad Request: an upgrade request has no body")
    if not head.header("Host"):
        raise HandshakeError(400, "Bad Request: a WebSocket upgrade needs a Host header")
    if "upgrade" not in head.tokens("Connection"):
        raise HandshakeError(400, "Bad Request: the Connection header must include Upgrade")
    if head.header("Sec-WebSocket-Version") != "13":
        raise HandshakeError(
            426,
            "Upgrade Required: only WebSocket version 13 is supported",
            (("Sec-WebSocket-Version", "13"),),
        )
    key = head.header("Sec-WebSocket-Key") or ""
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid_key = False
    if not valid_key:
        raise HandshakeError(400, "Bad Request: Sec-WebSocket-Key must be 16 bytes in base64")


def allowed_origin(entry: str) -> str:
    """An `--allowed-origin` entry in the form browsers send `Origin`: `scheme://host[:port]`,
    lower-cased. Raises ConfigError for anything else (a path, no scheme)."""
    origin = entry.strip().rstrip("/").lower()
    parts = urlsplit(origin)
    if not parts.scheme or not parts.netloc or parts.path or parts.query or parts.fragment:
        raise ConfigError(f"bad allowed origin {entry!r}: expected scheme://host[:port]")
    return origin


def origin_allowed(head: RequestHead, allowed: frozenset[str]) -> bool:
    """Whether a handshake may go on as far as `Origin` goes (docs/compatibility.md §7):
    no allowlist, or no `Origin` header (not a browser), or an `Origin` in the list."""
    if not allowed:
        return True
    origin = head.header("Origin")
    return origin is None or origin.strip().rstrip("/").lower() in allowed


def canonical_upgrade(head: RequestHead) -> bytes:
    """The checked upgrade request, reduced to what a WebSocket library verifies.

    The transport re-reads the request to answer it; given the client's own bytes it would
    refuse some that `check_upgrade` accepts, after `$connect` already ran (picows wants
    `Connection: Upgrade` alone, where Firefox sends `keep-alive, Upgrade`).
    """
    return (
        f"GET / HTTP/1.1\r\nHost: {head.header('Host')}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {head.header('Sec-WebSocket-Key')}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode("latin-1")  # as the head was read: a Host may hold any byte but NUL, CR, LF
