"""The gateway: runs an App behind real WebSockets, the way API Gateway runs Lambda routes.

Per connection: `$connect` runs while the upgrade request waits (so no message can arrive
before it returns); a 2xx accepts, anything else answers the handshake with that status.
Then each text message is routed and dispatched as its own task (AWS runs invocations of
one connection concurrently); `max_concurrent_messages` bounds that, after which the
socket is not read until a slot frees. When the socket closes, for any reason, the
connection leaves the store and `$disconnect` runs with the close code and reason.

Handlers reach other connections through `wsgate.connections`, which this class serves
(`ConnectionsAPI`). The aiohttp specifics stay in this module and `server/http.py`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from collections.abc import Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from wsgate import connection_api
from wsgate.app import App, Event, Route
from wsgate.connection_api import ConnectionInfo, Data, StoreBackedConnections
from wsgate.context import LambdaContext
from wsgate.core import ids
from wsgate.core.events import ConnectionContext, connect_event, disconnect_event, message_event
from wsgate.core.limits import (
    ABNORMAL_CLOSURE,
    BINARY_NOT_SUPPORTED,
    CLOSED_BY_MANAGEMENT_API,
    MESSAGE_TOO_BIG,
    SHUTDOWN,
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
    outbound_payload,
    route_reply,
)
from wsgate.core.routing import CONNECT, DISCONNECT, NOT_JSON, parse_body
from wsgate.dispatch import call_handler
from wsgate.exceptions import GoneError
from wsgate.store.base import ConnectionRecord, Store

log = logging.getLogger("wsgate.gateway")
handler_log = logging.getLogger("wsgate.handler")


class HandlerFailed(Exception):
    """The handler raised; the original exception is the cause."""


class HandlerTimedOut(Exception):
    """The handler ran past the handler timeout."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class LiveConnection:
    """An open socket and what the gateway tracks about it."""

    __slots__ = (
        "close",
        "connected_mono",
        "info",
        "last_active_mono",
        "last_active_ms",
        "slots",
        "touched",
        "ws",
    )

    def __init__(self, info: ConnectionContext, ws: web.WebSocketResponse, limit: int) -> None:
        self.info = info
        self.ws = ws
        self.connected_mono = time.monotonic()
        self.last_active_mono = self.connected_mono
        self.last_active_ms = info.connected_at
        self.touched = False
        #: The close the gateway started, if any (idle, duration, DeleteConnection, ...).
        self.close: Close | None = None
        self.slots = asyncio.Semaphore(limit)

    def mark_active(self) -> None:
        self.last_active_mono = time.monotonic()
        self.last_active_ms = _now_ms()
        self.touched = True


