"""The gateway: one API stage of an App, wired together; how a message becomes an invocation.

The jobs live in their own modules, and this one connects them:

- `server/upgrade.py`: an upgrade request, `$connect`, then the 101 (`open_connection`);
- `server/connection.py`: one socket's frames, writes, back-pressure and close;
- `server/invoker.py`: running a handler with its context and deadline;
- `server/delivery.py`: `wsgate.connections` and `@connections`, wherever the connection is.

What stays here: start and stop, the sweeper (handler deadlines, idle and duration
limits, lastActiveAt written in batches), and a message's way from its connection to its
route's handler and back: each text message is routed and dispatched as its own task (AWS
runs invocations of one connection concurrently), and when a socket closes, for any
reason, the connection leaves the store and `$disconnect` runs with the close code and
reason.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import time
from bisect import bisect_left
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any

from wsgate import connection_api
from wsgate.app import App
from wsgate.core import ids
from wsgate.core.close import SHUTDOWN, SLOW_CONSUMER, Close
from wsgate.core.events import ConnectionContext, disconnect_event, message_event
from wsgate.core.limits import Limits
from wsgate.core.quotas import RefusalLog
from wsgate.core.responses import (
    ENDPOINT_TIMED_OUT,
    FORBIDDEN,
    INTERNAL_SERVER_ERROR,
    TOO_MANY_REQUESTS,
    error_frame,
    route_reply,
)
from wsgate.core.routing import DISCONNECT, NOT_JSON, parse_body
from wsgate.exceptions import ConfigError
from wsgate.server import upgrade
from wsgate.server.connection import CLOSE_TIMEOUT, GatewayBuffers, LiveConnection
from wsgate.server.delivery import Delivery, OtherNodes
from wsgate.server.front import OpenConnection
from wsgate.server.invoker import HandlerFailed, HandlerTimedOut, Invoker, handler_log
from wsgate.server.observability import HANDLER_BUCKETS, NO_ROUTE, Metrics, access, worker_state
from wsgate.server.signatures import AccessKeys, require_botocore
from wsgate.store.base import Store

log = logging.getLogger("wsgate.gateway")


class Gateway:
    """One API stage of an App: its connections, its handlers, its connections API.

    With `others`, this gateway is one node of several (a worker of `wsgate serve
    --workers N`, or a node sharing a Redis store): it holds its own connections, and
    `Delivery` reaches the others' through `others`.
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
        node: str | None = None,
        others: OtherNodes | None = None,
        allowed_origins: Iterable[str] = (),
        access_keys: AccessKeys | None = None,
        access_log: bool = False,
        compression: bool = True,
    ) -> None:
        self.app = app
        self.store = store
        self.stage = stage
        self.limits = limits or Limits()
        self.api_id = api_id or ids.api_id(os.urandom)
        #: This node's id in the store's records (random unless the caller names it).
        self.node = node or ids.event_id(os.urandom)
        # Ids are drawn on the event loop only; a pool per gateway, so never shared by a fork.
        self.new_id = ids.IdPool(os.urandom)
        self.stage_variables = dict(stage_variables) if stage_variables else None
        #: This node's open connections, by id.
        self.live: dict[str, LiveConnection] = {}
        #: Bytes waiting in this gateway's connections, against its gateway-wide budgets.
        self.buffers = GatewayBuffers(self.limits)
        #: Who may start a handshake: quotas, Origin allowlist, `AWS_IAM` signatures.
        self.admission = upgrade.Admission(
            self.limits, allowed_origins=allowed_origins, access_keys=access_keys
        )
        self._throttled_messages = RefusalLog()
        self.invoker = Invoker(app.name, self.limits.handler_timeout, handler_threads)
        self.delivery = Delivery(self.live, store, self.limits, node=self.node, others=others)
        #: Tasks that open or close connections (`$connect`, `$disconnect`); stop() awaits them.
        self.connection_tasks: set[asyncio.Task[Any]] = set()
        #: The front door's entry point for WebSocket upgrade requests.
        self.open_connection: OpenConnection = functools.partial(upgrade.open_connection, self)
        self.stopping = False
        #: One `wsgate.access` line per connect, message, disconnect, management call.
        self.access_log = access_log
        #: permessage-deflate for the clients that offer it (docs/compatibility.md §10.8).
        self.compression = compression
        #: What `/metrics` reports (server/observability.py).
        self.metrics = Metrics()
        # The other workers' scrapes ask this one's counts (`/metrics` adds them up).
        self.delivery.operations["metrics"] = functools.partial(worker_state, self)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._binding: connection_api.Binding | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._touching: asyncio.Task[None] | None = None
        #: Connections gone whose record the store failed to remove (a full disk, a store
        #: down): the sweeper tries again each sweep, so they are not listed for ever.
        self._unremoved: set[str] = set()
        self._removing: asyncio.Task[None] | None = None
        self._touch_failing = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the gateway runs on (set by `start`)."""
        assert self._loop is not None, "Gateway.start() first"
        return self._loop

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, bind the connections API, start the sweeper."""
        self._loop = asyncio.get_running_loop()
        await self.store.open()
        await self.delivery.start()
        self._binding = connection_api.Binding(self.delivery, self._loop)
        self.invoker.bind(self._binding)
        connection_api.bind_default(self._binding)
        self._sweeper = asyncio.create_task(self._sweep(), name="wsgate-sweeper")

    async def stop(self) -> None:
        """Close every connection with 1001 (running `$disconnect`), then the store."""
        self.stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._touching is not None:
            await asyncio.wait([self._touching])
        for conn in list(self.live.values()):
            conn.start_close(SHUTDOWN)
        deadline = time.monotonic() + CLOSE_TIMEOUT + 0.5
        while self.live and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.live.values()):
            if conn.transport is not None:
                conn.transport.disconnect(graceful=False)
        # Let $disconnect and in-flight messages finish (within a handler timeout), then
        # cancel what is left, so no task outlives the gateway.
        await asyncio.sleep(0)
        pending: set[asyncio.Task[Any]] = self.connection_tasks | self.invoker.deadlines.keys()
        if pending:
            _, pending = await asyncio.wait(pending, timeout=self.limits.handler_timeout + 1)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1)
        await self.delivery.stop()
        if self._unremoved:
            await self._remove_again()
        await self.store.close()
        self.invoker.shutdown()
        if connection_api._fallback is self._binding:
            connection_api.bind_default(None)

    def replace_app(self, app: App) -> None:
        """Serve `app` from now on, keeping every connection (`wsgate serve --reload`).

        New messages and connections use its routes, route selection and authorization
        (a connection's binary policy is its app's when it opened); invocations already
        running finish on the old code. ConfigError if this gateway cannot serve it.
        """
        check_authorization(app, self.admission.access_keys)
        self.app = app
        self.invoker.function_name = app.name

    # -- the sweeper ---------------------------------------------------------------------

    async def _sweep(self) -> None:
        interval = self.limits.sweep_interval()
        while True:
            await asyncio.sleep(interval)
            try:
                self._sweep_once()
            except Exception:
                log.exception("sweeper failed; retrying")

    def _sweep_once(self) -> None:
        now = time.monotonic()
        self.invoker.expire(now)
        activity: dict[str, int] = {}
        for conn in list(self.live.values()):
            if conn.touched:
                conn.touched = False
                activity[conn.info.connection_id] = conn.last_active_ms
            if conn.close is None:
                close = self.limits.expired(now, conn.connected_mono, conn.last_active_mono)
                if close is not None:
                    conn.start_close(close)
        if self._unremoved and (self._removing is None or self._removing.done()):
            self._removing = asyncio.create_task(self._remove_again())
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
        started = time.monotonic()
        try:
            await self.store.touch(activity)
            self.metrics.store_call("touch", time.monotonic() - started)
        except Exception as exc:
            if not self._touch_failing:  # once, not every sweep while the store is down
                log.warning("writing lastActiveAt failed (%s); retrying with each batch", exc)
            self._touch_failing = True
        else:
            self._touch_failing = False

    async def _remove_again(self) -> None:
        """Remove the records the store could not remove when their connections left."""
        for connection_id in list(self._unremoved):
            try:
                await self.store.remove_connection(connection_id)
            except Exception:
                return  # still failing: the next sweep tries again
            self._unremoved.discard(connection_id)
        log.info("the store removed the records of the connections that left meanwhile")

    # -- messages ------------------------------------------------------------------------

    def message(self, conn: LiveConnection, body: str, is_base64: bool) -> None:
        """Route a complete message and start its handler (the connection calls this)."""
        if conn.close is not None:
            return  # closing: API Gateway drops what arrives after its close frame
        now = conn.last_active_mono = time.monotonic()
        conn.touched = True
        bucket = conn.message_bucket
        if bucket is not None and not bucket.take(now):
            self._throttle(conn, now)
            return
        parsed = NOT_JSON if is_base64 else parse_body(body)
        route_key = self.app.selector.select(parsed, self.app.routes)
        conn.message_started()
        assert self._loop is not None
        _start_task(self._loop, self._handle_message(conn, route_key, body, parsed, is_base64))

    def _throttle(self, conn: LiveConnection, now: float) -> None:
        """Over `Limits.message_rate`: the error frame instead of a handler; the
        connection stays open (docs/compatibility.md §8.2)."""
        info = conn.info
        conn.reply(error_frame(TOO_MANY_REQUESTS, info.connection_id, self.new_id()))
        self.metrics.throttled += 1
        if self.access_log:
            access(
                "message",
                connectionId=info.connection_id,
                sourceIp=info.source_ip,
                routeKey=NO_ROUTE,
                status="throttled",
            )
        count = self._throttled_messages.count(now)
        if count is not None:
            log.warning(
                "over %s messages a second on %s: %d messages got Too Many Requests",
                self.limits.message_rate,
                info.connection_id,
                count,
            )

    async def _handle_message(
        self, conn: LiveConnection, route_key: str | None, body: str, parsed: Any, is_base64: bool
    ) -> None:
        info = conn.info
        request_id = self.new_id()
        outcome, started = "ok", time.monotonic()
        try:
            if route_key is None:
                outcome = "forbidden"
                self.metrics.forbidden += 1
                conn.reply(error_frame(FORBIDDEN, info.connection_id, request_id))
                return
            route = self.app.routes[route_key]
            event = message_event(
                info,
                route_key=route_key,
                body=body,
                is_base64=is_base64,
                stage_variables=self.stage_variables,
                message_id=self.new_id(),
                request_id=request_id,
                now_ms=time.time_ns() // 1_000_000,
                body_json=parsed,
            )
            reply: str | bytes | None = None
            try:
                result = await self.invoker.invoke(route, event)
            except HandlerTimedOut:
                outcome = "timeout"
                self.metrics.routes[route_key].timeouts += 1
                reply = error_frame(ENDPOINT_TIMED_OUT, info.connection_id, request_id)
            except HandlerFailed:
                outcome = "error"
                self.metrics.routes[route_key].errors += 1
                reply = error_frame(INTERNAL_SERVER_ERROR, info.connection_id, request_id)
            else:
                if route.return_response:
                    try:
                        reply = route_reply(result, self.limits.max_message_bytes)
                    except (TypeError, ValueError) as exc:  # Lambda's Runtime.MarshalError
                        handler_log.error(
                            "%s handler %s returned a reply API Gateway cannot send: %s",
                            route.key,
                            route.name,
                            exc,
                        )
                        outcome = "error"
                        self.metrics.routes[route_key].errors += 1
                        reply = error_frame(INTERNAL_SERVER_ERROR, info.connection_id, request_id)
            if reply is not None:
                conn.reply(reply)
        finally:
            conn.message_done()
            seconds = time.monotonic() - started
            if route_key is not None:
                # Recorded here, not by a call: a bucket and a sum on every message (errors
                # and timeouts are counted where they happen; ok is the rest).
                stats = self.metrics.routes[route_key]
                stats.counts[bisect_left(HANDLER_BUCKETS, seconds)] += 1
                stats.total += seconds
            if self.access_log:
                access(
                    "message",
                    connectionId=info.connection_id,
                    sourceIp=info.source_ip,
                    routeKey=route_key or NO_ROUTE,
                    status=outcome,
                    latencyMs=round(seconds * 1000, 3),
                )

    # -- disconnection -------------------------------------------------------------------

    def connection_closed(self, conn: LiveConnection) -> None:
        """The socket is gone: forget it now; the store and `$disconnect` follow in a task."""
        connection_id = conn.info.connection_id
        if self.live.get(connection_id) is conn:
            del self.live[connection_id]
        assert conn.close is not None and self._loop is not None
        if conn.close is SLOW_CONSUMER:
            self.metrics.slow_consumers_dropped += 1
        task = self._loop.create_task(self._forget(conn.info, conn.close))
        self.connection_tasks.add(task)
        task.add_done_callback(self.connection_tasks.discard)

    async def _forget(self, info: ConnectionContext, close: Close) -> None:
        self.metrics.disconnect(close.code)
        if self.access_log:
            access(
                "disconnect",
                connectionId=info.connection_id,
                sourceIp=info.source_ip,
                routeKey=DISCONNECT,
                closeCode=close.code,
                closeReason=close.reason,
                durationMs=time.time_ns() // 1_000_000 - info.connected_at,
            )
        started = time.monotonic()
        try:
            await self.store.remove_connection(info.connection_id)
            self.metrics.store_call("remove_connection", time.monotonic() - started)
        except Exception as exc:
            # The user's $disconnect runs whatever the store says; the record goes later.
            if not self._unremoved:
                log.warning(
                    "removing connection %s from the store failed (%s); retrying each "
                    "sweep for it and any other that fails meanwhile",
                    info.connection_id,
                    exc,
                )
            self._unremoved.add(info.connection_id)
        route = self.app.routes.get(DISCONNECT)
        if route is None:
            return
        event = disconnect_event(
            info,
            status_code=close.code,
            reason=close.reason,
            stage_variables=self.stage_variables,
            request_id=self.new_id(),
            now_ms=time.time_ns() // 1_000_000,
        )
        try:
            await self.invoker.invoke(route, event)
        except (HandlerFailed, HandlerTimedOut):
            pass  # logged by the invoker; there is no client left to tell


def check_authorization(app: App, access_keys: AccessKeys | None) -> None:
    """ConfigError unless a gateway with `access_keys` can check `app`'s authorization."""
    if app.authorization == "AWS_IAM":
        require_botocore("AWS_IAM authorization")
        if access_keys is None:
            raise ConfigError(
                "AWS_IAM authorization needs access keys to check signatures: "
                "--access-keys FILE (ACCESS_KEY_ID:SECRET lines)"
            )


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


__all__ = ["Gateway", "HandlerFailed", "HandlerTimedOut", "LiveConnection"]
