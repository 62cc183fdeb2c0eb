"""Socket.IO's framing over a WebSocket (Engine.IO 4), for the load generator.

Every WebSocket frame is one Engine.IO packet: a digit for its type, then its payload.
The server opens with `0{"sid":...}` (open); the client joins the default namespace with
`40` and the server answers `40{"sid":...}`; events are `42["name",data]` both ways; the
server pings with `2` and the client answers `3` (pong), or is dropped.

The benchmark's bodies are compact JSON objects, sent as an event named by their action
(`{"action":"echo",...}` becomes `42["echo",{"action":"echo",...}]`): socket.io decodes
them into a dict and encodes the dict back with compact separators, so the body comes out
byte for byte as it went in and the load generator reads it by offset, as with the others.
"""

from __future__ import annotations

import enum
import json

#: Where a Socket.IO server takes WebSocket connections (Engine.IO 4, no polling first).
PATH = "/socket.io/?EIO=4&transport=websocket"
#: Join the default namespace.
CONNECT = b"40"
PONG = b"3"

_EVENT = b'42["'
_ACTION_AT = len(b'{"action":"')


class Packet(enum.Enum):
    """What a packet from the server is."""

    OPEN = "open"
    CONNECTED = "connected"
    CONNECT_ERROR = "connect error"
    EVENT = "event"
    PING = "ping"
    CLOSE = "close"
    OTHER = "other"


def encode_event(body: bytes) -> bytes:
    """The benchmark's JSON `body` as the event its action names."""
    action = body[_ACTION_AT : body.index(b'"', _ACTION_AT)]
    return _EVENT + action + b'",' + body + b"]"


def decode(packet: bytes) -> tuple[Packet, bytes]:
    """The kind of a packet from the server, and its payload: an event's data (the
    benchmark's events carry one argument), unquoted if a string; a connect error's
    reason; the open packet's handshake."""
    if packet.startswith(_EVENT):
        data = packet[packet.index(b'",', len(_EVENT)) + 2 : -1]
        if data.startswith(b'"'):
            data = json.loads(data).encode()
        return Packet.EVENT, data
    if packet == b"2":
        return Packet.PING, b""
    if packet.startswith(b"40"):
        return Packet.CONNECTED, packet[2:]
    if packet.startswith(b"44"):
        return Packet.CONNECT_ERROR, packet[2:]
    if packet.startswith(b"0"):
        return Packet.OPEN, packet[1:]
    if packet == b"1" or packet.startswith(b"41"):
        return Packet.CLOSE, b""
    return Packet.OTHER, packet
