"""`wsgate.connections`: how handlers reach the connection table and other clients.

    from wsgate import connections

    @app.route("sendMessage")
    async def send_message(event, context):            # async handler: await the call
        await connections.send(event.json["connectionId"], event.json["message"])

    def default(event, context):                       # sync handler: call it plainly
        connections.broadcast(event["body"])

One object, one name per operation, usable from both kinds of handler: called from the
event loop (an async handler) each method returns an awaitable task that is already
running; called from a sync handler's worker thread it blocks until done and returns the
result. Whichever front end runs the app (the local gateway, or the Lambda adapter on AWS)
binds the implementation, so handler code never changes between the two.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from wsgate.exceptions import GoneError, WsgateError
from wsgate.store.base import Store

Data = str | bytes | Any
"""What can be sent: text, bytes (text if valid UTF-8), or any JSON-serialisable value."""


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What `info()` tells about a connection (the management API's `GetConnection`)."""

    connection_id: str
    connected_at: int  # epoch milliseconds
    last_active_at: int  # epoch milliseconds
    source_ip: str
    user_agent: str | None
    stage: str
    topics: tuple[str, ...]
    authorizer: dict[str, Any] | None = None


class ConnectionsAPI(Protocol):
    """What a front end implements to serve `wsgate.connections`.

    `send` may return a future that is already done (the local gateway writes at once,
    without a task, on the hot path of every echo); the others are coroutines.
    `send_from_thread` is `send` for a sync handler's thread without the round trip to
    the loop and back: True if the message was framed and handed to the loop for an open
    connection; False if the caller must take the waiting path (`send` on the loop).
    """

    def send(self, connection_id: str, data: Data) -> Awaitable[None]: ...
    def send_from_thread(self, connection_id: str, data: Data) -> bool: ...
    async def broadcast(self, data: Data, exclude: Iterable[str] = ()) -> int: ...
    async def subscribe(self, connection_id: str, topic: str) -> None: ...
    async def unsubscribe(self, connection_id: str, topic: str) -> bool: ...
    async def publish(self, topic: str, data: Data, exclude: Iterable[str] = ()) -> int: ...
    async def subscribers(self, topic: str) -> list[str]: ...
    async def info(self, connection_id: str) -> ConnectionInfo: ...
    async def disconnect(self, connection_id: str) -> None: ...


class StoreBackedConnections:
    """The half of `ConnectionsAPI` that only needs the store; subclasses deliver messages.

    Shared by the local gateway and the AWS implementation, which differ only in how a
    message reaches a connection (`send`, `_fan_out`, `info`, `disconnect`).
    """

    store: Store

    async def _fan_out(self, targets: Iterable[str], data: Data, exclude: Iterable[str]) -> int:
        raise NotImplementedError

    async def broadcast(self, data: Data, exclude: Iterable[str] = ()) -> int:
        return await self._fan_out(await self.store.connection_ids(), data, exclude)

    async def publish(self, topic: str, data: Data, exclude: Iterable[str] = ()) -> int:
        return await self._fan_out(await self.store.subscribers(topic), data, exclude)

    async def subscribe(self, connection_id: str, topic: str) -> None:
        if not await self.store.subscribe(connection_id, topic):
            raise GoneError(connection_id)

    async def unsubscribe(self, connection_id: str, topic: str) -> bool:
        return await self.store.unsubscribe(connection_id, topic)

    async def subscribers(self, topic: str) -> list[str]:
        return await self.store.subscribers(topic)


@dataclass(frozen=True, slots=True)
class Binding:
    """An implementation and the loop it runs on; made on that loop's thread."""

    api: ConnectionsAPI
    loop: asyncio.AbstractEventLoop
    thread: int = field(default_factory=threading.get_ident)


current: contextvars.ContextVar[Binding] = contextvars.ContextVar("wsgate_connections")
"""Set by the front end around each handler call (copied into worker threads)."""

_fallback: Binding | None = None


def bind_default(binding: Binding | None) -> None:
    """Bind the API for code that runs outside a handler (background tasks of the app)."""
    global _fallback
    _fallback = binding


class Connections:
    """The handler-facing API; see the module docstring for how calls behave."""

    @staticmethod
    def _call(operation: Callable[[ConnectionsAPI], Awaitable[Any]]) -> Any:
        binding = current.get(None) or _fallback
        if binding is None:
            raise WsgateError(
                "wsgate.connections is only available while a gateway runs the app "
                "(inside a handler, or after `wsgate serve` started)"
            )
        # The thread tells whether this is the loop's own thread (an async handler);
        # asyncio.get_running_loop() would cost a getpid() system call on Python 3.11.
        if threading.get_ident() == binding.thread:
            return _started(binding, operation(binding.api))
        if _on_a_foreign_loop():
            raise WsgateError("wsgate.connections was called from a foreign event loop")

        async def on_the_loop() -> Any:
            return await operation(binding.api)

        return asyncio.run_coroutine_threadsafe(on_the_loop(), binding.loop).result()

    def send(self, connection_id: str, data: Data) -> Any:
        """Send one message to a connection. Raises GoneError if it is not open."""
        binding = current.get(None) or _fallback
        if binding is not None:
            if threading.get_ident() == binding.thread:
                # `_call`'s first case, without its lambda: every echo comes this way.
                return _started(binding, binding.api.send(connection_id, data))
            if not _on_a_foreign_loop() and binding.api.send_from_thread(connection_id, data):
                return None  # what the waiting path returns, without its two thread hops
        return self._call(lambda api: api.send(connection_id, data))

    def broadcast(self, data: Data, exclude: Iterable[str] = ()) -> Any:
        """Send to every open connection but `exclude`; returns how many received it."""
        return self._call(lambda api: api.broadcast(data, tuple(exclude)))

    def subscribe(self, connection_id: str, topic: str) -> Any:
        """Subscribe a connection to a topic. Raises GoneError if it is not open."""
        return self._call(lambda api: api.subscribe(connection_id, topic))

    def unsubscribe(self, connection_id: str, topic: str) -> Any:
        """Unsubscribe; returns False if the connection was not subscribed."""
        return self._call(lambda api: api.unsubscribe(connection_id, topic))

    def publish(self, topic: str, data: Data, exclude: Iterable[str] = ()) -> Any:
        """Send to every subscriber of `topic` but `exclude`; returns how many received it."""
        return self._call(lambda api: api.publish(topic, data, tuple(exclude)))

    def subscribers(self, topic: str) -> Any:
        """Ids of the connections subscribed to `topic` (who is in a room), on every node."""
        return self._call(lambda api: api.subscribers(topic))

    def info(self, connection_id: str) -> Any:
        """A `ConnectionInfo` for an open connection. Raises GoneError if it is not open."""
        return self._call(lambda api: api.info(connection_id))

    def disconnect(self, connection_id: str) -> Any:
        """Close a connection with 1000, as `DeleteConnection` does. GoneError if not open."""
        return self._call(lambda api: api.disconnect(connection_id))


def _on_a_foreign_loop() -> bool:
    """Whether this thread (not the gateway's) runs an event loop of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _started(binding: Binding, result: Awaitable[Any]) -> asyncio.Future[Any]:
    """An operation's result as a running task, or as it is if already a future."""
    if isinstance(result, asyncio.Future):
        return result  # done already (the local gateway's sends): no task needed
    return binding.loop.create_task(result)  # type: ignore[arg-type]


connections = Connections()
