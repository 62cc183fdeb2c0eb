"""Frames in, messages out: the inbound message rules of a WebSocket API, without sockets.

A message is one frame, or a first frame and its continuations (RFC 6455 section 5.4).
The assembler checks what API Gateway checks on the way in (docs/compatibility.md §5 and
§8): a message over the size limit closes with 1009, text that is not UTF-8 with 1007,
a binary message with 1003 unless the API accepts binary (then its body is base64, as
Lambda receives it), frames out of order with 1002, a message in more frames than its
limit with 1009 (empty continuations cost no bytes, but a part each). The transport owns
the per-frame limit; this owns everything that spans frames.

A compressed message (permessage-deflate: its first frame has RSV1) is inflated frame
by frame as it comes, and held to the limits as if it had come uncompressed: each
frame's inflated size within the frame limit, the message's within the message limit,
checked while inflating, so a zip bomb stops there (docs/compatibility.md §10.8). Data
that does not inflate closes with 1002.

A complete text message in one frame, nearly every message, never comes here: the
connection decodes it directly (the hot path). Everything else does.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass

from wsgate.core.close import (
    BINARY_NOT_SUPPORTED,
    INVALID_TEXT,
    MESSAGE_TOO_BIG,
    PROTOCOL_ERROR,
    TOO_MANY_FRAGMENTS,
    Close,
)
from wsgate.core.compression import MessageDeflate

#: RFC 6455 opcodes of the data frames.
CONTINUATION = 0x0
TEXT = 0x1
BINARY = 0x2


@dataclass(frozen=True, slots=True)
class Message:
    """A complete inbound message, as the route handler's event carries it."""

    body: str
    is_base64: bool


class MessageAssembler:
    """One connection's message in progress; `frame()` for each data frame, in order."""

    __slots__ = (
        "_binary_base64",
        "_compressed",
        "_deflate",
        "_kind",
        "_max_fragments",
        "_max_frame_bytes",
        "_max_message_bytes",
        "_parts",
        "_size",
    )

    def __init__(
        self,
        max_message_bytes: int,
        *,
        max_fragments: int,
        binary_base64: bool,
        deflate: MessageDeflate | None = None,
        max_frame_bytes: int | None = None,
    ) -> None:
        self._max_message_bytes = max_message_bytes
        #: The connection's permessage-deflate codec, if it negotiated the extension, and
        #: how much one compressed frame may inflate to (the transport checked the
        #: frames' wire size; None: the message limit alone).
        self._deflate = deflate
        self._max_frame_bytes = max_frame_bytes or max_message_bytes
        self._compressed = False
        self._max_fragments = max_fragments
        self._binary_base64 = binary_base64
        self._parts: list[bytes] | None = None
        self._kind = TEXT
        self._size = 0

    @property
    def in_progress(self) -> bool:
        """A first frame came and its final continuation has not."""
        return self._parts is not None

    @property
    def held_bytes(self) -> int:
        """The payload bytes kept for the message in progress (0 between messages)."""
        return self._size if self._parts is not None else 0

    # `fin: int`: picows gives 0 or 1, which the compiled build would not take for a bool.
    def frame(
        self, opcode: int, fin: int, payload: bytes, compressed: bool = False
    ) -> Message | Close | None:
        """Take one data frame: a message once complete, a close on a broken rule, else None.
        `compressed`: the frame has RSV1 (the caller checked that the extension was
        negotiated); only a message's first frame may."""
        if opcode != CONTINUATION:
            if self._parts is not None:
                return PROTOCOL_ERROR  # a new message inside another
            self._parts = []
            self._kind = opcode
            self._size = 0
            self._compressed = compressed
        elif compressed:
            self._parts = None
            return PROTOCOL_ERROR  # RSV1 is the first frame's alone
        elif self._parts is None:
            return PROTOCOL_ERROR  # a continuation without a first frame
        if self._compressed:
            inflated = self._inflate(payload, fin)
            if isinstance(inflated, Close):
                self._parts = None
                return inflated
            payload = inflated
        self._size += len(payload)
        if self._size > self._max_message_bytes:
            self._parts = None
            return MESSAGE_TOO_BIG
        self._parts.append(payload)
        if len(self._parts) > self._max_fragments:
            self._parts = None
            return TOO_MANY_FRAGMENTS
        if not fin:
            return None
        data = b"".join(self._parts)
        self._parts = None
        return self._message(data)

    def _inflate(self, payload: bytes, fin: int) -> bytes | Close:
        assert self._deflate is not None, "RSV1 without the extension is the caller's 1002"
        room = min(self._max_frame_bytes, self._max_message_bytes - self._size)
        return inflate(self._deflate, payload, room, final=bool(fin))

    def _message(self, data: bytes) -> Message | Close:
        if self._kind == TEXT:
            try:
                return Message(data.decode("utf-8"), False)
            except UnicodeDecodeError:
                return INVALID_TEXT
        if self._binary_base64:
            return Message(base64.b64encode(data).decode("ascii"), True)
        return BINARY_NOT_SUPPORTED


def compressed_text(deflate: MessageDeflate, payload: bytes, max_bytes: int) -> str | Close:
    """A compressed text message in one frame, inflated within `max_bytes` and decoded:
    what the assembler does for it, without making one (a browser compresses every
    message, so this is the hot path of a connection that negotiated compression)."""
    data = inflate(deflate, payload, max_bytes, final=True)
    if isinstance(data, Close):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return INVALID_TEXT


def inflate(
    deflate: MessageDeflate, payload: bytes, max_bytes: int, *, final: bool
) -> bytes | Close:
    """A compressed frame's payload inflated, or the close for data over `max_bytes` (1009)
    or not deflate (1002)."""
    try:
        data = deflate.decompress(payload, max_bytes, final=final)
    except zlib.error:
        return PROTOCOL_ERROR
    return MESSAGE_TOO_BIG if data is None else data
