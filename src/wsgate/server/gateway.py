"""The gateway: runs an App behind real WebSockets, the way API Gateway runs Lambda routes.

Per connection: `$connect` runs while the upgrade request waits (so no message can arrive
before it returns); a 2xx accepts, anything else answers the handshake with that status.
Then each text message is routed and dispatched as its own task (AWS runs invocations of
one connection concurrently); `max_concurrent_messages` bounds that, after which the
socket is not read until a slot frees. When the socket closes, for any reason, the
connection leaves the store and `$disconnect` runs with the close code and reason.

Handlers reach other connections through `wsgate.connections`, which this class serves
(`ConnectionsAPI`). picows carries the frames (each connection is a `LiveConnection`, the
listener picows calls per frame); `server/front.py` hands it the socket after `$connect`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import struct
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

from picows import WSFrame, WSListener, WSMsgType, WSTransport

from wsgate import connection_api
from wsgate.app import App, Route
from wsgate.connection_api import ConnectionInfo, Data
from wsgate.context import LambdaContext
from wsgate.core import ids
from wsgate.core.events import (
    ConnectionContext,
    Event,
    connect_event,
    disconnect_event,
    message_event,
)
from wsgate.core.handshake import HandshakeError, RequestHead, check_upgrade
from wsgate.core.limits import (
    ABNORMAL_CLOSURE,
    BINARY_NOT_SUPPORTED,
    CLOSED_BY_MANAGEMENT_API,
    INTERNAL_ERROR,
    INVALID_TEXT,
    MESSAGE_TOO_BIG,
    PROTOCOL_ERROR,
    SHUTDOWN,
    SLOW_CONSUMER,
    Close,
    CloseCode,
    Limits,
)
from wsgate.core.responses import (
    ENDPOINT_TIMED_OUT,
    FORBIDDEN,
    INTERNAL_SERVER_ERROR,
    connect_decision,
    error_frame,
    outbound_frame,
    route_reply,
)
from wsgate.core.routing import CONNECT, DISCONNECT, NOT_JSON, parse_body
from wsgate.dispatch import call_handler
from wsgate.exceptions import GoneError, PayloadTooLargeError
from wsgate.server.front import hand_to_picows, refuse
from wsgate.server.peers import ID_ALPHABET, Peers, owner
from wsgate.store.base import ConnectionRecord, Store

log = logging.getLogger("wsgate.gateway")
handler_log = logging.getLogger("wsgate.handler")


class HandlerFailed(Exception):
    """The handler raised; the original exception is the cause."""


class HandlerTimedOut(Exception):
    """The handler ran past the handler timeout."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


TEXT = WSMsgType.TEXT
BINARY = WSMsgType.BINARY
CONTINUATION = WSMsgType.CONTINUATION
CLOSE = WSMsgType.CLOSE

#: How long the gateway waits for the client's close frame after sending its own.
CLOSE_TIMEOUT = 2.0

#: How many bytes a sync handler's thread may queue for the loop to write between two
#: sends that wait for the loop (see `Gateway.send_from_thread`).
FAST_SEND_WINDOW = 256 * 1024
_thread_sends = threading.local()


class LiveConnection(WSListener):
    """An open socket and what the gateway tracks about it; picows calls it per frame."""

    __slots__ = (
        "backed_up",
        "close",
        "close_timer",
        "connected_mono",
        "drain_timer",
        "drain_waiters",
        "fragment_size",
        "fragment_type",
        "fragments",
        "gateway",
        "inflight",
        "info",
        "last_active_mono",
        "limit",
        "paused",
        "peer_close",
        "touched",
        "transport",
    )

    def __init__(self, gateway: Gateway, info: ConnectionContext, limit: int) -> None:
        self.gateway = gateway
        self.info = info
        self.transport: WSTransport | None = None
        self.connected_mono = time.monotonic()
        self.last_active_mono = self.connected_mono
        self.touched = False
        #: The close the gateway started, if any (idle, duration, DeleteConnection, ...).
        self.close: Close | None = None
        #: The close frame the client sent, if it started the close.
        self.peer_close: Close | None = None
        self.close_timer: asyncio.TimerHandle | None = None
        #: Messages dispatched and not finished; at `limit` the socket is not read.
        self.inflight = 0
        self.limit = limit
        self.paused = False
        #: The transport's write buffer is over its high-water mark.
        self.backed_up = False
        #: What `send`s wait on while backed up (done when the client catches up), one per
        #: sender (a sender cancelled must not cancel the others' wait), and the timer that
        #: drops a client that does not catch up (`Limits.max_send_wait`).
        self.drain_waiters: list[asyncio.Future[None]] | None = None
        self.drain_timer: asyncio.TimerHandle | None = None
        self.fragments: list[bytes] | None = None
        self.fragment_type = TEXT
        self.fragment_size = 0

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

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        try:
            self.gateway._receive(self, transport, frame)
        except Exception:  # a gateway bug: close this connection (1011), keep the rest
            log.exception("connection %s: handling a frame failed", self.info.connection_id)
            self.gateway._close(self, INTERNAL_ERROR)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.gateway._disconnected(self, transport)

    def pause_writing(self) -> None:
        """The client reads slower than we write: `send`s now wait for it to catch up, and
        `Gateway._write` watches the buffer (`Limits.max_send_buffer_bytes`)."""
        self.backed_up = True

    def resume_writing(self) -> None:
        """The client caught up: the waiting `send`s go on."""
        self.backed_up = False
        self.release_senders(gone=False)

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


