"""An async handler that blocks the event loop stalls every client: the gateway says
which route and connection did it (docs/compatibility.md §9.1)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from tests.conftest import recv, run_gateway, ws_connect
from wsgate import App, connections


def test_a_handler_blocking_the_loop_is_named_in_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App(name="blocking")

    @app.route("whoAmI")
    async def who_am_i(event: Any, context: Any) -> None:
        await connections.send(event.connection_id, event.connection_id)

    @app.route("nap")
    async def nap(event: Any, context: Any) -> None:
        time.sleep(1.0)  # the mistake: blocks every connection of the gateway
        await connections.send(event.connection_id, "awake")

    caplog.set_level(logging.WARNING, logger="wsgate")
    with run_gateway(app) as server, ws_connect(server.url) as ws:
        ws.send(json.dumps({"action": "whoAmI"}))
        connection_id = str(recv(ws))
        ws.send(json.dumps({"action": "nap"}))
        assert recv(ws) == "awake"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    blocked = [m for m in warnings if "event loop" in m]
    assert len(blocked) == 1, warnings
    assert "nap" in blocked[0] and connection_id in blocked[0], blocked[0]
    assert "sync handler" in blocked[0], blocked[0]
