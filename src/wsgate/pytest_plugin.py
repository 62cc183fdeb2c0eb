"""wsgate's pytest plugin (loaded by pytest when wsgate is installed): `wsgate_gateway`.

    def test_echo(wsgate_gateway):
        gateway = wsgate_gateway(app)  # TestGateway, started; stopped after the test
        client = gateway.connect()
        client.send("hi")
        assert client.receive() == "hi"

`wsgate_gateway(app, socketless=True)` serves it without a port (`wsgate.testing`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from wsgate.app import App
from wsgate.testing import TestGateway


@pytest.fixture
def wsgate_gateway() -> Iterator[Callable[..., TestGateway]]:
    """Start `TestGateway(app, **options)`s for one test; every one is stopped after it."""
    started: list[TestGateway] = []

    def start(app: App, **options: Any) -> TestGateway:
        gateway = TestGateway(app, **options).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in reversed(started):
        gateway.stop()
