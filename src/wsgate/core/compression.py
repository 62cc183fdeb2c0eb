"""permessage-deflate (RFC 7692): which offer the gateway accepts, and the codec it runs.

Pure: header values in, parameters and a response header out; the codec is zlib over
bytes, no I/O. API Gateway accepts permessage-deflate when the client offers it, and
every browser does (docs/compatibility.md §10.8).

Theory of operation. A client offers one or more configurations in
`Sec-WebSocket-Extensions`, best first. The gateway takes the first permessage-deflate
offer it can honour and answers it; an offer that breaks the RFC's rules (a parameter
the RFC does not define, a bad value, a parameter twice, a syntax error) is declined,
and the next one is tried. Nothing acceptable: no extension, the connection goes on
uncompressed. An offer is never a reason to refuse the handshake.

What the gateway asks for itself: a 4 KB window (12 bits) both ways, and deflate's
`memLevel` 5, as the websockets library does. API Gateway answers
`server_max_window_bits=12` too, offered or not; it leaves the client's window alone,
where the gateway caps it whenever the client lets it (`client_max_window_bits` in the
offer, as Chrome, Safari and websockets send). A connection that compresses then holds
about 32 KB for its compressor and 11 KB for its decompressor instead of 256 + 40 KB,
and JSON messages compress as well (at level 1, 0.25 of their size at 1 KB and 0.23 at
4 KB, against 0.26 and 0.24 with a 32 KB window and zlib's default memLevel). A client
that does not offer `client_max_window_bits` (Firefox) is inflated with the full 32 KB
window.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

#: The extension's registered name.
PERMESSAGE_DEFLATE = "permessage-deflate"

#: The largest window the gateway compresses with, and asks clients to compress with.
SERVER_WINDOW_BITS = 12
CLIENT_WINDOW_BITS = 12

#: deflate's memory level for the gateway's compressors (zlib's default is 8).
MEM_LEVEL = 5

#: deflate's level: 1, the fastest. On JSON messages of 1-16 KB it runs about twice as
#: fast as zlib's default (6) for output about a fifth larger (0.23-0.25 of the input
#: against 0.19-0.21): a gateway compresses for every receiver, so CPU goes first.
COMPRESS_LEVEL = 1

#: Every compressed message ends with this empty stored block, which the sender removes
#: and the receiver puts back (RFC 7692 section 7.2.1).
_SYNC_TAIL = b"\x00\x00\xff\xff"

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM = re.compile(rf'({_TOKEN})(?:\s*=\s*(?:({_TOKEN})|"((?:[^"\\]|\\.)*)"))?')
_WINDOW_BITS = re.compile(r"[89]|1[0-5]")  # 8-15, decimal, no leading zero

Params = tuple[tuple[str, str | None], ...]


@dataclass(frozen=True, slots=True)
class DeflateParameters:
    """What the gateway agreed to, as its response header says it.

    `client_max_window_bits`: None when the response does not name it (the client may
    use the full 15 bits).
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = SERVER_WINDOW_BITS
    client_max_window_bits: int | None = None

    @property
    def header(self) -> str:
        """The `Sec-WebSocket-Extensions` value of the 101 response."""
        parts = [PERMESSAGE_DEFLATE]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits is not None:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts)

    @property
    def inflate_window_bits(self) -> int:
        return self.client_max_window_bits or 15


def parse_extensions(values: Iterable[str]) -> list[tuple[str, Params] | None]:
    """Every offer in the `Sec-WebSocket-Extensions` header values, in order: its name
    (lower-cased) and parameters (quoted values unquoted), or None where an offer is not
    well-formed (RFC 6455 section 9.1). Empty list elements are skipped."""
    return [
        _offer(element) for value in values for element in _split(value, ",") if element.strip()
    ]


def _offer(element: str) -> tuple[str, Params] | None:
    """One list element: `name; param; param=value; param="value"`, or None."""
    name, *raw_params = (part.strip() for part in _split(element, ";"))
    if re.fullmatch(_TOKEN, name) is None:
        return None
    params: list[tuple[str, str | None]] = []
    for raw in raw_params:
        match = _PARAM.fullmatch(raw)
        if match is None:
            return None
        token, plain, quoted = match.groups()
        params.append((token.lower(), plain if quoted is None else re.sub(r"\\(.)", r"\1", quoted)))
    return name.lower(), tuple(params)


def negotiate(values: Iterable[str]) -> DeflateParameters | None:
    """The first permessage-deflate offer in `values` the gateway accepts, as agreed
    (its `header` is the answer), or None: no extension."""
    for offer in parse_extensions(values):
        if offer is not None and offer[0] == PERMESSAGE_DEFLATE:
            accepted = _accept(offer[1])
            if accepted is not None:
                return accepted
    return None


