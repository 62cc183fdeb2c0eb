"""Gateway nodes sharing a Redis store reach each other's connections through Redis.

Each node listens on one pub/sub channel of its own, `{P}:bus:NODE`. What `Delivery`
asks of another node (send to a connection it holds, deliver a publish to its own
subscribers, subscribe, info, disconnect, list) is one message on that node's channel,
and the answer one message on the asker's. Redis is the only thing between nodes: no
protocol of wsgate's own, no node addresses to configure.

- Where a connection lives: its record in the store names its node (`locate`).
- A publish goes to the nodes in `{P}:topic:TOPIC` (those with subscribers), one message
  per node, never one per subscriber. One node's messages to another travel in order on
  one channel and are handled in order, so subscribers see a publisher's messages in the
  order they were published.
- A node that is not listening answers nothing: PUBLISH says no one received the request,
  and the call fails at once (`NodeUnreachable`, which `Delivery` turns into 410). One
  that is listening but stuck fails after `call_timeout`.
- Requests leave a node in the order `call` was invoked (each PUBLISH waits for the one
  before it to be acknowledged), so two fan-outs started in order reach a node in order.
- Liveness: each node writes a heartbeat every `node_timeout / 3`; a node whose heartbeat
  is older than `node_timeout` (30 s by default) is dead, and the first survivor to notice
  purges its connections and subscriptions from the store (each batch atomically, so no
  two survivors remove the same record). A dead node's `$disconnect`s do not run: the
  node that held those sockets is gone, and running them elsewhere could run them twice.
  A node that finds its own heartbeat gone (it just started, or Redis restarted empty or
  was away) judges no one for a `node_timeout`: the others' heartbeats are missing for
  the same reason, and they write them again within a third of it. A node that stops
  cleanly forgets its heartbeat, so no one asks it anything.
- Redis unreachable: calls fail with the store's clear `StoreError`; the listener and the
  heartbeat retry with back-off (0.1 s doubling to 5 s) and log when Redis is lost and
  when it is back.

Messages are JSON (bytes as base64), never pickles: a node trusts Redis with the
connection table, not with running code.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import itertools
import json
import logging
from typing import TYPE_CHECKING, Any

from wsgate.connection_api import ConnectionInfo
from wsgate.exceptions import StoreError
from wsgate.server.delivery import NodeFailed, NodeUnreachable, Operation

if TYPE_CHECKING:
    from redis.asyncio.client import PubSub

    from wsgate.store.redis import RedisStore

log = logging.getLogger("wsgate.nodes")

#: How long a node waits for another's answer.
CALL_TIMEOUT = 5.0
#: A node whose heartbeat is older than this is dead (`--node-timeout`).
NODE_TIMEOUT = 30.0
_BACKOFF_FIRST, _BACKOFF_MAX = 0.1, 5.0
#: How long one read of the node's channel waits before the next. A read without a
#: timeout is not one: redis-py before 8 ends it at the store's socket_timeout (10 s), as
#: if Redis were lost, and each resubscribe leaves the node deaf a moment (its requests 410).
_LISTEN_POLL = 1.0


class RedisBus:
    """`OtherNodes` for gateway nodes that share a `RedisStore`."""

    def __init__(
        self,
        store: RedisStore,
        node: str,
        *,
        node_timeout: float = NODE_TIMEOUT,
        call_timeout: float = CALL_TIMEOUT,
    ) -> None:
        if node_timeout <= 0 or call_timeout <= 0:
            raise ValueError("node_timeout and call_timeout must be positive")
        self.store = store
        self.node = node
        self.node_timeout = node_timeout
        self.call_timeout = call_timeout
        self._operations: dict[str, Operation] = {}
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()
        #: Per node, the last request published to it, or being published: the next to
        #: the same node waits for it (requests to one node arrive in the order made).
        self._last_request: dict[str, asyncio.Future[None]] = {}
        #: Requests from other nodes, served in arrival order by their own task, so this
        #: node's listener settles answers to its own calls without waiting behind them.
        self._requests: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        #: No purging of dead nodes before this (loop time): see the module's docstring.
        self._judge_from = 0.0

    def channel(self, node: str) -> str:
        return f"{self.store.keys_start}bus:{node}"

    # -- OtherNodes --------------------------------------------------------------------

    async def start(self, operations: dict[str, Operation]) -> None:
        """Listen on this node's channel, heartbeat, and watch for dead nodes."""
        self._operations = operations
        await self._beat()
        self._tasks = [
            asyncio.create_task(self._listen(), name="wsgate-bus-listen"),
            asyncio.create_task(self._serve(), name="wsgate-bus-serve"),
            asyncio.create_task(self._keep_alive(), name="wsgate-bus-heartbeat"),
        ]
        try:
            await asyncio.wait_for(self._subscribed.wait(), self.call_timeout)
        except TimeoutError as exc:
            await self.stop()
            raise StoreError(f"cannot listen on Redis at {self.store.where}") from exc

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(NodeUnreachable("this node is stopping"))
        self._waiting.clear()
        try:
            await self.store.forget_heartbeat(self.node)
        except StoreError as exc:  # it expires by itself
            log.warning("node %s could not forget its heartbeat: %s", self.node, exc)

    def stamp(self, connection_id: str) -> str:
        return connection_id  # the store's record says where a connection lives

    async def locate(self, connection_id: str) -> str | None:
        record = await self.store.get_connection(connection_id)
        if record is None or record.node == self.node:
            return None
        return record.node

    async def nodes_for(self, topic: str | None) -> list[str]:
        if topic is None:
            nodes = await self.store.live_nodes()
        else:
            nodes = await self.store.nodes_of_topic(topic)
        return [node for node in nodes if node != self.node]

    async def call(self, node: Any, operation: str, *args: Any) -> Any:
        request_id = next(self._ids)
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = waiter
        message = {"id": request_id, "op": operation, "args": args, "from": self.node}
        # In order: before the first await, take a place after the request to the same
        # node published last; wait for it no longer than a call may take.
        target = str(node)
        previous = self._last_request.get(target)
        published = self._last_request[target] = waiter.get_loop().create_future()
        try:
            if previous is not None and not previous.done():
                try:
                    await asyncio.wait_for(asyncio.shield(previous), self.call_timeout)
                except TimeoutError:
                    raise NodeUnreachable(
                        f"node {node}: earlier requests still not sent after "
                        f"{self.call_timeout:g} s (is Redis slow?)"
                    ) from None
            client = self.store.redis_client()
            try:
                async with self.store.errors():
                    received = await client.publish(self.channel(str(node)), _encode(message))
            finally:
                published.set_result(None)
            if not received:
                raise NodeUnreachable(f"node {node} is not listening")
            try:
                return await asyncio.wait_for(waiter, self.call_timeout)
            except TimeoutError:
                raise NodeUnreachable(
                    f"node {node} did not answer {operation} within {self.call_timeout:g} s"
                ) from None
        finally:
            self._waiting.pop(request_id, None)
            if not published.done():  # cancelled while waiting for its turn
                published.set_result(None)
            if self._last_request.get(target) is published:
                del self._last_request[target]  # nothing after it: no entry per node kept

    # -- listening ---------------------------------------------------------------------

    async def _listen(self) -> None:
        """Read this node's channel for ever, reconnecting with back-off."""
        backoff = _BACKOFF_FIRST
        lost = False
        while True:
            pubsub: PubSub | None = None
            try:
                pubsub = self.store.redis_client().pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self.channel(self.node))
                self._subscribed.set()
                if lost:
                    log.warning(
                        "Redis at %s is back: node %s listens again", self.store.where, self.node
                    )
                    lost = False
                backoff = _BACKOFF_FIRST
                while True:
                    message = await pubsub.get_message(timeout=_LISTEN_POLL)
                    if message is not None:
                        await self._receive(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not lost:
                    log.error(
                        "node %s lost Redis at %s (%s); retrying", self.node, self.store.where, exc
                    )
                    lost = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _receive(self, data: str | bytes) -> None:
        """One message: an answer to this node's call (settled now), or a request (queued
        for `_serve`, which runs them in arrival order)."""
        try:
            message = _decode(data)
        except ValueError:
            log.error("node %s: dropped a message that is not wsgate's", self.node)
            return
        if "op" not in message:
            waiter = self._waiting.get(message.get("id", -1))
            if waiter is not None and not waiter.done():
                if message.get("ok"):
                    waiter.set_result(message.get("value"))
                else:
                    waiter.set_exception(NodeFailed(str(message.get("error"))))
            return
        self._requests.put_nowait(message)

    async def _serve(self) -> None:
        """Run the other nodes' requests one after another, in the order they arrived."""
        while True:
            message = await self._requests.get()
            try:
                await self._answer(message)
            except Exception:  # answering must go on whatever one request did
                log.exception("node %s: a request from another node failed", self.node)

    async def _answer(self, message: dict[str, Any]) -> None:
        request_id = message["id"]
        try:
            operation = self._operations[message["op"]]
            value = await operation(*message["args"])
            answer = _encode({"id": request_id, "ok": True, "value": value})
        except Exception as exc:  # answered, so the caller fails now instead of timing out
            log.exception(
                "node %s failed %s for node %s", self.node, message["op"], message["from"]
            )
            error = f"{type(exc).__name__}: {exc}"
            answer = _encode({"id": request_id, "ok": False, "error": error})
        try:
            async with self.store.errors():
                await self.store.redis_client().publish(self.channel(message["from"]), answer)
        except StoreError as exc:
            log.warning("node %s could not answer node %s: %s", self.node, message["from"], exc)

    # -- liveness ----------------------------------------------------------------------

    async def _keep_alive(self) -> None:
        """Heartbeat every third of the node timeout; purge the nodes that stopped."""
        interval = self.node_timeout / 3
        failing = False
        while True:
            await asyncio.sleep(interval)
            try:
                gap = await self._beat()
                if failing:
                    log.warning("node %s: heartbeat written again", self.node)
                    failing = False
            except Exception as exc:
                if not failing:
                    log.error("node %s: cannot write its heartbeat: %s", self.node, exc)
                    failing = True
                continue
            try:
                if gap:  # the others may have judged this node dead and dropped its records
                    await self._close_unrecorded()
                if asyncio.get_running_loop().time() >= self._judge_from:
                    await self._purge_dead()
            except Exception as exc:
                log.error("node %s: checking the other nodes failed: %s", self.node, exc)

    async def _beat(self) -> bool:
        """Write the heartbeat; whether there was a gap in it (it had expired). After a
        gap, hold off judging others (module doc)."""
        if await self.store.heartbeat(self.node, self.node_timeout):
            return False
        self._judge_from = asyncio.get_running_loop().time() + self.node_timeout
        return True

    async def _close_unrecorded(self) -> None:
        """After a gap in this node's heartbeat (its loop stalled, or Redis was lost or
        restarted), the table may no longer hold some of its connections: nobody could
        reach them. They are closed with 1001, so their clients reconnect and are
        recorded again; `$disconnect` runs once for each, as for any close."""
        closed = await self._operations["close_unrecorded"]()
        if closed:
            log.warning(
                "node %s: closed %d connections the store had lost (1001), so they reconnect",
                self.node,
                closed,
            )

    async def _purge_dead(self) -> None:
        # Holders first, then the living: a node that starts between the two reads (its
        # heartbeat comes before its first connection) is then among the living.
        holders = await self.store.nodes()
        alive = set(await self.store.live_nodes())
        for node in holders:
            if node != self.node and node not in alive:
                dropped = await self.store.purge_node(node)
                if dropped:
                    log.warning(
                        "node %s is dead (no heartbeat for %g s): dropped its %d connections",
                        node,
                        self.node_timeout,
                        dropped,
                    )


#: Markers of bytes and ConnectionInfo in a message: keys no JSON a user sends carries (a
#: NUL), so an authorizer context with a "$bytes" key stays a dict.
_BYTES, _INFO = "\u0000bytes", "\u0000info"


def _encode(message: dict[str, Any]) -> str:
    return json.dumps(message, default=_to_json, separators=(",", ":"))


def _to_json(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return {_BYTES: base64.b64encode(value).decode("ascii")}
    if isinstance(value, ConnectionInfo):
        return {_INFO: dataclasses.asdict(value)}
    raise TypeError(f"cannot send {type(value).__name__} to another node")


def _from_json(value: dict[str, Any]) -> Any:
    if _BYTES in value:
        return base64.b64decode(value[_BYTES])
    if _INFO in value:
        fields = value[_INFO]
        return ConnectionInfo(**{**fields, "topics": tuple(fields["topics"])})
    return value


def _decode(data: str | bytes) -> dict[str, Any]:
    message = json.loads(data, object_hook=_from_json)
    if not isinstance(message, dict) or "id" not in message:
        raise ValueError("not a wsgate node message")
    return message
