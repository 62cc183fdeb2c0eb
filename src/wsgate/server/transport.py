"""Writing on a raw transport before any protocol owns it: hand it over, or answer and close.

The front door and the upgrade both need these, and neither should import the other.
"""

from __future__ import annotations

import asyncio
import json


def hand_over(
    transport: asyncio.Transport, protocol: asyncio.BaseProtocol, received: bytes
) -> None:
    """Make `protocol` the transport's protocol, as if it had read `received` itself."""
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    feed(protocol, received)
    transport.resume_reading()


def feed(protocol: asyncio.BaseProtocol, received: bytes) -> None:
    """Give `protocol` bytes as its transport would, whichever kind of protocol it is."""
    if isinstance(protocol, asyncio.BufferedProtocol):
        view = memoryview(received)
        while view:
            buffer = memoryview(protocol.get_buffer(len(view)))
            n = min(len(buffer), len(view))
            buffer[:n] = view[:n]
            protocol.buffer_updated(n)
            view = view[n:]
    elif received:
        assert isinstance(protocol, asyncio.Protocol)
        protocol.data_received(received)


def write_response(
    transport: asyncio.Transport,
    status: int,
    reason: str,
    body: bytes,
    headers: tuple[tuple[str, str], ...] = (),
    content_type: str = "application/json",
) -> None:
    """Answer the request head with a complete HTTP response and close the connection."""
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    transport.close()


def refuse(
    transport: asyncio.Transport,
    status: int,
    reason: str,
    message: str,
    headers: tuple[tuple[str, str], ...] = (),
) -> None:
    """Answer with an HTTP error and API Gateway's JSON body (`{"message": ...}`), and close."""
    body = json.dumps({"message": message}).encode()
    write_response(transport, status, reason, body, headers)