class Gateway:
    """One API stage of an App: connections, routing, and the connections API.

    With `peers`, this gateway is one worker of several (`server/peers.py`): it holds its
    own connections and their part of the table, and asks the other workers about theirs.
    """

    def __init__(
        self,
        app: App,
        store: Store,
        *,
        stage: str = "dev",
        limits: Limits | None = None,
        api_id: str | None = None,
        stage_variables: Mapping[str, str] | None = None,
        handler_threads: int = 64,
        peers: Peers | None = None,
    ) -> None:
        self.app = app
        self.peers = peers
        #: What this gateway does for the other workers (`server/peers.py`), by name; also
        #: how `_on_owner` runs an operation for a connection held here.
        self._operations_here: dict[str, Callable[..., Awaitable[Any]]] = {
            "send": self._send_here,
            "fan_out": self._fan_out_here,
            "subscribe": store.subscribe,
            "unsubscribe": store.unsubscribe,
            "info": self._info_here,
            "disconnect": self._disconnect_here,
            "ids": store.connection_ids,
        }
        self.store = store
        self.stage = stage
        self.limits = limits or Limits()
        self.api_id = api_id or ids.api_id(os.urandom)
        self.node = ids.event_id(os.urandom)
        # Ids are drawn on the event loop only; a pool per gateway, so never shared by a fork.
        self._new_id = ids.IdPool(os.urandom)
        self.stage_variables = dict(stage_variables) if stage_variables else None
        self.live: dict[str, LiveConnection] = {}
        self._threads = ThreadPoolExecutor(handler_threads, thread_name_prefix="wsgate-handler")
        #: Tasks that open or close connections (`$connect`, `$disconnect`); stop() awaits them.
        self.connection_tasks: set[asyncio.Task[Any]] = set()
        #: Running invocations and when each must end; the sweeper enforces it. Also what
        #: keeps message tasks alive (the loop only keeps weak references to tasks).
        self._deadlines: dict[asyncio.Task[Any], float] = {}
        self._timed_out: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._binding: connection_api.Binding | None = None
        #: What every successful `send` returns: a future already done (awaiting it is
        #: free, and a done future stays done whoever awaits or cancels it).
        self._sent: asyncio.Future[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._touching: asyncio.Task[None] | None = None
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store and start the idle/duration sweeper."""
        self._loop = asyncio.get_running_loop()
        await self.store.open()
        if self.peers is not None:
            await self.peers.start(self._operations_here)
        self._binding = connection_api.Binding(self, self._loop)
        self._sent = self._loop.create_future()
        self._sent.set_result(None)
        connection_api.bind_default(self._binding)
        self._sweeper = asyncio.create_task(self._sweep(), name="wsgate-sweeper")

    async def stop(self) -> None:
        """Close every connection with 1001 (running `$disconnect`), then the store."""
        self._stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._touching is not None:
            await asyncio.wait([self._touching])
        for conn in list(self.live.values()):
            self._close(conn, SHUTDOWN)
        deadline = time.monotonic() + CLOSE_TIMEOUT + 0.5
        while self.live and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.live.values()):
            if conn.transport is not None:
                conn.transport.disconnect(graceful=False)
        # Let $disconnect and in-flight messages finish (within a handler timeout), then
        # cancel what is left, so no task outlives the gateway.
        await asyncio.sleep(0)
        pending: set[asyncio.Task[Any]] = self.connection_tasks | self._deadlines.keys()
        if pending:
            _, pending = await asyncio.wait(pending, timeout=self.limits.handler_timeout + 1)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1)
        if self.peers is not None:
            await self.peers.stop()
        await self.store.close()
        self._threads.shutdown(wait=False, cancel_futures=True)
        if connection_api._fallback is self._binding:
            connection_api.bind_default(None)

    async def _sweep(self) -> None:
        interval = self.limits.sweep_interval()
        while True:
            await asyncio.sleep(interval)
            try:
                await self._sweep_once()
            except Exception:
                log.exception("sweeper failed; retrying")

    async def _sweep_once(self) -> None:
        now = time.monotonic()
        for task, deadline in list(self._deadlines.items()):
            if task.done():  # cancelled before it started: its own cleanup never ran
                self._forget_task(task)
            elif now >= deadline and task not in self._timed_out:
                self._timed_out.add(task)
                task.cancel()
        activity: dict[str, int] = {}
        for conn in list(self.live.values()):
            if conn.touched:
                conn.touched = False
                activity[conn.info.connection_id] = conn.last_active_ms
            if conn.close is None:
                close = self.limits.expired(now, conn.connected_mono, conn.last_active_mono)
                if close is not None:
                    self._close(conn, close)
        if activity and (self._touching is None or self._touching.done()):
            # In the background: a slow store (DynamoDB, thousands of rows) must not delay
            # the next sweep's timeouts. Activity not written yet goes in the next batch.
            self._touching = asyncio.create_task(self._touch(activity))
        elif activity:
            for connection_id in activity:
                waiting = self.live.get(connection_id)
                if waiting is not None:
                    waiting.touched = True  # still writing the last batch: next time

    async def _touch(self, activity: dict[str, int]) -> None:
        try:
            await self.store.touch(activity)
        except Exception:
            log.exception("writing lastActiveAt failed; retrying with the next batch")

    # -- invoking handlers -------------------------------------------------------------

    async def invoke(self, route: Route, event: Event) -> Any:
        """Run a handler with a Lambda-like context, the connections API bound, and a timeout.

        Async handlers run on the event loop; sync ones on a worker thread, so they never
        block it. Raises HandlerFailed or HandlerTimedOut. A timed-out sync handler's thread
        runs on (Python cannot stop it), as a Lambda invocation API Gateway gave up on.
        Messages take a shorter path to the same handling (`_handle_message`).
        """
        assert self._binding is not None
        context = self._lambda_context()
        # The sweeper cancels tasks past their deadline: a dict entry per call costs far
        # less than a timer per call (asyncio.timeout was a tenth of an echo's time).
        task = asyncio.current_task(self._loop)
        if task is not None:
            self._deadlines[task] = context.deadline
        try:
            return await call_handler(route, event, context, self._binding, self._threads)
        except asyncio.CancelledError:
            if not self._timed_out_here():
                raise
            self._log_timeout(route, event)
            raise HandlerTimedOut from None
        except Exception as exc:
            self._log_failure(route, event, context)
            raise HandlerFailed from exc
        finally:
            self._forget_task(task)

    def _lambda_context(self) -> LambdaContext:
        deadline = time.monotonic() + self.limits.handler_timeout
        return LambdaContext(function_name=self.app.name, deadline=deadline)

    def _timed_out_here(self) -> bool:
        """Whether the cancellation being handled is the sweeper's, for a handler timeout."""
        task = asyncio.current_task(self._loop)
        if task is None or task not in self._timed_out:
            return False
        self._timed_out.discard(task)
        task.uncancel()
        return True

    def _log_timeout(self, route: Route, event: Event) -> None:
        handler_log.error(
            "%s handler %s timed out after %ss (connection %s)",
            route.key,
            route.name,
            self.limits.handler_timeout,
            event.connection_id,
        )

    def _log_failure(self, route: Route, event: Event, context: LambdaContext) -> None:
        handler_log.error(
            "%s handler %s failed (connection %s, request %s)",
            route.key,
            route.name,
            event.connection_id,
            context.aws_request_id,
            exc_info=True,
        )

    # -- the WebSocket lifecycle -------------------------------------------------------

    async def open_connection(
        self, head: RequestHead, transport: asyncio.Transport, rest: bytes
    ) -> None:
        """Serve a WebSocket upgrade request: `$connect`, then the 101 and the socket.

        The front door paused reading; picows resumes it once it owns the socket.
        """
        try:
            check_upgrade(head)
        except HandshakeError as refusal:
            _refuse(transport, refusal.status, refusal.message, refusal.headers)
            return
        if self._stopping:
            _refuse(transport, 503, "Service Unavailable")
            return
        info = self._connection_context(head, transport)
        subprotocol = None
        connect_route = self.app.routes.get(CONNECT)
        if connect_route is not None:
            accepted, subprotocol = await self._run_connect(connect_route, head, info, transport)
            if not accepted:
                return
        record = ConnectionRecord(
            connection_id=info.connection_id,
            connected_at=info.connected_at,
            last_active_at=info.connected_at,
            source_ip=info.source_ip,
            user_agent=info.user_agent,
            stage=info.stage,
            domain_name=info.domain_name,
            node=self.node,
            authorizer=info.authorizer,
        )
        try:
            await self.store.add_connection(record)
        except Exception:  # the connection never opened: no `$disconnect` for it
            log.exception("cannot store connection %s; refusing it", info.connection_id)
            _refuse(transport, 500, "Internal server error")
            return
        if self._stopping:  # stopped while `$connect` ran: this one never opens
            await self.store.remove_connection(info.connection_id)
            _refuse(transport, 503, "Service Unavailable")
            return
        conn = LiveConnection(self, info, self.limits.max_concurrent_messages)
        self.live[info.connection_id] = conn
        if not transport.is_closing():
            hand_to_picows(
                transport,
                head,
                rest,
                conn,
                # A frame is never more than a message: one frame may be a whole message.
                max_frame_bytes=min(self.limits.max_frame_bytes, self.limits.max_message_bytes),
                subprotocol=subprotocol,
            )
        if conn.transport is None:  # the client left during `$connect`
            transport.abort()
            self._disconnected(conn, None)

    def _connection_context(
        self, head: RequestHead, transport: asyncio.Transport
    ) -> ConnectionContext:
        peer = transport.get_extra_info("peername")
        return ConnectionContext(
            connection_id=self._new_connection_id(),
            connected_at=_now_ms(),
            source_ip=str(peer[0]) if peer else "",
            user_agent=head.header("User-Agent"),
            domain_name=head.header("Host") or "",
            stage=self.stage,
            api_id=self.api_id,
        )

    async def _run_connect(
        self, route: Route, head: RequestHead, info: ConnectionContext, transport: asyncio.Transport
    ) -> tuple[bool, str | None]:
        """Run `$connect`; answer a refusal; return (accepted, the subprotocol to answer)."""
        request_id = self._new_id()
        _, colon, port = info.domain_name.rpartition(":")
        event = connect_event(
            info,
            headers=head.headers,
            query=head.query,
            gateway_headers={
                "X-Amzn-Trace-Id": f"Root=1-{int(time.time()):08x}-{os.urandom(12).hex()}",
                "X-Forwarded-For": info.source_ip,
                "X-Forwarded-Port": port if colon and port.isdigit() else "80",
                "X-Forwarded-Proto": "http",
            },
            stage_variables=self.stage_variables,
            request_id=request_id,
            now_ms=_now_ms(),
        )
        try:
            result = await self.invoke(route, event)
        except HandlerTimedOut:
            _refuse(transport, 504, "Endpoint request timed out", request_id=request_id)
            return False, None
        except HandlerFailed:
            _refuse(transport, 502, "Internal server error", request_id=request_id)
            return False, None
        decision = connect_decision(result)
        if decision.problem is not None:
            handler_log.error("$connect handler %s: %s", route.name, decision.problem)
        if not decision.accepted:
            text = "Internal server error" if decision.status == 502 else _phrase(decision.status)
            _refuse(transport, decision.status, text, request_id=request_id)
            return False, None
        return True, decision.subprotocol

    async def _run_disconnect(self, info: ConnectionContext, close: Close) -> None:
        route = self.app.routes.get(DISCONNECT)
        if route is None:
            return
        event = disconnect_event(
            info,
            status_code=close.code,
            reason=close.reason,
            stage_variables=self.stage_variables,
            request_id=self._new_id(),
            now_ms=_now_ms(),
        )
        try:
            await self.invoke(route, event)
        except (HandlerFailed, HandlerTimedOut):
            pass  # logged by invoke(); there is no client left to tell

    def _receive(self, conn: LiveConnection, transport: WSTransport, frame: WSFrame) -> None:
        """One frame from the client (picows' callback: must not raise, must not block)."""
        kind = frame.msg_type
        if kind is TEXT and frame.fin and conn.fragments is None:
            try:
                body = frame.get_payload_as_utf8_text()
            except UnicodeDecodeError:
                self._close(conn, INVALID_TEXT)
                return
            self._message(conn, body, False)
        elif kind is TEXT or kind is BINARY or kind is CONTINUATION:
            self._fragment(conn, kind, frame)
        elif kind is CLOSE:
            if conn.close is None and conn.peer_close is None:
                code = int(frame.get_close_code().value)
                reason = frame.get_close_reason() or ""
                conn.peer_close = Close(code or CloseCode.NO_STATUS, reason)
                if code:
                    _send_close(transport, code, reason)
                else:
                    transport.send(CLOSE, b"")
            transport.disconnect()  # graceful: after what is buffered, unless it never drains
            if conn.close_timer is None:
                assert self._loop is not None
                conn.close_timer = self._loop.call_later(CLOSE_TIMEOUT, transport.disconnect, False)

    def _fragment(self, conn: LiveConnection, kind: WSMsgType, frame: WSFrame) -> None:
        """Binary messages, and messages sent in several frames."""
        if kind is not CONTINUATION:
            if conn.fragments is not None:
                self._close(conn, PROTOCOL_ERROR)
                return
            conn.fragments = []
            conn.fragment_type = kind
            conn.fragment_size = 0
        elif conn.fragments is None:
            self._close(conn, PROTOCOL_ERROR)
            return
        conn.fragment_size += frame.payload_size
        if conn.fragment_size > self.limits.max_message_bytes:
            conn.fragments = None
            self._close(conn, MESSAGE_TOO_BIG)
            return
        conn.fragments.append(frame.get_payload_as_bytes())
        if not frame.fin:
            return
        data = b"".join(conn.fragments)
        conn.fragments = None
        if conn.fragment_type is TEXT:
            try:
                self._message(conn, data.decode("utf-8"), False)
            except UnicodeDecodeError:
                self._close(conn, INVALID_TEXT)
        elif self.app.binary == "base64":
            self._message(conn, base64.b64encode(data).decode("ascii"), True)
        else:
            self._close(conn, BINARY_NOT_SUPPORTED)

    def _message(self, conn: LiveConnection, body: str, is_base64: bool) -> None:
        """Route a message and start its handler; stop reading when too many are running."""
        if conn.close is not None:
            return  # closing: API Gateway drops what arrives after its close frame
        conn.last_active_mono = time.monotonic()
        conn.touched = True
        parsed = NOT_JSON if is_base64 else parse_body(body)
        route_key = self.app.selector.select(parsed, self.app.routes)
        conn.inflight += 1
        if conn.inflight >= conn.limit and not conn.paused:
            conn.paused = True
            assert conn.transport is not None
            conn.transport.underlying_transport.pause_reading()
        assert self._loop is not None
        task = _start_task(
            self._loop, self._handle_message(conn, route_key, body, parsed, is_base64)
        )
        if task.done():
            return  # finished without waiting (an eager task, Python 3.12+)
        # The message's own `finally` forgets it (a done callback would cost a turn of the loop).
        self._deadlines[task] = time.monotonic() + self.limits.handler_timeout

    def _message_done(self, conn: LiveConnection) -> None:
        conn.inflight -= 1
        if conn.paused and conn.inflight < conn.limit:
            conn.paused = False
            transport = conn.transport
            if transport is not None and not transport.is_disconnected:
                transport.underlying_transport.resume_reading()

    def _disconnected(self, conn: LiveConnection, transport: WSTransport | None) -> None:
        """The socket is gone: forget it now; the store and `$disconnect` follow in a task."""
        if conn.close_timer is not None:
            conn.close_timer.cancel()
        conn.release_senders(gone=True)  # what they sent is lost with the socket
        close = conn.close or conn.peer_close
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
        conn.close = close
        if self.live.get(conn.info.connection_id) is conn:
            del self.live[conn.info.connection_id]
        assert self._loop is not None
        task = self._loop.create_task(self._forget(conn.info, close))
        self.connection_tasks.add(task)
        task.add_done_callback(self.connection_tasks.discard)

    async def _forget(self, info: ConnectionContext, close: Close) -> None:
        await self.store.remove_connection(info.connection_id)
        await self._run_disconnect(info, close)

    def _forget_task(self, task: asyncio.Task[Any] | None) -> None:
        if task is not None:
            self._deadlines.pop(task, None)
            self._timed_out.discard(task)

    async def _handle_message(
        self, conn: LiveConnection, route_key: str | None, body: str, parsed: Any, is_base64: bool
    ) -> None:
        info = conn.info
        request_id = self._new_id()
        try:
            if route_key is None:
                self._reply(conn, error_frame(FORBIDDEN, info.connection_id, request_id))
                return
            route = self.app.routes[route_key]
            event = message_event(
                info,
                route_key=route_key,
                body=body,
                is_base64=is_base64,
                stage_variables=self.stage_variables,
                message_id=self._new_id(),
                request_id=request_id,
                now_ms=_now_ms(),
                body_json=parsed,
            )
            context = self._lambda_context()
            # invoke()'s handling, inlined: one coroutine less per message. The deadline
            # of this message's task is registered by `_message`.
            assert self._binding is not None
            reply: str | bytes | None
            try:
                result = await call_handler(route, event, context, self._binding, self._threads)
            except asyncio.CancelledError:
                if not self._timed_out_here():
                    raise
                self._log_timeout(route, event)
                reply = error_frame(ENDPOINT_TIMED_OUT, info.connection_id, request_id)
            except Exception:
                self._log_failure(route, event, context)
                reply = error_frame(INTERNAL_SERVER_ERROR, info.connection_id, request_id)
            else:
                reply = None
                if route.return_response:
                    try:
                        reply = route_reply(result)
                    except (TypeError, ValueError):  # Lambda's Runtime.MarshalError
                        handler_log.error(
                            "%s handler %s returned a value that is not JSON-serialisable",
                            route.key,
                            route.name,
                            exc_info=True,
                        )
                        reply = error_frame(INTERNAL_SERVER_ERROR, info.connection_id, request_id)
            if reply is not None:
                self._reply(conn, reply)
        finally:
            self._message_done(conn)
            self._forget_task(asyncio.current_task(self._loop))

    def _reply(self, conn: LiveConnection, payload: str | bytes) -> None:
        """Send on the caller's own socket; a caller that left meanwhile is not an error."""
        if isinstance(payload, str):
            self._write(conn, TEXT, payload.encode())
        else:
            self._write(conn, BINARY, payload)

    def _write(
        self, conn: LiveConnection, kind: WSMsgType, data: bytes, wire: bytes | None = None
    ) -> bool:
        """Queue a frame on an open connection (picows writes it now, or asyncio buffers
        it); False if the connection is closing or closed. `wire`: the whole frame of a
        big message, made once by a fan-out (see `_wire`)."""
        if not conn.is_open:
            return False
        transport = conn.transport
        assert transport is not None
        if len(data) <= _PICOWS_COPY_LIMIT:
            transport.send(kind, data)
        else:
            transport.underlying_transport.write(wire or _wire(kind, data))
        conn.last_active_mono = time.monotonic()
        conn.touched = True
        if conn.backed_up:  # only then is the buffer worth measuring
            size = transport.underlying_transport.get_write_buffer_size()
            if size > self.limits.max_send_buffer_bytes:
                self._drop_slow(conn, f"{size} bytes wait")
                return False
        return True

    def _drop_slow(self, conn: LiveConnection, why: str) -> None:
        """Drop a client that is not reading what is sent to it (1006 to `$disconnect`,
        unless it had started closing: its own close code then)."""
        transport = conn.transport
        if transport is None or transport.is_disconnected:
            return
        log.warning(
            "dropping connection %s: %s for a client that is not reading",
            conn.info.connection_id,
            why,
        )
        if conn.close is None and conn.peer_close is None:
            conn.close = SLOW_CONSUMER
        transport.disconnect(graceful=False)

    def _wait_for_drain(self, conn: LiveConnection) -> asyncio.Future[None]:
        """What a `send` returns while the client's buffer is full: done once it reads (or
        is dropped for not reading within `Limits.max_send_wait`)."""
        assert self._loop is not None
        waiter = self._loop.create_future()
        if conn.drain_waiters is None:
            conn.drain_waiters = [waiter]
            wait = self.limits.max_send_wait
            conn.drain_timer = self._loop.call_later(
                wait, self._drop_slow, conn, f"sends waited {wait:g} s"
            )
        else:
            conn.drain_waiters.append(waiter)
        return waiter

    def _close(self, conn: LiveConnection, close: Close) -> None:
        """Start closing: send the close frame; picows reports the end (`_disconnected`)."""
        transport = conn.transport
        if conn.close is not None or conn.peer_close is not None or transport is None:
            return
        conn.close = close
        if transport.is_disconnected:
            return
        _send_close(transport, close.code, close.reason)
        # Not a graceful disconnect: that would wait for a client that stopped reading.
        assert self._loop is not None
        conn.close_timer = self._loop.call_later(CLOSE_TIMEOUT, transport.disconnect, False)

    # -- ConnectionsAPI: what handlers and the management API call ---------------------

    async def _gone(self, connection_id: str) -> GoneError:
        """A connection that is not live here: drop its record and subscriptions, as on 410.

        Only this node's records are dropped: in a store shared by several gateways (DynamoDB)
        a record of another node belongs to a socket this gateway cannot see. Delivering to
        it needs cross-node routing, which wsgate does not do yet; it is reported as gone.
        """
        record = await self.store.get_connection(connection_id)
        if record is None or record.node == self.node:
            await self.store.remove_connection(connection_id)
        else:
            log.warning(
                "connection %s is held by gateway node %s; cross-node delivery is not supported",
                connection_id,
                record.node,
            )
        return GoneError(connection_id)

    async def _raise_gone(self, connection_id: str) -> None:
        raise await self._gone(connection_id)

    def _new_connection_id(self) -> str:
        new = self._new_id()
        return new if self.peers is None else ID_ALPHABET[self.peers.worker] + new[1:]

    def _elsewhere(self, connection_id: str) -> int | None:
        """The other worker that holds `connection_id`, if one does."""
        if self.peers is None:
            return None
        worker = owner(connection_id)
        return worker if worker != self.peers.worker and 0 <= worker < self.peers.count else None

    def send(self, connection_id: str, data: Data) -> Awaitable[None]:
        """Write now, without a task: the result is a done future (or the 410 path)."""
        conn = self.live.get(connection_id)
        if conn is None:
            worker = self._elsewhere(connection_id)
            if worker is not None:
                return self._send_elsewhere(worker, connection_id, data)
            return self._raise_gone(connection_id)
        try:
            is_text, frame = outbound_frame(data, self.limits.max_message_bytes)
        except PayloadTooLargeError as exc:
            return self._failed(exc)
        if not self._write(conn, TEXT if is_text else BINARY, frame):
            return self._failed(GoneError(connection_id))
        if conn.backed_up:
            return self._wait_for_drain(conn)
        assert self._sent is not None
        return self._sent

    def send_from_thread(self, connection_id: str, data: Data) -> bool:
        """A sync handler's send: framed on its thread, written by the loop, not awaited.

        The connection must be open here now, and not backed up; if it closes before the
        loop writes, the message is dropped, as a `PostToConnection` answered 200 just
        before a close is on AWS. Anything else (a connection on another worker, gone: 410,
        a client not keeping up: wait for it) takes `send`.
        """
        conn = self.live.get(connection_id)  # one dict read: safe from another thread
        if conn is None or not conn.is_open or conn.backed_up:
            return False  # a backed-up client: `send` waits for it to read
        is_text, frame = outbound_frame(data, self.limits.max_message_bytes)
        # Every FAST_SEND_WINDOW bytes the thread takes the waiting path once, which runs
        # after its queued writes: a thread never runs far ahead of what the loop wrote.
        queued = getattr(_thread_sends, "bytes", 0) + len(frame)
        if queued > FAST_SEND_WINDOW:
            _thread_sends.bytes = 0
            return False
        _thread_sends.bytes = queued
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._write, conn, TEXT if is_text else BINARY, frame)
        return True

    def _failed(self, exc: Exception) -> asyncio.Future[None]:
        assert self._loop is not None
        failed = self._loop.create_future()
        failed.set_exception(exc)
        return failed

    async def _send_elsewhere(self, worker: int, connection_id: str, data: Data) -> None:
        assert self.peers is not None
        is_text, frame = outbound_frame(data, self.limits.max_message_bytes)
        if not await self.peers.call(worker, "send", connection_id, is_text, frame):
            raise GoneError(connection_id)

    async def _send_here(self, connection_id: str, is_text: bool, frame: bytes) -> bool:
        conn = self.live.get(connection_id)
        if conn is None:
            await self._gone(connection_id)
            return False
        # No waiting for a backed-up client here: the asking worker's call has a timeout of
        # its own. Across workers, a client that does not read meets max_send_buffer_bytes.
        return self._write(conn, TEXT if is_text else BINARY, frame)

    async def broadcast(self, data: Data, exclude: Iterable[str] = ()) -> int:
        return await self._fan_out(None, data, exclude)

    async def publish(self, topic: str, data: Data, exclude: Iterable[str] = ()) -> int:
        return await self._fan_out(topic, data, exclude)

    async def _fan_out(self, topic: str | None, data: Data, exclude: Iterable[str]) -> int:
        """Deliver to `topic`'s subscribers (None: everyone), here and on every other worker."""
        is_text, frame = outbound_frame(data, self.limits.max_message_bytes)
        skip = tuple(exclude)
        if self.peers is None:
            return await self._fan_out_here(topic, is_text, frame, skip)
        here, elsewhere = await asyncio.gather(
            self._fan_out_here(topic, is_text, frame, skip),
            self.peers.call_others("fan_out", topic, is_text, frame, skip),
        )
        return int(here) + sum(int(count) for count in elsewhere)

    async def _fan_out_here(
        self, topic: str | None, is_text: bool, frame: bytes, exclude: tuple[str, ...]
    ) -> int:
        if topic is None:
            targets = await self.store.connection_ids()
        else:
            targets = await self.store.subscribers(topic)
        kind = TEXT if is_text else BINARY
        wire = _wire(kind, frame) if len(frame) > _PICOWS_COPY_LIMIT else None
        skip = set(exclude)
        live = self.live
        write = self._write
        delivered = 0
        gone: list[str] = []
        for connection_id in targets:
            if connection_id in skip:
                continue
            conn = live.get(connection_id)
            if conn is None:
                gone.append(connection_id)
            elif write(conn, kind, frame, wire):
                delivered += 1
        for connection_id in gone:
            await self._gone(connection_id)
        return delivered

    async def _on_owner(self, operation: str, connection_id: str, *args: Any) -> Any:
        """Run `operation` where `connection_id` lives: here, or on the worker holding it."""
        worker = self._elsewhere(connection_id)
        if worker is not None:
            assert self.peers is not None
            return await self.peers.call(worker, operation, connection_id, *args)
        return await self._operations_here[operation](connection_id, *args)

    async def subscribe(self, connection_id: str, topic: str) -> None:
        if not await self._on_owner("subscribe", connection_id, topic):
            raise GoneError(connection_id)

    async def unsubscribe(self, connection_id: str, topic: str) -> bool:
        return bool(await self._on_owner("unsubscribe", connection_id, topic))

    async def info(self, connection_id: str) -> ConnectionInfo:
        found: ConnectionInfo | None = await self._on_owner("info", connection_id)
        if found is None:
            raise GoneError(connection_id)
        return found

    async def _info_here(self, connection_id: str) -> ConnectionInfo | None:
        conn = self.live.get(connection_id)
        if conn is None:
            return None
        info = conn.info
        return ConnectionInfo(
            connection_id=connection_id,
            connected_at=info.connected_at,
            last_active_at=conn.last_active_ms,
            source_ip=info.source_ip,
            user_agent=info.user_agent,
            stage=info.stage,
            topics=tuple(await self.store.topics(connection_id)),
            authorizer=info.authorizer,
        )

    async def disconnect(self, connection_id: str) -> None:
        if not await self._on_owner("disconnect", connection_id):
            raise GoneError(connection_id)

    async def _disconnect_here(self, connection_id: str) -> bool:
        conn = self.live.get(connection_id)
        if conn is None or not conn.is_open:
            return False
        self._close(conn, CLOSED_BY_MANAGEMENT_API)
        return True

    async def connection_ids(self) -> list[str]:
        """Every open connection's id, on every worker (the management API's list)."""
        ids = await self.store.connection_ids()
        if self.peers is not None:
            for more in await self.peers.call_others("ids"):
                ids.extend(more)
        return ids


