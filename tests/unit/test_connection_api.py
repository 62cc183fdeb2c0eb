"""`wsgate.connections` outside a running gateway says what is wrong instead of hanging."""

from __future__ import annotations

import asyncio

import pytest

from wsgate import WsgateError, connections


def test_connections_outside_a_gateway_is_a_clear_error() -> None:
    """Calling the API with no gateway running raises WsgateError naming the cause."""
    with pytest.raises(WsgateError, match="only available while a gateway runs the app"):
        connections.send("R1kmxc2VNjMCFIA=", "hello")


def test_connections_outside_a_gateway_from_async_code() -> None:
    """The same error from async code: nothing is scheduled on a loop that serves nobody."""

    async def call() -> None:
        connections.publish("news", "hello")

    with pytest.raises(WsgateError, match="only available"):
        asyncio.run(call())
