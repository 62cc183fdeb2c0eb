"""Workers' bus (server/peers.py): what a caller sees when another worker's operation fails."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from wsgate.core.limits import Limits
from wsgate.server.delivery import Delivery, NodeFailed, NodeUnreachable
from wsgate.server.peers import Peers
from wsgate.store.memory import MemoryStore


def test_an_operation_that_raises_on_a_peer_is_a_failure(tmp_path: Path) -> None:
    """NodeFailed, not the unreachable worker Delivery reports as 410 (a connection gone)."""

    async def fails(*args: Any) -> Any:
        raise RuntimeError("the store broke")

    async def main() -> None:
        first, second = Peers(0, 2, tmp_path), Peers(1, 2, tmp_path)
        await first.start({})
        await second.start({"subscribe": fails})
        try:
            with pytest.raises(NodeFailed) as failed:
                await first.call(1, "subscribe", "A123", "room")
            assert not isinstance(failed.value, NodeUnreachable)
            assert "the store broke" in str(failed.value)
        finally:
            await first.stop()
            await second.stop()

    asyncio.run(main())


def test_a_publish_asks_each_other_worker_once(tmp_path: Path) -> None:
    """A publish sends its frame to every other worker once, whatever the number of
    subscribers there, and adds up the deliveries each reports."""
    asked: list[tuple[int, str, bytes]] = []

    def worker_with_subscribers(worker: int, subscribers: int) -> Any:
        async def fan_out(topic: str, is_text: bool, frame: bytes, skip: Any) -> int:
            asked.append((worker, topic, frame))
            return subscribers

        return fan_out

    async def main() -> None:
        peers = [Peers(worker, 3, tmp_path) for worker in range(3)]
        await peers[1].start({"fan_out": worker_with_subscribers(1, 3)})
        await peers[2].start({"fan_out": worker_with_subscribers(2, 5)})
        publisher = Delivery({}, MemoryStore(), Limits(), node="w0", others=peers[0])
        await publisher.start()
        try:
            assert await publisher.publish("news", "hello") == 8
            assert await publisher.publish("news", "again") == 8
        finally:
            await publisher.stop()
            await peers[1].stop()
            await peers[2].stop()

    asyncio.run(main())
    assert sorted(asked) == [
        (1, "news", b"again"),
        (1, "news", b"hello"),
        (2, "news", b"again"),
        (2, "news", b"hello"),
    ]