def _accept(params: Params) -> DeflateParameters | None:
    """The answer to one offer, or None to decline it (RFC 7692 sections 5.1 and 7.1)."""
    names = [name for name, _ in params]
    if len(set(names)) != len(names):
        return None  # a parameter twice
    server_no_context = client_no_context = False
    server_bits: int | None = None
    client_bits: int | None = None
    for name, value in params:
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                return None
            if name == "server_no_context_takeover":
                server_no_context = True
            else:
                client_no_context = True
        elif name == "server_max_window_bits":
            if value is None or _WINDOW_BITS.fullmatch(value) is None:
                return None
            server_bits = int(value)
            if server_bits == 8:
                # zlib's raw deflate has no 256-byte window: decline what cannot be honoured.
                return None
        elif name == "client_max_window_bits":
            if value is None:
                client_bits = CLIENT_WINDOW_BITS  # "any value you like": ours
            elif _WINDOW_BITS.fullmatch(value) is None:
                return None
            else:
                client_bits = min(int(value), CLIENT_WINDOW_BITS)
        else:
            return None  # not a parameter of this extension
    return DeflateParameters(
        server_no_context_takeover=server_no_context,
        client_no_context_takeover=client_no_context,
        server_max_window_bits=min(server_bits or SERVER_WINDOW_BITS, SERVER_WINDOW_BITS),
        client_max_window_bits=client_bits,
    )


class SharedDeflate:
    """One fan-out message, compressed once for all its receivers that compress.

    Context takeover lets the server refer to earlier messages; it never obliges it to.
    So a fan-out compresses its message alone, once per window size its receivers
    agreed to (nearly always one: 12 bits), and every such receiver gets the same bytes:
    one deflate per message instead of one per receiver. Each receiver's own compressor
    then starts afresh on its next message (`MessageDeflate.forget_context`).
    """

    __slots__ = ("_payloads", "data")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._payloads: dict[int, bytes] = {}

    def payload(self, deflate: MessageDeflate) -> bytes:
        """The compressed message for a receiver with `deflate`'s parameters."""
        deflate.forget_context()
        bits = deflate.parameters.server_max_window_bits
        payload = self._payloads.get(bits)
        if payload is None:
            compressor = _compressor(bits)
            payload = compressor.compress(self.data) + compressor.flush(zlib.Z_SYNC_FLUSH)
            payload = self._payloads[bits] = payload[:-4]
        return payload


def _compressor(window_bits: int) -> zlib._Compress:
    return zlib.compressobj(COMPRESS_LEVEL, wbits=-window_bits, memLevel=MEM_LEVEL)


def _split(text: str, separator: str) -> list[str]:
    """`text` split at `separator`s outside quoted strings."""
    parts: list[str] = []
    start = 0
    quoted = escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


class MessageDeflate:
    """One connection's compressor and decompressor, for the parameters agreed.

    Both are made on first use: a connection that never sends or receives a compressed
    message holds no zlib state. Without context takeover on a side, that side's
    state is dropped after each message (the memory the parameter exists to save).
    """

    __slots__ = ("_compressor", "_decompressor", "parameters")

    def __init__(self, parameters: DeflateParameters) -> None:
        self.parameters = parameters
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None

    def compress(self, data: bytes) -> bytes:
        """One message's payload, compressed, without its final `00 00 ff ff`."""
        compressor = self._compressor
        if compressor is None:
            compressor = _compressor(self.parameters.server_max_window_bits)
            if not self.parameters.server_no_context_takeover:
                self._compressor = compressor
        payload = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return payload[:-4]  # a sync flush always ends with the empty stored block

    def forget_context(self) -> None:
        """The client was sent a message this compressor did not see (`SharedDeflate`):
        its history no longer matches the client's window, so the next message is
        compressed from an empty one."""
        self._compressor = None

    def decompress(self, payload: bytes, max_bytes: int, *, final: bool = True) -> bytes | None:
        """A frame's payload inflated (`final`: the message's last frame), or None when it
        inflates past `max_bytes`: zlib stops there, so a small frame that would inflate
        to gigabytes never does. Raises zlib.error for data that is not deflate."""
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = zlib.decompressobj(wbits=-self.parameters.inflate_window_bits)
        keep = not (final and self.parameters.client_no_context_takeover)
        self._decompressor = decompressor if keep else None
        data = decompressor.decompress(payload + _SYNC_TAIL if final else payload, max_bytes + 1)
        if len(data) > max_bytes:
            self._decompressor = None  # mid-message: the connection closes anyway
            return None
        return data