class Gateway(StoreBackedConnections):
    """One API stage of an App: connections, routing, and the connections API."""

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
    ) -> None:
        self.app = app
        self.store = store
        self.stage = stage
        self.limits = limits or Limits()
        self.api_id = api_id or ids.api_id(os.urandom)
        self.node = ids.event_id(os.urandom)
        # Ids are drawn on the event loop only; a pool per gateway, so never shared by a fork.
        self._random = ids.RandomPool(os.urandom)
        self.stage_variables = dict(stage_variables) if stage_variables else None
        self.live: dict[str, LiveConnection] = {}
        self._threads = ThreadPoolExecutor(handler_threads, thread_name_prefix="wsgate-handler")
        self._connection_tasks: set[asyncio.Task[Any]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._binding: connection_api.Binding | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store and start the idle/duration sweeper."""
        self._loop = asyncio.get_running_loop()
        await self.store.open()
        self._binding = connection_api.Binding(self, self._loop)
        connection_api.bind_default(self._binding)
        self._sweeper = asyncio.create_task(self._sweep(), name="wsgate-sweeper")

    async def stop(self) -> None:
        """Close every connection with 1001 (running `$disconnect`), then the store."""
        self._stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.live.values()):
            await self._close(conn, SHUTDOWN)
        # Let $disconnect and in-flight messages finish (within a handler timeout), then
        # cancel what is left, so no task outlives the gateway.
        pending: set[asyncio.Task[Any]] = self._connection_tasks | self._tasks
        if pending:
            _, pending = await asyncio.wait(pending, timeout=self.limits.handler_timeout + 1)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1)
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
        activity: dict[str, int] = {}
        for conn in list(self.live.values()):
            if conn.touched:
                conn.touched = False
                activity[conn.info.connection_id] = conn.last_active_ms
            if conn.close is None:
                close = self.limits.expired(now, conn.connected_mono, conn.last_active_mono)
                if close is not None:
                    self._spawn(self._close(conn, close))
        if activity:
            await self.store.touch(activity)

    # -- invoking handlers -------------------------------------------------------------

    async def invoke(self, route: Route, event: Event) -> Any:
        """Run a handler with a Lambda-like context, the connections API bound, and a timeout.

        Async handlers run on the event loop; sync ones on a worker thread, so they never
        block it. Raises HandlerFailed or HandlerTimedOut. A timed-out sync handler's thread
        runs on (Python cannot stop it), as a Lambda invocation API Gateway gave up on.
        """
        assert self._binding is not None and self._loop is not None
        timeout = self.limits.handler_timeout
        context = LambdaContext(function_name=self.app.name, deadline=time.monotonic() + timeout)
        try:
            async with asyncio.timeout(timeout):
                return await call_handler(route, event, context, self._binding, self._threads)
        except TimeoutError:
            handler_log.error(
                "%s handler %s timed out after %ss (connection %s)",
                route.key,
                route.name,
                timeout,
                event.connection_id,
            )
            raise HandlerTimedOut from None
        except Exception as exc:
            handler_log.error(
                "%s handler %s failed (connection %s, request %s)",
                route.key,
                route.name,
                event.connection_id,
                context.aws_request_id,
                exc_info=True,
            )
            raise HandlerFailed from exc

    # -- the WebSocket lifecycle -------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one WebSocket upgrade request, from `$connect` to `$disconnect`."""
        if self._stopping:
            return web.json_response({"message": "Service Unavailable"}, status=503)
        task = asyncio.current_task()
        assert task is not None
        self._connection_tasks.add(task)
        try:
            return await self._handle(request)
        finally:
            self._connection_tasks.discard(task)

    def _connection_context(self, request: web.Request) -> ConnectionContext:
        return ConnectionContext(
            connection_id=ids.event_id(self._random),
            connected_at=_now_ms(),
            source_ip=request.remote or "",
            user_agent=request.headers.get("User-Agent"),
            domain_name=request.host,
            stage=self.stage,
            api_id=self.api_id,
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        info = self._connection_context(request)
        subprotocol = None
        connect_route = self.app.routes.get(CONNECT)
        if connect_route is not None:
            refusal, subprotocol = await self._run_connect(connect_route, request, info)
            if refusal is not None:
                return refusal

        ws = web.WebSocketResponse(
            protocols=(subprotocol,) if subprotocol else (),
            max_msg_size=self.limits.max_message_bytes,
            autoping=True,
        )
        conn = LiveConnection(info, ws, self.limits.max_concurrent_messages)
        close = ABNORMAL_CLOSURE
        registered = False
        try:
            await ws.prepare(request)
            await self.store.add_connection(
                ConnectionRecord(
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
            )
            self.live[info.connection_id] = conn
            registered = True
            close = await self._read(conn)
        except (ConnectionError, aiohttp.ClientError):
            close = conn.close or ABNORMAL_CLOSURE
        finally:
            self.live.pop(info.connection_id, None)
            if not ws.closed:
                await ws.close(code=close.code, message=close.reason.encode())
            if registered:
                await self.store.remove_connection(info.connection_id)
            await self._run_disconnect(info, close)
        return ws

    async def _run_connect(
        self, route: Route, request: web.Request, info: ConnectionContext
    ) -> tuple[web.Response | None, str | None]:
        """Run `$connect`; return (a refusal response or None, the subprotocol to answer)."""
        request_id = ids.event_id(self._random)
        port = request.url.port or (443 if request.secure else 80)
        event = Event(
            connect_event(
                info,
                headers=request.headers.items(),
                query=request.query.items(),
                gateway_headers={
                    "X-Amzn-Trace-Id": f"Root=1-{int(time.time()):08x}-{self._random(12).hex()}",
                    "X-Forwarded-For": info.source_ip,
                    "X-Forwarded-Port": str(port),
                    "X-Forwarded-Proto": "https" if request.secure else "http",
                },
                stage_variables=self.stage_variables,
                request_id=request_id,
                now_ms=_now_ms(),
            )
        )
        try:
            result = await self.invoke(route, event)
        except HandlerTimedOut:
            return _http_error(504, "Endpoint request timed out", request_id), None
        except HandlerFailed:
            return _http_error(502, "Internal server error", request_id), None
        decision = connect_decision(result)
        if decision.problem is not None:
            handler_log.error("$connect handler %s: %s", route.name, decision.problem)
        if not decision.accepted:
            text = "Internal server error" if decision.status == 502 else _phrase(decision.status)
            return _http_error(decision.status, text, request_id), None
        return None, decision.subprotocol

    async def _run_disconnect(self, info: ConnectionContext, close: Close) -> None:
        route = self.app.routes.get(DISCONNECT)
        if route is None:
            return
        event = Event(
            disconnect_event(
                info,
                status_code=close.code,
                reason=close.reason,
                stage_variables=self.stage_variables,
                request_id=ids.event_id(self._random),
                now_ms=_now_ms(),
            )
        )
        try:
            await self.invoke(route, event)
        except (HandlerFailed, HandlerTimedOut):
            pass  # logged by invoke(); there is no client left to tell

    async def _read(self, conn: LiveConnection) -> Close:
        """Read messages until the socket closes; return how it closed."""
        ws = conn.ws
        binary_as_base64 = self.app.binary == "base64"
        while True:
            await conn.slots.acquire()
            try:
                msg = await ws.receive()
            except BaseException:
                conn.slots.release()
                raise
            kind = msg.type
            if kind is WSMsgType.TEXT:
                conn.mark_active()
                self._dispatch(conn, msg.data, parse_body(msg.data), False)
            elif kind is WSMsgType.BINARY:
                if not binary_as_base64:
                    conn.slots.release()
                    await self._close(conn, BINARY_NOT_SUPPORTED)
                    return BINARY_NOT_SUPPORTED
                conn.mark_active()
                self._dispatch(conn, base64.b64encode(msg.data).decode("ascii"), NOT_JSON, True)
            else:
                conn.slots.release()
                if kind is WSMsgType.CLOSE:
                    return Close(int(msg.data), msg.extra or "")
                if kind is WSMsgType.ERROR:
                    code = getattr(msg.data, "code", CloseCode.ABNORMAL)
                    if code == CloseCode.MESSAGE_TOO_BIG:
                        return MESSAGE_TOO_BIG
                    return Close(int(code), str(msg.data.args[1]) if len(msg.data.args) > 1 else "")
                # CLOSING/CLOSED: the gateway closed it (conn.close says why) or the peer vanished.
                return conn.close or Close(ws.close_code or CloseCode.ABNORMAL, "")

    def _dispatch(self, conn: LiveConnection, body: str, parsed: Any, is_base64: bool) -> None:
        route_key = self.app.selector.select(parsed, self.app.routes)
        self._spawn(self._handle_message(conn, route_key, body, parsed, is_base64))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)  # the loop only keeps weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def _handle_message(
        self, conn: LiveConnection, route_key: str | None, body: str, parsed: Any, is_base64: bool
    ) -> None:
        info = conn.info
        request_id = ids.event_id(self._random)
        try:
            if route_key is None:
                await self._reply(conn, error_frame(FORBIDDEN, info.connection_id, request_id))
                return
            route = self.app.routes[route_key]
            event = Event(
                message_event(
                    info,
                    route_key=route_key,
                    body=body,
                    is_base64=is_base64,
                    stage_variables=self.stage_variables,
                    message_id=ids.event_id(self._random),
                    request_id=request_id,
                    now_ms=_now_ms(),
                ),
                parsed,
            )
            try:
                result = await self.invoke(route, event)
                reply = route_reply(result) if route.return_response else None
            except HandlerTimedOut:
                reply = error_frame(ENDPOINT_TIMED_OUT, info.connection_id, request_id)
            except HandlerFailed:
                reply = error_frame(INTERNAL_SERVER_ERROR, info.connection_id, request_id)
            except (TypeError, ValueError):  # Lambda's Runtime.MarshalError: a function error
                handler_log.error(
                    "%s handler %s returned a value that is not JSON-serialisable",
                    route.key,
                    route.name,
                    exc_info=True,
                )
                reply = error_frame(INTERNAL_SERVER_ERROR, info.connection_id, request_id)
            if reply is not None:
                await self._reply(conn, reply)
        finally:
            conn.slots.release()

    async def _reply(self, conn: LiveConnection, payload: str | bytes) -> None:
        """Send on the caller's own socket; a caller that left meanwhile is not an error."""
        try:
            await self._write(conn, payload)
        except GoneError:
            pass

    async def _write(self, conn: LiveConnection, payload: str | bytes) -> None:
        if conn.close is not None or conn.ws.closed:
            raise GoneError(conn.info.connection_id)
        conn.mark_active()
        try:
            if isinstance(payload, str):
                await conn.ws.send_str(payload)
            else:
                await conn.ws.send_bytes(payload)
        except (ConnectionError, RuntimeError) as exc:
            raise GoneError(conn.info.connection_id) from exc

    async def _close(self, conn: LiveConnection, close: Close) -> None:
        if conn.close is not None:
            return
        conn.close = close
        try:
            await conn.ws.close(code=close.code, message=close.reason.encode())
        except (ConnectionError, RuntimeError):
            pass

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

    async def send(self, connection_id: str, data: Data) -> None:
        payload = outbound_payload(data, self.limits.max_message_bytes)
        conn = self.live.get(connection_id)
        if conn is None:
            raise await self._gone(connection_id)
        await self._write(conn, payload)

    async def _fan_out(self, targets: Iterable[str], data: Data, exclude: Iterable[str]) -> int:
        payload = outbound_payload(data, self.limits.max_message_bytes)
        skip = set(exclude)
        delivered = 0
        for connection_id in targets:
            if connection_id in skip:
                continue
            conn = self.live.get(connection_id)
            try:
                if conn is None:
                    raise await self._gone(connection_id)
                await self._write(conn, payload)
            except GoneError:
                continue
            delivered += 1
        return delivered

    async def info(self, connection_id: str) -> ConnectionInfo:
        conn = self.live.get(connection_id)
        if conn is None:
            raise GoneError(connection_id)
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
        conn = self.live.get(connection_id)
        if conn is None or conn.close is not None:
            raise GoneError(connection_id)
        await self._close(conn, CLOSED_BY_MANAGEMENT_API)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Forbidden"


def _http_error(status: int, message: str, request_id: str) -> web.Response:
    return web.json_response(
        {"message": message}, status=status, headers={"x-amzn-RequestId": request_id}
    )


__all__ = ["Gateway", "HandlerFailed", "HandlerTimedOut", "LiveConnection"]
