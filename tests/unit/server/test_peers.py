"""Workers' bus (server/peers.py): what a caller sees when another worker's operation fails."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from wsgate.server.delivery import NodeFailed, NodeUnreachable
from wsgate.server.peers import Peers


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
