"""One open WebSocket: its frames in, its writes out, and how it closes.

picows calls a `LiveConnection` once per frame (through `upgrade.FrameListener`). A
complete text frame is decoded and handed to the gateway at once (nearly every message:
the hot path); anything spanning frames goes through the pure `MessageAssembler`. The
connection owns what concerns its socket alone: flow control (it stops reading while too
many of its messages run), writes and back-pressure (senders wait while the client's
buffer is full; a client that does not catch up is dropped), and the close handshake
with its timers. What all the connections of a gateway hold together (buffers for
clients that do not read, unfinished messages) is counted in one `GatewayBuffers`,
against the gateway-wide budgets.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from typing import TYPE_CHECKING, Any

from picows import WSFrame, WSMsgType, WSTransport

from wsgate.core.close import (
    ABNORMAL_CLOSURE,
    INTERNAL_ERROR,
    INVALID_TEXT,
    MESSAGE_TOO_BIG,
    PROTOCOL_ERROR,
    SLOW_CONSUMER,
    UNFINISHED_MESSAGES_FULL,
    Close,
    CloseCode,
    valid_from_peer,
)
from wsgate.core.compression import MessageDeflate, SharedDeflate
from wsgate.core.events import ConnectionContext
from wsgate.core.limits import Limits, largest_first
from wsgate.core.messages import MessageAssembler, compressed_text
from wsgate.exceptions import GoneError

if TYPE_CHECKING:
    from wsgate.server.gateway import Gateway

log = logging.getLogger("wsgate.gateway")

TEXT = WSMsgType.TEXT
BINARY = WSMsgType.BINARY
CONTINUATION = WSMsgType.CONTINUATION
CLOSE = WSMsgType.CLOSE
PING = WSMsgType.PING

#: How long the gateway waits for the client's close frame after sending its own.
CLOSE_TIMEOUT = 2.0

#: Up to this size picows copies a frame into its own buffer and writes it in one piece.
PICOWS_COPY_LIMIT = 8192

#: With permessage-deflate, messages shorter than this go out uncompressed (the RFC lets
#: each message choose). Under a kilobyte a message is one small TCP segment either way,
#: and deflate would cost more CPU than the bytes it saves are worth.
COMPRESS_MIN_BYTES = 1024


class LiveConnection:
    """An open socket and what the gateway tracks about it; picows calls it per frame.

    Not a picows `WSListener` itself: this module is compiled (setup.py), and a compiled
    class lays out its fields as if its base were `object`, over the Cython object's own
    (its method table, its weak references): picows, calling `on_ws_connected` through
    that table, ran `__init__` instead, and the compiled build crashed.
    """

    __slots__ = (
        "assembling",
        "backed_up",
        "buffers",
        "close",
        "close_timer",
        "connected_mono",
        "deflate",
        "drain_timer",
        "drain_waiters",
        "gateway",
        "inflight",
        "info",
        "last_active_mono",
        "limit",
        "limits",
        "message_bucket",
        "paused",
        "peer_close",
        "touched",
        "transport",
    )

    def __init__(
        self,
        gateway: Gateway,
        info: ConnectionContext,
        limits: Limits,
        deflate: MessageDeflate | None = None,
    ) -> None:
        self.gateway = gateway
        self.info = info
        self.limits = limits
        self.buffers = gateway.buffers
        self.transport: WSTransport | None = None
        self.connected_mono = time.monotonic()
        self.last_active_mono = self.connected_mono
        #: Inbound messages a second (`Limits.message_rate`), or None: not throttled.
        self.message_bucket = limits.message_bucket(self.connected_mono)
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
        #: The message arriving in several frames (or binary, or compressed), while it does.
        self.assembling: MessageAssembler | None = None
        #: The permessage-deflate codec, if the handshake negotiated it.
        self.deflate = deflate

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
            if transport.is_close_frame_sent and kind is not CLOSE:
                return  # closing (either side began): nothing more is a message
            if frame.rsv1 or frame.rsv2 or frame.rsv3:
                # RSV1 marks a compressed message's first frame, if the extension was
                # negotiated (never on a continuation or a control frame); anything else
                # is a protocol error.
                if (
                    self.deflate is None
                    or frame.rsv2
                    or frame.rsv3
                    or not (kind is TEXT or kind is BINARY)
                ):
                    self.start_close(PROTOCOL_ERROR)
                elif kind is TEXT and frame.fin and self.assembling is None:
                    self._compressed_text(frame)
                else:
                    self._assemble(kind, frame, True)
                return
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
            elif kind is PING:
                self._pong(transport, frame)
        except Exception:  # a gateway bug: close this connection (1011), keep the rest
            log.exception("connection %s: handling a frame failed", self.info.connection_id)
            self.start_close(INTERNAL_ERROR)

    def _compressed_text(self, frame: WSFrame) -> None:
        """A compressed text message in one frame (every message a browser sends, once
        compression is negotiated): inflated and dispatched without an assembler."""
        assert self.deflate is not None
        limits = self.limits
        # Within the frame limit as if it had come uncompressed (see `_assemble`).
        max_bytes = min(limits.max_frame_bytes, limits.max_message_bytes)
        body = compressed_text(self.deflate, frame.get_payload_as_bytes(), max_bytes)
        if isinstance(body, Close):
            self.start_close(body)
        else:
            self.gateway.message(self, body, False)

    def _assemble(self, kind: WSMsgType, frame: WSFrame, compressed: bool = False) -> None:
        """Binary messages, compressed messages, and messages sent in several frames."""
        assembling = self.assembling
        if assembling is None:
            assembling = self.assembling = MessageAssembler(
                self.limits.max_message_bytes,
                max_fragments=self.limits.max_message_fragments,
                binary_base64=self.gateway.app.binary == "base64",
                deflate=self.deflate,
                # A compressed frame inflates within the frame limit, as if it had come
                # uncompressed (picows checked its size on the wire).
                max_frame_bytes=self.limits.max_frame_bytes,
            )
        payload = frame.get_payload_as_bytes()
        buffers = self.buffers
        held = assembling.held_bytes
        if (
            not frame.fin
            and buffers.unfinished + len(payload) > self.limits.max_total_unfinished_message_bytes
        ):
            buffers.unfinished -= held
            self.assembling = None
            self.start_close(UNFINISHED_MESSAGES_FULL)
            return
        outcome = assembling.frame(kind.value, frame.fin, payload, compressed)
        buffers.unfinished += assembling.held_bytes - held
        if outcome is None:
            return  # more frames to come
        self.assembling = None
        if isinstance(outcome, Close):
            self.start_close(outcome)
        else:
            self.gateway.message(self, outcome.body, outcome.is_base64)

    def _pong(self, transport: WSTransport, frame: WSFrame) -> None:
        """Answer a ping (as API Gateway does). A pong is a write like any other: a client
        that pings and never reads its pongs is dropped like any client that does not read."""
        transport.send_pong(frame.get_payload_as_bytes())
        if self.backed_up:
            self._within_send_buffers(transport)

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
        """The client's close frame: answer it (once, with its code, or 1002 for a code a
        client may not send), then let the socket go."""
        if self.close is None and self.peer_close is None:
            if frame.payload_size < 2:
                self.peer_close = Close(CloseCode.NO_STATUS, "")
                transport.send(CLOSE, b"")
            else:
                code = int(frame.get_close_code().value)
                reason = frame.get_close_reason() or ""
                if valid_from_peer(code):
                    self.peer_close = Close(code, reason)
                    _send_close(transport, code, reason)
                else:
                    self.close = PROTOCOL_ERROR
                    _send_close(transport, PROTOCOL_ERROR.code, PROTOCOL_ERROR.reason)
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

    def write(
        self,
        kind: WSMsgType,
        data: bytes,
        wire: bytes | None = None,
        shared: SharedDeflate | None = None,
    ) -> bool:
        """Queue a frame (picows writes it now, or asyncio buffers it); False if the
        connection is closing or closed. `wire`: the whole frame of a big message, made
        once by a fan-out (see `wire_frame`); `shared`: the message compressed once by a
        fan-out, for a connection that compresses."""
        if not self.is_open:
            return False
        transport = self.transport
        assert transport is not None
        if self.deflate is not None and len(data) >= COMPRESS_MIN_BYTES:
            self._write_compressed(transport, kind, data, shared)
        elif len(data) <= PICOWS_COPY_LIMIT:
            transport.send(kind, data)
        else:
            transport.underlying_transport.write(wire or wire_frame(kind, data))
        self.last_active_mono = time.monotonic()
        self.touched = True
        if self.backed_up:  # only then is the buffer worth measuring
            return self._within_send_buffers(transport)
        return True

    def _write_compressed(
        self, transport: WSTransport, kind: WSMsgType, data: bytes, shared: SharedDeflate | None
    ) -> None:
        """One message compressed: with this connection's own context, or once for all
        the receivers of a fan-out (`shared`)."""
        assert self.deflate is not None
        payload = self.deflate.compress(data) if shared is None else shared.payload(self.deflate)
        if len(payload) <= PICOWS_COPY_LIMIT:
            transport.send(kind, payload, True, True)
        else:
            transport.underlying_transport.write(wire_frame(kind, payload, rsv1=True))

    def _within_send_buffers(self, transport: WSTransport) -> bool:
        """Measure what waits for a backed-up client: past its own limit it is dropped;
        past the gateway's total, those holding the most are. False if this one was."""
        size = transport.underlying_transport.get_write_buffer_size()
        if size > self.limits.max_send_buffer_bytes:
            self.drop_slow(f"{size} bytes wait")
            return False
        return self.buffers.waiting(self, size)

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
        self.buffers.caught_up(self)
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
        self.buffers.caught_up(self)
        if self.assembling is not None:
            self.buffers.unfinished -= self.assembling.held_bytes
            self.assembling = None
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


