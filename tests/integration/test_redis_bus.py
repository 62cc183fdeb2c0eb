"""RedisBus (server/redis_bus.py) between two nodes in one process, on a real redis-server:
what a caller sees when the other node fails, idles, or is purged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.redis_server import (  # noqa: F401 (a fixture)
    RedisServer,
    redis_server_fixture,
    redis_url,
)
from wsgate.server.delivery import NodeFailed, Operation
from wsgate.server.redis_bus import RedisBus
from wsgate.store import ConnectionRecord
from wsgate.store.redis import RedisStore


@asynccontextmanager
async def node(
    url: str, name: str, operations: dict[str, Operation], **options: Any
) -> AsyncIterator[RedisBus]:
    store = RedisStore(url, node=name)
    await store.open()
    bus = RedisBus(store, name, **options)
    await bus.start(operations)
    try:
        yield bus
    finally:
        await bus.stop()
        await store.close()


async def echo(*args: Any) -> Any:
    return list(args)


def test_an_idle_listener_keeps_listening(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A node with nothing to read for longer than the store's socket_timeout still
    listens: no reconnect (during which requests to it would find no one), and a call
    after the idle time is answered."""
    url = redis_url(redis_server.port) + "&socket_timeout=0.3"

    async def main() -> None:
        async with node(url, "a", {}) as a, node(url, "b", {"echo": echo}):
            await asyncio.sleep(1.0)
            assert await a.call("b", "echo", "hi") == ["hi"]

    with caplog.at_level(logging.WARNING, logger="wsgate.nodes"):
        asyncio.run(main())
    assert "lost Redis" not in caplog.text


def test_a_failed_operation_is_a_failure_not_an_unreachable_node(
    redis_server: RedisServer,
) -> None:
    """An operation that raises on the other node, or answers what JSON cannot carry, is
    NodeFailed at once (Delivery reports it as an error, never as a 410 that makes the app
    forget a live connection); the node goes on answering."""
    url = redis_url(redis_server.port)

    async def fails(*args: Any) -> Any:
        raise RuntimeError("the store broke")

    async def unsendable(*args: Any) -> Any:
        return object()

    async def main() -> None:
        operations = {"fails": fails, "unsendable": unsendable, "echo": echo}
        async with (
            node(url, "a", {}, call_timeout=3.0) as a,
            node(url, "b", operations, call_timeout=3.0),
        ):
            loop = asyncio.get_running_loop()
            for operation in ("fails", "unsendable"):
                started = loop.time()
                with pytest.raises(NodeFailed):
                    await a.call("b", operation, "x")
                assert loop.time() - started < 1.0, f"{operation}: waited for the timeout"
            assert await a.call("b", "echo", "still here") == ["still here"]

    asyncio.run(main())


def test_a_node_starting_during_a_purge_keeps_its_connection(redis_server: RedisServer) -> None:
    """A survivor looking for dead nodes reads which nodes hold connections, then which are
    alive: a node that heartbeats and takes its first connection between the two reads is
    alive, not purged."""
    url = redis_url(redis_server.port)

    async def main() -> None:
        async with node(url, "a", {}) as a:
            newcomer = RedisStore(url, node="n")
            await newcomer.open()
            store = a.store
            reads = {"nodes": store.nodes, "live_nodes": store.live_nodes}
            first: list[str] = []

            def hooked(name: str) -> Any:
                async def read() -> list[str]:
                    result = await reads[name]()
                    if not first:  # the newcomer starts between the two reads
                        first.append(name)
                        await newcomer.heartbeat("n", 30.0)
                        await newcomer.add_connection(
                            ConnectionRecord("n1", connected_at=1, source_ip="", node="n")
                        )
                    return result

                return read

            store.nodes = hooked("nodes")  # type: ignore[method-assign]
            store.live_nodes = hooked("live_nodes")  # type: ignore[method-assign]
            await a._purge_dead()
            assert await newcomer.get_connection("n1") is not None
            await newcomer.close()

    asyncio.run(main())
