"""Reaching connections wherever they live: the connections API handlers and `@connections` call.

`Delivery` is the one seam between "send to connection X / to everyone on topic T" and
where X and T's subscribers are. A connection held here is written at once, without a
task (an echo's `send` is a dict read and a write). Anything else goes through
`OtherNodes`: the other processes or machines of the same gateway: the workers of
`wsgate serve --workers N` (`server/peers.py`), or gateway nodes sharing a Redis store
(`server/redis_bus.py`). Nothing above this module knows which.

- `send`, `info`, `disconnect`, `subscribe`, `unsubscribe`: on the node holding the
  connection (`OtherNodes.locate`); a connection no node holds is gone (410), and its
  record and subscriptions are dropped, as API Gateway apps do on a 410. A node that
  cannot be reached (dead, or not answering within its call timeout) is gone too.
- `connection_ids`, `subscribers`: gathered from every node that may hold one.
- `publish`, `broadcast`: every node that may hold a target delivers to its own
  connections, one request per node (not per subscriber); the counts add up. Fan-outs
  leave a node in the order they were called (a handler's publishes are concurrent tasks
  whose reads may finish in any order): subscribers see one client's messages in order.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from typing import Any, Protocol

from wsgate.connection_api import ConnectionInfo, Data
from wsgate.core.close import CLOSED_BY_MANAGEMENT_API, RECORD_LOST
from wsgate.core.compression import SharedDeflate
from wsgate.core.limits import Limits
from wsgate.core.responses import outbound_frame
from wsgate.exceptions import GoneError, PayloadTooLargeError, WsgateError
from wsgate.server.connection import (
    BINARY,
    COMPRESS_MIN_BYTES,
    PICOWS_COPY_LIMIT,
    TEXT,
    LiveConnection,
    wire_frame,
)
from wsgate.store.base import Store

log = logging.getLogger("wsgate.gateway")

#: What a node does for the others, by name (`Delivery.operations`).
Operation = Callable[..., Awaitable[Any]]


class NodeUnreachable(WsgateError):
    """Another node did not answer (dead, stopping, or past the call timeout)."""


class NodeFailed(WsgateError):
    """Another node answered that the operation failed there (its log has why): an
    error for the caller, not a connection gone."""


class OtherNodes(Protocol):
    """The rest of the gateway, seen from one node: how to reach what is not held here."""

    async def start(self, operations: dict[str, Operation]) -> None:
        """Serve the other nodes' requests with `operations` (name -> coroutine)."""

    async def stop(self) -> None: ...

    def stamp(self, connection_id: str) -> str:
        """A new connection id, marked as held by this node if ids say where they live."""

    async def locate(self, connection_id: str) -> Hashable | None:
        """The other node that holds `connection_id`, or None (here, or nowhere)."""

    async def nodes_for(self, topic: str | None) -> list[Any]:
        """The other nodes that may hold `topic`'s subscribers (None: any connection)."""

    async def call(self, node: Any, operation: str, *args: Any) -> Any:
        """Run `operation(*args)` on `node`; NodeUnreachable if it does not answer,
        NodeFailed if the operation raised there."""


