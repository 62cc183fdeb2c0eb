"""Delivery (server/delivery.py) over other nodes that are slow or do not answer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from wsgate.core.limits import Limits
from wsgate.server.delivery import Delivery, NodeUnreachable, Operation
from wsgate.store.memory import MemoryStore


class SlowNodes:
    """Other nodes that each take `delay` to answer "ids"; "dead" ones then fail."""

    def __init__(self, delay: float, answers: dict[str, list[str] | None]) -> None:
        self.delay = delay
        self.answers = answers

    async def start(self, operations: dict[str, Operation]) -> None:
        pass

    async def stop(self) -> None:
        pass

    def stamp(self, connection_id: str) -> str:
        return connection_id

    async def locate(self, connection_id: str) -> str | None:
        return None

    async def nodes_for(self, topic: str | None) -> list[str]:
        return list(self.answers)

    async def call(self, node: Any, operation: str, *args: Any) -> Any:
        await asyncio.sleep(self.delay)
        answer = self.answers[node]
        if answer is None:
            raise NodeUnreachable(f"node {node} did not answer")
        return answer


def test_listing_asks_every_node_at_once() -> None:
    """The management API's list waits for the slowest node, not for the sum of them; a
    node that does not answer is left out."""
    others = SlowNodes(0.5, {"b": ["b1"], "c": None, "d": ["d1", "d2"]})

    async def main() -> None:
        delivery = Delivery({}, MemoryStore(), Limits(), node="a", others=others)
        await delivery.start()
        started = time.monotonic()
        ids = await delivery.connection_ids()
        assert time.monotonic() - started < 1.2  # one after the other: 1.5 s
        assert sorted(ids) == ["b1", "d1", "d2"]

    asyncio.run(main())
