"""One open WebSocket: its frames in, its writes out, and how it closes.

picows calls a `LiveConnection` once per frame. A complete text frame is decoded and
handed to the gateway at once (nearly every message: the hot path); anything spanning
frames goes through the pure `MessageAssembler`. The connection owns what concerns its
socket alone: flow control (it stops reading while too many of its messages run),
writes and back-pressure (senders wait while the client's buffer is full; a client that
does not catch up is dropped), and the close handshake with its timers.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from typing import TYPE_CHECKING, Any

from picows import WSFrame, WSListener, WSMsgType, WSTransport

from wsgate.core.close import (
    ABNORMAL_CLOSURE,
    INTERNAL_ERROR,
    INVALID_TEXT,
    MESSAGE_TOO_BIG,
    SLOW_CONSUMER,
    Close,
    CloseCode,
)
from wsgate.core.events import ConnectionContext
from wsgate.core.limits import Limits
from wsgate.core.messages import MessageAssembler
from wsgate.exceptions import GoneError

if TYPE_CHECKING:
    from wsgate.server.gateway import Gateway

log = logging.getLogger("wsgate.gateway")

TEXT = WSMsgType.TEXT
BINARY = WSMsgType.BINARY
CONTINUATION = WSMsgType.CONTINUATION
CLOSE = WSMsgType.CLOSE

#: How long the gateway waits for the client's close frame after sending its own.
CLOSE_TIMEOUT = 2.0

#: Up to this size picows copies a frame into its own buffer and writes it in one piece.
PICOWS_COPY_LIMIT = 8192


class LiveConnection(WSListener):
    """An open socket and what the gateway tracks about it; picows calls it per frame."""

    __slots__ = (
        "assembling",
        "backed_up",
        "close",
        "close_timer",
        "connected_mono",
        "drain_timer",
        "drain_waiters",
        "gateway",
        "inflight",
        "info",
        "last_active_mono",
        "limit",
        "limits",
        "paused",
        "peer_close",
        "touched",
        "transport",
    )

    def __init__(self, gateway: Gateway, info: ConnectionContext, limits: Limits) -> None:
        self.gateway = gateway
        self.info = info
        self.limits = limits
        self.transport: WSTransport | None = None
        self.connected_mono = time.monotonic()
        self.last_active_mono = self.connected_mono
        #: Active since the sweeper last wrote lastActiveAt to the store.
        self.touched = False
        #: The close the gateway started, if any (idle, duration, DeleteConnection, ...).
        self.close: Close | None = None
        #: The close frame the client sent, if it started the close.
        self.peer_close: Close | None = None
        self.close_timer: asyncio.TimerHandle | None = None
        #: Messages dispatched and not finished; at `limit` the socket is not read.
        self.inflight = 0
        self.limit = limits.max_concurrent_messages
        self.paused = False
        #: The transport's write buffer is over its high-water mark.
        self.backed_up = False
        #: What `send`s wait on while backed up (done when the client catches up), one per
        #: sender (a sender cancelled must not cancel the others' wait), and the timer that
        #: drops a client that does not catch up (`Limits.max_send_wait`).
        self.drain_waiters: list[asyncio.Future[None]] | None = None
        self.drain_timer: asyncio.TimerHandle | None = None
        #: The message arriving in several frames (or binary), while it does.
        self.assembling: MessageAssembler | None = None

    @property
    def last_active_ms(self) -> int:
        return self.info.connected_at + int((self.last_active_mono - self.connected_mono) * 1000)

    @property
    def is_open(self) -> bool:
        transport = self.transport
        return (
            transport is not None
            and self.close is None
            and self.peer_close is None
            and not transport.is_disconnected
            and not transport.is_close_frame_sent  # picows closed it (a protocol error)
        )

    # -- frames in (picows' callbacks: must not raise, must not block) -------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        try:
            kind = frame.msg_type
            if kind is TEXT and frame.fin and self.assembling is None:
                try:
                    body = frame.get_payload_as_utf8_text()
                except UnicodeDecodeError:
                    self.start_close(INVALID_TEXT)
                    return
                self.gateway.message(self, body, False)
            elif kind is TEXT or kind is BINARY or kind is CONTINUATION:
                self._assemble(kind, frame)
            elif kind is CLOSE:
                self._peer_closing(transport, frame)
        except Exception:  # a gateway bug: close this connection (1011), keep the rest
            log.exception("connection %s: handling a frame failed", self.info.connection_id)
            self.start_close(INTERNAL_ERROR)

    def _assemble(self, kind: WSMsgType, frame: WSFrame) -> None:
        """Binary messages, and messages sent in several frames."""
        assembling = self.assembling
        if assembling is None:
            assembling = self.assembling = MessageAssembler(
                self.limits.max_message_bytes, binary_base64=self.gateway.app.binary == "base64"
            )
        outcome = assembling.frame(kind.value, frame.fin, frame.get_payload_as_bytes())
        if outcome is None:
            return  # more frames to come
        self.assembling = None
        if isinstance(outcome, Close):
            self.start_close(outcome)
        else:
            self.gateway.message(self, outcome.body, outcome.is_base64)

    def refused(self) -> None:
        """picows refused a frame (over the frame limit, malformed) and sent its close
        frame: stop reading now, so no more of that frame is buffered, let alone handed
        to a handler; the close frame still goes out, within `CLOSE_TIMEOUT`."""
        transport = self.transport
        if transport is None or transport.is_disconnected or self.close_timer is not None:
            return
        transport.disconnect()  # graceful: reading stops, the close frame is flushed
        self.close_timer = self.gateway.loop.call_later(CLOSE_TIMEOUT, transport.disconnect, False)

    def _peer_closing(self, transport: WSTransport, frame: WSFrame) -> None:
        """The client's close frame: answer it (once), then let the socket go."""
        if self.close is None and self.peer_close is None:
            code = int(frame.get_close_code().value)
            reason = frame.get_close_reason() or ""
            self.peer_close = Close(code or CloseCode.NO_STATUS, reason)
            if code:
                _send_close(transport, code, reason)
            else:
                transport.send(CLOSE, b"")
        transport.disconnect()  # graceful: after what is buffered, unless it never drains
        if self.close_timer is None:
            self.close_timer = self.gateway.loop.call_later(
                CLOSE_TIMEOUT, transport.disconnect, False
            )

    def message_started(self) -> None:
        """One more message of this connection runs; at the limit, stop reading the socket."""
        self.inflight += 1
        if self.inflight >= self.limit and not self.paused:
            self.paused = True
            assert self.transport is not None
            self.transport.underlying_transport.pause_reading()

    def message_done(self) -> None:
        self.inflight -= 1
        if self.paused and self.inflight < self.limit:
            self.paused = False
            transport = self.transport
            if transport is not None and not transport.is_disconnected:
                transport.underlying_transport.resume_reading()

    # -- writes and back-pressure -------------------------------------------------------

    def write(self, kind: WSMsgType, data: bytes, wire: bytes | None = None) -> bool:
        """Queue a frame (picows writes it now, or asyncio buffers it); False if the
        connection is closing or closed. `wire`: the whole frame of a big message, made
        once by a fan-out (see `wire_frame`)."""
        if not self.is_open:
            return False
        transport = self.transport
        assert transport is not None
        if len(data) <= PICOWS_COPY_LIMIT:
            transport.send(kind, data)
        else:
            transport.underlying_transport.write(wire or wire_frame(kind, data))
        self.last_active_mono = time.monotonic()
        self.touched = True
        if self.backed_up:  # only then is the buffer worth measuring
            size = transport.underlying_transport.get_write_buffer_size()
            if size > self.limits.max_send_buffer_bytes:
                self.drop_slow(f"{size} bytes wait")
                return False
        return True

    def reply(self, payload: str | bytes) -> None:
        """Send on this socket; a client that left meanwhile is not an error."""
        if isinstance(payload, str):
            self.write(TEXT, payload.encode())
        else:
            self.write(BINARY, payload)

    def pause_writing(self) -> None:
        """The client reads slower than we write: `send`s now wait for it to catch up, and
        `write` watches the buffer (`Limits.max_send_buffer_bytes`)."""
        self.backed_up = True

    def resume_writing(self) -> None:
        """The client caught up: the waiting `send`s go on."""
        self.backed_up = False
        self.release_senders(gone=False)

    def wait_for_drain(self) -> asyncio.Future[None]:
        """What a `send` returns while the client's buffer is full: done once it reads (or
        is dropped for not reading within `Limits.max_send_wait`)."""
        loop = self.gateway.loop
        waiter = loop.create_future()
        if self.drain_waiters is None:
            self.drain_waiters = [waiter]
            wait = self.limits.max_send_wait
            self.drain_timer = loop.call_later(wait, self.drop_slow, f"sends waited {wait:g} s")
        else:
            self.drain_waiters.append(waiter)
        return waiter

    def release_senders(self, *, gone: bool) -> None:
        """End the waiting `send`s: sent, or (`gone`) lost with the socket: 410 for them."""
        if self.drain_timer is not None:
            self.drain_timer.cancel()
            self.drain_timer = None
        waiters, self.drain_waiters = self.drain_waiters, None
        for waiter in waiters or ():
            if waiter.done():  # its sender was cancelled (a handler timeout)
                continue
            if gone:
                waiter.set_exception(GoneError(self.info.connection_id))
            else:
                waiter.set_result(None)

    def drop_slow(self, why: str) -> None:
        """Drop a client that is not reading what is sent to it (1006 to `$disconnect`,
        unless it had started closing: its own close code then)."""
        transport = self.transport
        if transport is None or transport.is_disconnected:
            return
        log.warning(
            "dropping connection %s: %s for a client that is not reading",
            self.info.connection_id,
            why,
        )
        if self.close is None and self.peer_close is None:
            self.close = SLOW_CONSUMER
        transport.disconnect(graceful=False)

    # -- closing -------------------------------------------------------------------------

    def start_close(self, close: Close) -> None:
        """Start closing: send the close frame; picows reports the end (`on_ws_disconnected`)."""
        transport = self.transport
        if self.close is not None or self.peer_close is not None or transport is None:
            return
        self.close = close
        if transport.is_disconnected:
            return
        _send_close(transport, close.code, close.reason)
        # Not a graceful disconnect: that would wait for a client that stopped reading.
        self.close_timer = self.gateway.loop.call_later(CLOSE_TIMEOUT, transport.disconnect, False)

    def on_ws_disconnected(self, transport: WSTransport | None) -> None:
        """The socket is gone: settle how it closed, and let the gateway forget it."""
        if self.close_timer is not None:
            self.close_timer.cancel()
        self.release_senders(gone=True)  # what they sent is lost with the socket
        close = self.close or self.peer_close
        if close is None:
            # None until a close frame was sent or received (the stub says otherwise).
            handshake: Any = transport.close_handshake if transport is not None else None
            sent = handshake.sent if handshake is not None else None
            if sent is None or handshake.recv is not None:
                close = ABNORMAL_CLOSURE  # the client vanished without a close frame
            elif sent.code.value == CloseCode.MESSAGE_TOO_BIG:
                close = MESSAGE_TOO_BIG
            else:  # picows refused a malformed frame
                close = Close(int(sent.code.value), sent.reason)
        self.close = close
        self.gateway.connection_closed(self)


def wire_frame(kind: WSMsgType, data: bytes) -> bytes:
    """An unmasked, final server frame (RFC 6455 section 5.2), header and payload.

    For messages over `PICOWS_COPY_LIMIT`: picows hands those to `transport.writelines`,
    which on Python 3.12+'s own event loop keeps a view of picows' reused header buffer
    without copying and never tells the protocol to pause. One write of one frame does.
    """
    first = 0x80 | (0x1 if kind is TEXT else 0x2)
    length = len(data)
    if length < 126:
        return bytes((first, length)) + data
    if length < 1 << 16:
        return struct.pack("!BBH", first, 126, length) + data
    return struct.pack("!BBQ", first, 127, length) + data


def _send_close(transport: WSTransport, code: int, reason: str) -> None:
    # picows' stub asks for a WSCloseCode; at run time it takes any int (4000-4999 too).
    any_code: Any = code
    transport.send_close(any_code, reason.encode())