class Delivery:
    """The connections API of one gateway node (`wsgate.connection_api.ConnectionsAPI`)."""

    def __init__(
        self,
        live: dict[str, LiveConnection],
        store: Store,
        limits: Limits,
        *,
        node: str,
        others: OtherNodes | None = None,
    ) -> None:
        #: This node's open connections, by id (the gateway adds and removes them).
        self.live = live
        self.store = store
        self.limits = limits
        #: This node's id in the store's records.
        self.node = node
        self.others = others
        #: What this node does for the others, by name (also how `_on_owner` runs here).
        self.operations: dict[str, Operation] = {
            "send": self._send_here,
            "fan_out": self._fan_out_here,
            "subscribe": store.subscribe,
            "unsubscribe": store.unsubscribe,
            "info": self._info_here,
            "disconnect": self._disconnect_here,
            "ids": store.connection_ids,
            "subscribers": store.subscribers,
            "close_unrecorded": self._close_unrecorded,
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        #: What every successful `send` returns: a future already done (awaiting it is
        #: free, and a done future stays done whoever awaits or cancels it).
        self._sent: asyncio.Future[None] | None = None
        #: Done when the last fan-out called has delivered here and sent its requests.
        self._last_fan_out: asyncio.Future[None] | None = None
        #: For `/metrics`: messages written here, sends refused (too large, closing), and
        #: sends to connections gone (410).
        self.sent = self.send_failures = self.gone = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sent = self._loop.create_future()
        self._sent.set_result(None)
        if self.others is not None:
            await self.others.start(self.operations)

    async def stop(self) -> None:
        if self.others is not None:
            await self.others.stop()

    def new_connection_id(self, drawn: str) -> str:
        return drawn if self.others is None else self.others.stamp(drawn)

    # -- one connection ------------------------------------------------------------------

    def send(self, connection_id: str, data: Data) -> Awaitable[None]:
        """Write now, without a task: the result is a done future (or the slow paths)."""
        conn = self.live.get(connection_id)
        if conn is None:
            return self._send_elsewhere(connection_id, data)
        try:
            is_text, frame = outbound_frame(data, self.limits.max_message_bytes)
        except PayloadTooLargeError as exc:
            return self._failed(exc)
        if not conn.write(TEXT if is_text else BINARY, frame):
            return self._failed(GoneError(connection_id))
        self.sent += 1
        if conn.backed_up:
            return conn.wait_for_drain()
        assert self._sent is not None
        return self._sent

    def send_from_thread(self, connection_id: str, data: Data) -> bool:
        """A sync handler's send: framed on its thread, written by the loop, not awaited.

        The connection must be open here now, and not backed up; if it closes before the
        loop writes, the message is dropped, as a `PostToConnection` answered 200 just
        before a close is on AWS. Anything else (a connection on another node, gone: 410,
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
        self._loop.call_soon_threadsafe(conn.write, TEXT if is_text else BINARY, frame)
        self.sent += 1  # from a thread: the GIL keeps the count near enough
        return True

    def _failed(self, exc: Exception) -> asyncio.Future[None]:
        assert self._loop is not None
        self.send_failures += 1
        failed = self._loop.create_future()
        failed.set_exception(exc)
        return failed

    async def _send_elsewhere(self, connection_id: str, data: Data) -> None:
        node = await self._locate(connection_id)
        if node is None:
            raise await self._gone(connection_id)
        assert self.others is not None
        is_text, frame = outbound_frame(data, self.limits.max_message_bytes)
        try:
            sent = await self.others.call(node, "send", connection_id, is_text, frame)
        except NodeUnreachable as exc:
            raise GoneError(connection_id) from exc
        if not sent:
            raise GoneError(connection_id)

    async def _send_here(self, connection_id: str, is_text: bool, frame: bytes) -> bool:
        conn = self.live.get(connection_id)
        if conn is None:
            await self._gone(connection_id)
            return False
        # No waiting for a backed-up client here: the asking node's call has a timeout of
        # its own. Across nodes, a client that does not read meets max_send_buffer_bytes.
        written = conn.write(TEXT if is_text else BINARY, frame)
        self.sent += written
        return written

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
        if conn is None or not conn.is_open:
            return None  # closing (DeleteConnection returned, say) is gone, as for `send`
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

    async def _close_unrecorded(self) -> int:
        """Close (1001) this node's connections the store no longer holds: purged while the
        node was cut off, or lost with a Redis restart. Unreachable from other nodes, they
        would linger; closed, their clients reconnect and are recorded again."""
        candidates = list(self.live)  # each recorded before it went live: read them first
        recorded = set(await self.store.connection_ids())
        closed = 0
        for connection_id in candidates:
            conn = self.live.get(connection_id)
            if conn is not None and connection_id not in recorded and conn.is_open:
                conn.start_close(RECORD_LOST)
                closed += 1
        return closed

    async def _disconnect_here(self, connection_id: str) -> bool:
        conn = self.live.get(connection_id)
        if conn is None or not conn.is_open:
            return False
        conn.start_close(CLOSED_BY_MANAGEMENT_API)
        return True

    async def _on_owner(self, operation: str, connection_id: str, *args: Any) -> Any:
        """Run `operation` where `connection_id` lives: here, or on the node holding it."""
        if connection_id not in self.live:
            node = await self._locate(connection_id)
            if node is not None:
                assert self.others is not None
                try:
                    return await self.others.call(node, operation, connection_id, *args)
                except NodeUnreachable:
                    log.warning("%s %s: node %s does not answer", operation, connection_id, node)
                    return None  # as for a connection that is gone
        return await self.operations[operation](connection_id, *args)

    async def _locate(self, connection_id: str) -> Hashable | None:
        return None if self.others is None else await self.others.locate(connection_id)

    async def _gone(self, connection_id: str) -> GoneError:
        """A connection that is not live here: drop its record and subscriptions, as on 410.

        Only this node's records are dropped: in a store shared by several gateways
        (DynamoDB) a record of another node belongs to a socket this node cannot see and
        no `OtherNodes` reaches; it is reported as gone and left alone.
        """
        self.gone += 1
        record = await self.store.get_connection(connection_id)
        if record is None or record.node == self.node:
            await self.store.remove_connection(connection_id)
        else:
            log.warning(
                "connection %s is held by gateway node %s, which this node cannot reach",
                connection_id,
                record.node,
            )
        return GoneError(connection_id)

    # -- many connections ----------------------------------------------------------------

    async def broadcast(self, data: Data, exclude: Iterable[str] = ()) -> int:
        return await self._fan_out(None, data, exclude)

    async def publish(self, topic: str, data: Data, exclude: Iterable[str] = ()) -> int:
        return await self._fan_out(topic, data, exclude)

    async def _fan_out(self, topic: str | None, data: Data, exclude: Iterable[str]) -> int:
        """Deliver to `topic`'s subscribers (None: everyone), here and on every other node."""
        is_text, frame = outbound_frame(data, self.limits.max_message_bytes)
        skip = tuple(exclude)
        others = self.others
        if others is None:
            return await self._fan_out_here(topic, is_text, frame, skip)
        # In order of calls: the reads run concurrently, the deliveries one after another.
        assert self._loop is not None
        previous, done = self._last_fan_out, self._loop.create_future()
        self._last_fan_out = done
        try:
            # gather()'s result is a list where its stub says a tuple, which the compiled
            # build checks (and refuses): awaited as Any, then read as the lists they are.
            reads: Any = asyncio.gather(others.nodes_for(topic), self._targets(topic))
            found = await reads
            nodes: list[Any] = found[0]
            targets: list[str] = found[1]
            if previous is not None and not previous.done():
                await asyncio.shield(previous)
            here, gone = self._write_here(targets, is_text, frame, skip)
            # Tasks start in the order they are made, and each `call` takes its place in
            # line (OtherNodes) before its first wait: before the next fan-out goes on.
            calls = [
                asyncio.ensure_future(others.call(node, "fan_out", topic, is_text, frame, skip))
                for node in nodes
            ]
        finally:
            if not done.done():
                done.set_result(None)
        counts = await asyncio.gather(*calls, return_exceptions=True)
        for connection_id in gone:
            await self._gone(connection_id)
        delivered = here
        for node, count in zip(nodes, counts, strict=True):
            if isinstance(count, NodeUnreachable):  # its connections are gone with it
                log.warning("fan-out: node %s does not answer: %s", node, count)
            elif isinstance(count, BaseException):
                raise count
            else:
                delivered += int(count)
        return delivered

    async def _fan_out_here(
        self, topic: str | None, is_text: bool, frame: bytes, exclude: Sequence[str]
    ) -> int:
        targets = await self._targets(topic)
        delivered, gone = self._write_here(targets, is_text, frame, exclude)
        for connection_id in gone:
            await self._gone(connection_id)
        return delivered

    async def _targets(self, topic: str | None) -> list[str]:
        """This node's connections subscribed to `topic` (None: all of them)."""
        if topic is None:
            return await self.store.connection_ids()
        return await self.store.subscribers(topic)

    def _write_here(
        self, targets: list[str], is_text: bool, frame: bytes, exclude: Sequence[str]
    ) -> tuple[int, list[str]]:
        """Write to the `targets` open here: how many, and the ids no longer open."""
        kind = TEXT if is_text else BINARY
        wire = wire_frame(kind, frame) if len(frame) > PICOWS_COPY_LIMIT else None
        # Compressed at most once per window size, if a receiver compresses (see SharedDeflate).
        shared = SharedDeflate(frame) if len(frame) >= COMPRESS_MIN_BYTES else None
        skip = set(exclude)
        live = self.live
        delivered = 0
        gone: list[str] = []
        for connection_id in targets:
            if connection_id in skip:
                continue
            conn = live.get(connection_id)
            if conn is None:
                gone.append(connection_id)
            elif conn.write(kind, frame, wire, shared):
                delivered += 1
        self.sent += delivered
        return delivered, gone

    async def connection_ids(self) -> list[str]:
        """Every open connection's id, on every node (the management API's list)."""
        return await self._gathered(None, "ids")

    async def subscribers(self, topic: str) -> list[str]:
        """The ids subscribed to `topic`, on every node (who is in a room)."""
        return await self._gathered(topic, "subscribers", topic)

    async def _gathered(self, topic: str | None, operation: str, *args: Any) -> list[str]:
        """The ids `operation` lists here and on every other node that may hold `topic`'s
        subscribers (None: any connection); a node that does not answer adds none."""
        ids: list[str] = list(await self.operations[operation](*args))
        others = self.others
        if others is not None:
            nodes = await others.nodes_for(topic)
            # All at once: a node that does not answer costs one call timeout, not one each.
            answers = await asyncio.gather(
                *(others.call(node, operation, *args) for node in nodes), return_exceptions=True
            )
            for node, answer in zip(nodes, answers, strict=True):
                if isinstance(answer, NodeUnreachable):
                    log.warning("listing %s: node %s does not answer: %s", operation, node, answer)
                elif isinstance(answer, BaseException):
                    raise answer
                else:
                    ids.extend(answer)
        return ids


#: How many bytes a sync handler's thread may queue for the loop to write between two
#: sends that wait for the loop (see `Delivery.send_from_thread`).
FAST_SEND_WINDOW = 256 * 1024
_thread_sends = threading.local()