if sys.version_info >= (3, 12):

    def _start_task(
        loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, None]
    ) -> asyncio.Task[None]:
        """A message's task, run at once up to its first wait: an echo whose send is done
        at once finishes here, and is never scheduled."""
        return asyncio.Task(coroutine, loop=loop, eager_start=True)

else:

    def _start_task(
        loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, None]
    ) -> asyncio.Task[None]:
        """A message's task (Python 3.11 has no eager tasks: it runs on the next turn).

        Handlers need a real current task from their first line (`asyncio.timeout`,
        `TaskGroup` and aiohttp's client all ask for it), so a task it is.
        """
        return loop.create_task(coroutine)


#: Up to this size picows copies a frame into its own buffer and writes it in one piece.
_PICOWS_COPY_LIMIT = 8192


def _wire(kind: WSMsgType, data: bytes) -> bytes:
    """An unmasked, final server frame (RFC 6455 section 5.2), header and payload.

    For messages over `_PICOWS_COPY_LIMIT`: picows hands those to `transport.writelines`,
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


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Forbidden"


def _refuse(
    transport: asyncio.Transport,
    status: int,
    message: str,
    headers: tuple[tuple[str, str], ...] = (),
    *,
    request_id: str | None = None,
) -> None:
    """Answer the upgrade request with an HTTP error, API Gateway's JSON body, and close."""
    if request_id is not None:
        headers = (*headers, ("x-amzn-RequestId", request_id))
    refuse(transport, status, _phrase(status), message, headers)


__all__ = ["Gateway", "HandlerFailed", "HandlerTimedOut", "LiveConnection"]