class GatewayBuffers:
    """What a gateway's connections hold in memory for their clients, all together.

    Each connection has its own limits; these totals keep many connections from taking
    what one may not (`Limits.max_total_send_buffer_bytes`,
    `Limits.max_total_unfinished_message_bytes`). Sizes of write buffers are what the
    transport reported when last measured (after a write to a backed-up client); before
    shedding anyone they are all measured again.
    """

    __slots__ = ("backed_up", "limits", "unfinished", "waiting_bytes")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        #: The backed-up connections and what waited for each when last measured.
        self.backed_up: dict[LiveConnection, int] = {}
        self.waiting_bytes = 0
        #: Payload bytes held in messages whose final frame has not come.
        self.unfinished = 0

    def waiting(self, conn: LiveConnection, size: int) -> bool:
        """`size` bytes wait for `conn`'s client: past the total, drop the connections
        holding the most until the rest fit. False if `conn` was one of them."""
        self.waiting_bytes += size - self.backed_up.get(conn, 0)
        self.backed_up[conn] = size
        budget = self.limits.max_total_send_buffer_bytes
        if self.waiting_bytes <= budget:
            return True
        for each in self.backed_up:
            transport = each.transport
            if transport is not None:
                self.backed_up[each] = transport.underlying_transport.get_write_buffer_size()
        self.waiting_bytes = sum(self.backed_up.values())
        for slowest in largest_first(self.backed_up, budget):
            size = self.backed_up[slowest]
            self.caught_up(slowest)  # forgotten now: the socket closes on a later turn
            slowest.drop_slow(f"{size} bytes wait (the most; over {budget} in all)")
        return conn in self.backed_up

    def caught_up(self, conn: LiveConnection) -> None:
        """`conn`'s client caught up, or is gone: nothing waits for it any more."""
        self.waiting_bytes -= self.backed_up.pop(conn, 0)


def wire_frame(kind: WSMsgType, data: bytes, *, rsv1: bool = False) -> bytes:
    """An unmasked, final server frame (RFC 6455 section 5.2), header and payload;
    `rsv1`: a compressed message's (RFC 7692).

    For messages over `PICOWS_COPY_LIMIT`: picows hands those to `transport.writelines`,
    which on Python 3.12+'s own event loop keeps a view of picows' reused header buffer
    without copying and never tells the protocol to pause. One write of one frame does.
    """
    first = (0xC0 if rsv1 else 0x80) | (0x1 if kind is TEXT else 0x2)
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
