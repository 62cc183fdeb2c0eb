"""From an upgrade request to a live connection: checks, `$connect`, then the 101.

API Gateway runs `$connect` while the client's upgrade request waits: a 2xx accepts, any
other status is the handshake's answer, so no message can arrive before `$connect` has
returned (docs/compatibility.md §1.2 and §4.1). Here that is `open_connection`: the front
door paused reading; once `$connect` accepts, the connection is stored and picows takes
the socket, answers 101 and calls the `LiveConnection` per frame (`FrameListener`). An app's Lambda
authorizer runs first (docs/compatibility.md §7): a client it does not allow never
reaches `$connect`, and what it returns rides on every event of the connection.

Before any handler, `Admission` turns away what API Gateway turns away without one:
over the connection quotas (429, docs/compatibility.md §8), a browser `Origin` not in the
allowlist (403) and, with `AWS_IAM`, a request not SigV4-signed by a known key (403).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from picows import WSListener, WSTransport, WSUpgradeResponse, WSUpgradeResponseWithListener
from picows.picows import WSAutoPingStrategy, WSProtocol  # type: ignore[attr-defined]

from wsgate.app import Authorizer, Route
from wsgate.context import LambdaContext
from wsgate.core.authorizer import (
    UNAUTHORIZED_DECISION,
    AuthorizerDecision,
    authorizer_event,
    decide,
    failure_decision,
    identity_values,
    method_arn,
    simple_policy,
)
from wsgate.core.compression import MessageDeflate, negotiate
from wsgate.core.events import ConnectionContext, connect_event
from wsgate.core.handshake import (
    HandshakeError,
    RequestHead,
    allowed_origin,
    canonical_upgrade,
    check_upgrade,
    origin_allowed,
)
from wsgate.core.limits import Limits
from wsgate.core.quotas import RefusalLog
from wsgate.core.responses import connect_decision
from wsgate.core.routing import CONNECT
from wsgate.server.connection import LiveConnection
from wsgate.server.invoker import HandlerFailed, HandlerTimedOut, handler_log
from wsgate.server.observability import access
from wsgate.server.signatures import AccessKeys, SignatureRefused, Signer, verify
from wsgate.server.transport import hand_over, refuse
from wsgate.store.base import ConnectionRecord

if TYPE_CHECKING:
    from wsgate.server.gateway import Gateway

log = logging.getLogger("wsgate.gateway")

#: picows logs two INFO lines per connection; they stay out of `--log-level info` unless
#: this logger is lowered. picows gets an adapter (`_ConnectionLog`), so it does not make
#: a child logger per socket.
_picows_logger = logging.getLogger("wsgate.websocket")
_picows_logger.setLevel(logging.WARNING)


async def open_connection(
    gateway: Gateway, head: RequestHead, transport: asyncio.Transport, rest: bytes
) -> None:
    """Serve a WebSocket upgrade request: `$connect`, then the 101 and the socket; count
    the outcome, and log it when the access log is on."""
    started = time.monotonic()
    status, info = await _open(gateway, head, transport, rest)
    gateway.metrics.connect(status)
    if gateway.access_log:
        peer = transport.get_extra_info("peername")
        access(
            "connect",
            connectionId=info.connection_id if info is not None else None,
            sourceIp=info.source_ip if info is not None else str(peer[0]) if peer else "",
            routeKey=CONNECT,
            status=status,
            latencyMs=round((time.monotonic() - started) * 1000, 3),
        )


async def _open(
    gateway: Gateway, head: RequestHead, transport: asyncio.Transport, rest: bytes
) -> tuple[int, ConnectionContext | None]:
    """The status the handshake got (101: open) and its connection, once it has an id."""
    try:
        check_upgrade(head)
    except HandshakeError as refusal:
        return _refuse(transport, refusal.status, refusal.message, refusal.headers), None
    if gateway.stopping:
        return _refuse(transport, 503, "Service Unavailable"), None
    admission = gateway.admission
    status = admission.refusal(head, len(gateway.live), time.monotonic())
    if status is not None:
        return _refuse(transport, status, _phrase(status)), None
    signer = None
    if gateway.app.authorization == "AWS_IAM":
        signer = admission.signer(head)
        if signer is None:
            return _refuse(transport, 403, "Forbidden"), None
    info = _connection_context(gateway, head, transport, signer)
    subprotocol = None
    authorizer = gateway.app.connect_authorizer
    connect_route = gateway.app.routes.get(CONNECT)
    if authorizer is not None or connect_route is not None:
        request_id = gateway.new_id()  # one request: the authorizer's and `$connect`'s
        gateway_headers = _gateway_headers(info)
    latency_ms = None
    if authorizer is not None:
        started = time.monotonic()
        decision = await _run_authorizer(
            gateway, authorizer, head, info, gateway_headers, request_id
        )
        if not decision.allowed:
            status = _refuse(transport, decision.status, decision.message, request_id=request_id)
            return status, info
        info.authorizer = decision.authorizer
        latency_ms = round((time.monotonic() - started) * 1000)
    if connect_route is not None:
        status, subprotocol = await _run_connect(
            gateway, connect_route, head, info, transport, gateway_headers, request_id, latency_ms
        )
        if status is not None:
            return status, info
    record = ConnectionRecord(
        connection_id=info.connection_id,
        connected_at=info.connected_at,
        last_active_at=info.connected_at,
        source_ip=info.source_ip,
        user_agent=info.user_agent,
        stage=info.stage,
        domain_name=info.domain_name,
        node=gateway.node,
        authorizer=info.authorizer,
    )
    started = time.monotonic()
    try:
        await gateway.store.add_connection(record)
    except Exception:  # the connection never opened: no `$disconnect` for it
        log.exception("cannot store connection %s; refusing it", info.connection_id)
        return _refuse(transport, 500, "Internal server error"), info
    gateway.metrics.store_call("add_connection", time.monotonic() - started)
    if gateway.stopping:  # stopped while `$connect` ran: this one never opens
        await gateway.store.remove_connection(info.connection_id)
        return _refuse(transport, 503, "Service Unavailable"), info
    # Agreed last, so only a connection that opens gets a codec. The frame limit applies
    # to the frames as they come (compressed); the message limit to what they inflate to.
    deflate = negotiate(head.values("Sec-WebSocket-Extensions")) if gateway.compression else None
    conn = LiveConnection(
        gateway, info, gateway.limits, MessageDeflate(deflate) if deflate is not None else None
    )
    gateway.live[info.connection_id] = conn
    if not transport.is_closing():
        limits = gateway.limits
        _hand_to_picows(
            transport,
            head,
            rest,
            conn,
            # A frame is never more than a message: one frame may be a whole message.
            max_frame_bytes=min(limits.max_frame_bytes, limits.max_message_bytes),
            subprotocol=subprotocol,
            extensions=deflate.header if deflate is not None else None,
        )
    if conn.transport is None:  # the client left during `$connect`
        transport.abort()
        conn.on_ws_disconnected(None)
    return 101, info


class Admission:
    """Who may start a handshake, decided before any handler runs.

    `refusal`: the new-connection rate and the cap on open connections (429, as API
    Gateway throttles), then the browser `Origin` allowlist (403; API Gateway checks no
    Origin, so without a list every origin is let in). `signer`: with `AWS_IAM`, the key
    that signed the upgrade request. Refusals are logged, at most a line per throttle
    every few seconds, however many clients knock.
    """

    def __init__(
        self,
        limits: Limits,
        *,
        allowed_origins: Iterable[str] = (),
        access_keys: AccessKeys | None = None,
    ) -> None:
        if isinstance(allowed_origins, str):
            raise TypeError("allowed_origins must be a list of origins, not one string")
        self.limits = limits
        self.allowed_origins = frozenset(allowed_origin(entry) for entry in allowed_origins)
        self.access_keys = access_keys
        self.connect_bucket = limits.connect_bucket(time.monotonic())
        self._rate_log = RefusalLog()
        self._cap_log = RefusalLog()
        self._origin_log = RefusalLog()
        self._signature_log = RefusalLog()

    def refusal(self, head: RequestHead, open_connections: int, now: float) -> int | None:
        """The status to refuse the handshake with, or None to go on."""
        bucket = self.connect_bucket
        if bucket is not None and not bucket.take(now):
            _log_refusals(
                self._rate_log,
                now,
                "over %s new connections a second: %d handshakes got 429",
                self.limits.connect_rate,
            )
            return 429
        cap = self.limits.max_connections
        if cap is not None and open_connections >= cap:
            _log_refusals(
                self._cap_log, now, "%s connections open (the most): %d handshakes got 429", cap
            )
            return 429
        if not origin_allowed(head, self.allowed_origins):
            _log_refusals(
                self._origin_log,
                now,
                "Origin %r not allowed: %d handshakes got 403",
                head.header("Origin"),
            )
            return 403
        return None

    def signer(self, head: RequestHead) -> Signer | None:
        """Who SigV4-signed the upgrade request, or None if no known key did (403)."""
        assert self.access_keys is not None, "serve() refuses AWS_IAM without access keys"
        try:
            return verify(
                self.access_keys,
                method=head.method,
                path=head.path,
                query_string=head.query_string,
                headers=head.headers,
            )
        except SignatureRefused as refused:
            _log_refusals(
                self._signature_log,
                time.monotonic(),
                "AWS_IAM: %s: %d handshakes got 403",
                refused.message,
            )
            return None


def _log_refusals(refusals: RefusalLog, now: float, message: str, *args: object) -> None:
    count = refusals.count(now)
    if count is not None:
        log.warning(message, *args, count)


def _connection_context(
    gateway: Gateway,
    head: RequestHead,
    transport: asyncio.Transport,
    signer: Signer | None = None,
) -> ConnectionContext:
    peer = transport.get_extra_info("peername")
    return ConnectionContext(
        connection_id=gateway.delivery.new_connection_id(gateway.new_id()),
        connected_at=time.time_ns() // 1_000_000,
        source_ip=str(peer[0]) if peer else "",
        user_agent=head.header("User-Agent"),
        domain_name=head.header("Host") or "",
        stage=gateway.stage,
        api_id=gateway.api_id,
        caller=signer.identity() if signer is not None else None,
    )


def _gateway_headers(info: ConnectionContext) -> dict[str, str]:
    """The headers API Gateway adds to the client's in `$connect`'s (and the authorizer's) event."""
    _, colon, port = info.domain_name.rpartition(":")
    return {
        "X-Amzn-Trace-Id": f"Root=1-{int(time.time()):08x}-{os.urandom(12).hex()}",
        "X-Forwarded-For": info.source_ip,
        "X-Forwarded-Port": port if colon and port.isdigit() else "80",
        "X-Forwarded-Proto": "http",
    }


async def _run_authorizer(
    gateway: Gateway,
    authorizer: Authorizer,
    head: RequestHead,
    info: ConnectionContext,
    gateway_headers: dict[str, str],
    request_id: str,
) -> AuthorizerDecision:
    """Check the identity sources, invoke the authorizer, judge its result.

    Never cached: every connection attempt invokes it, as on API Gateway.
    """
    now_ms = time.time_ns() // 1_000_000
    event = authorizer_event(
        info,
        method_arn=method_arn(
            LambdaContext.region, LambdaContext.account_id, info.api_id, info.stage
        ),
        headers=head.headers,
        query=head.query,
        gateway_headers=gateway_headers,
        stage_variables=gateway.stage_variables,
        request_id=request_id,
        now_ms=now_ms,
    )
    if authorizer.identity_sources and (
        identity_values(
            authorizer.identity_sources,
            headers=head.headers,
            query=head.query,
            stage_variables=gateway.stage_variables,
            request_context=event["requestContext"],
        )
        is None
    ):
        return UNAUTHORIZED_DECISION
    route = authorizer.route
    try:
        result = await gateway.invoker.invoke(route, event)
    except HandlerTimedOut:
        return AuthorizerDecision(500, problem="timed out")
    except HandlerFailed as failed:
        # the invoker logged the traceback; only the message matters here
        return failure_decision(failed.__cause__ or failed)
    if authorizer.simple:
        result = simple_policy(result, event["methodArn"])
    decision = decide(result, event["methodArn"])
    if decision.problem is not None:
        handler_log.error("%s %s: %s", route.key, route.name, decision.problem)
    return decision


async def _run_connect(
    gateway: Gateway,
    route: Route,
    head: RequestHead,
    info: ConnectionContext,
    transport: asyncio.Transport,
    gateway_headers: dict[str, str],
    request_id: str,
    authorizer_latency_ms: int | None,
) -> tuple[int | None, str | None]:
    """Run `$connect`; answer a refusal; return (the refusal's status, None if accepted;
    the subprotocol to answer)."""
    event = connect_event(
        info,
        headers=head.headers,
        query=head.query,
        gateway_headers=gateway_headers,
        stage_variables=gateway.stage_variables,
        request_id=request_id,
        now_ms=time.time_ns() // 1_000_000,
    )
    if authorizer_latency_ms is not None:  # on `$connect`'s event only (§7.5)
        event["requestContext"]["authorizer"]["integrationLatency"] = authorizer_latency_ms
    try:
        result = await gateway.invoker.invoke(route, event)
    except HandlerTimedOut:
        return _refuse(transport, 504, "Endpoint request timed out", request_id=request_id), None
    except HandlerFailed:
        return _refuse(transport, 502, "Internal server error", request_id=request_id), None
    decision = connect_decision(result)
    if decision.problem is not None:
        handler_log.error("$connect handler %s: %s", route.name, decision.problem)
    if not decision.accepted:
        text = "Internal server error" if decision.status == 502 else _phrase(decision.status)
        return _refuse(transport, decision.status, text, request_id=request_id), None
    return None, decision.subprotocol


def _hand_to_picows(
    transport: asyncio.Transport,
    head: RequestHead,
    rest: bytes,
    listener: LiveConnection,
    *,
    max_frame_bytes: int,
    subprotocol: str | None,
    extensions: str | None,
) -> None:
    """Let picows answer the checked upgrade `head` (101) and serve the socket, frames to
    `listener`; `rest` is what the client sent after the head.

    picows checks each frame's header (size, opcode, masking) and on a violation sends
    its close frame, but it goes on reading the payload it refused and hands the frame
    over once complete. Its error log is the only word it gives at that moment, so the
    connection's log (`_ConnectionLog`) tells the listener, which stops reading at once.
    """
    headers = {}
    if subprotocol:
        headers["Sec-WebSocket-Protocol"] = subprotocol
    if extensions is not None:
        headers["Sec-WebSocket-Extensions"] = extensions

    def accept(request: Any) -> WSUpgradeResponseWithListener:
        return WSUpgradeResponseWithListener(
            WSUpgradeResponse.create_101_response(extra_headers=headers or None),
            FrameListener(listener),
        )

    protocol = WSProtocol(
        None,  # host:port (client side only)
        None,  # path (client side only)
        False,  # is_client_side
        accept,
        _ConnectionLog(listener),
        True,  # disconnect_on_exception
        None,  # handshake timeout: the head is already here
        False,  # auto ping: API Gateway does not ping clients
        20.0,
        20.0,
        WSAutoPingStrategy.PING_WHEN_IDLE,
        False,  # auto pong: the listener answers pings, counting pongs as writes
        max_frame_bytes,
        None,  # extra headers (client side only)
        1024,  # initial read buffer; it grows for big messages, idle sockets stay small
    )
    hand_over(transport, protocol, canonical_upgrade(head) + rest)


class FrameListener(WSListener):
    """What picows calls for one connection: the `LiveConnection`'s own methods.

    picows calls its listener through the Cython class's method table, so the listener
    must be a true subclass of `WSListener`, and `LiveConnection` (compiled in the
    compiled build) cannot be one. The frame callback is the connection's bound method
    held in a slot, which picows finds in place of `WSListener`'s: a frame reaches the
    connection in one call, with no Python frame in between. The rare callbacks forward
    (a bound method each would cost every idle connection about 100 bytes).
    """

    __slots__ = ("conn", "on_ws_frame")

    def __init__(self, conn: LiveConnection) -> None:
        self.conn = conn
        self.on_ws_frame = conn.on_ws_frame  # type: ignore[method-assign]

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.conn.on_ws_connected(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.conn.on_ws_disconnected(transport)

    def pause_writing(self) -> None:
        self.conn.pause_writing()

    def resume_writing(self) -> None:
        self.conn.resume_writing()


class _ConnectionLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """picows' log for one connection: an error there means picows refused a frame and
    sent its close frame, so the connection stops reading (`LiveConnection.refused`)."""

    def __init__(self, listener: LiveConnection) -> None:
        super().__init__(_picows_logger, {})
        self.listener = listener

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level >= logging.ERROR:
            self.listener.refused()
        super().log(level, msg, *args, **kwargs)


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
) -> int:
    """Answer the upgrade request with an HTTP error, API Gateway's JSON body, and close;
    the status, for the access log."""
    if request_id is not None:
        headers = (*headers, ("x-amzn-RequestId", request_id))
    refuse(transport, status, _phrase(status), message, headers)
    return status
