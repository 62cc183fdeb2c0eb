"""RedisBus (server/redis_bus.py) between two nodes in one process, on a real redis-server."""

from __future__ import annotations

import asyncio
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
