"""Throttling and the connection cap (docs/compatibility.md §8): token buckets for new
connections (429 at the handshake) and for each connection's messages (a `Too Many
Requests` error frame, the connection kept), and a cap on open connections (429)."""

from __future__ import annotations

import json
import logging
import time
from contextlib import ExitStack
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from tests.conftest import TIMEOUT, recv, run_gateway, ws_connect
from wsgate import App, connections
from wsgate.core.limits import Limits


def echo_app() -> App:
    app = App(name="quotas")

    @app.default
    async def echo(event: Any, context: Any) -> None:
        await connections.send(event.connection_id, event["body"])

    return app


def refused(url: str) -> tuple[int, Any]:
    with pytest.raises(InvalidStatus) as info:
        ws_connect(url)
    return info.value.response.status_code, json.loads(info.value.response.body)


def test_a_burst_of_connects_over_the_limit_gets_429(caplog: pytest.LogCaptureFixture) -> None:
    """Three at once (the burst), then one a second; the refusals are logged once."""
    limits = Limits(connect_rate=1.0, connect_burst=3)
    with run_gateway(echo_app(), limits=limits) as server, ExitStack() as stack:
        opened = [stack.enter_context(ws_connect(server.url)) for _ in range(3)]
        with caplog.at_level(logging.WARNING, logger="wsgate.gateway"):
            refusals = [refused(server.url) for _ in range(4)]
        assert refusals == [(429, {"message": "Too Many Requests"})] * 4
        for ws in opened:
            ws.send("still here")
            assert recv(ws) == "still here"
        time.sleep(1.1)  # a token comes back each second
        with ws_connect(server.url) as ws:
            ws.send("again")
            assert recv(ws) == "again"
    lines = [r.getMessage() for r in caplog.records if "new connections a second" in r.getMessage()]
    assert lines == ["over 1.0 new connections a second: 1 handshakes got 429"]


def test_a_message_flood_gets_error_frames_and_the_connection_stays_usable() -> None:
    limits = Limits(message_rate=2.0, message_burst=5)
    with run_gateway(echo_app(), limits=limits) as server, ws_connect(server.url) as ws:
        for index in range(30):
            ws.send(f"m{index}")
        received = [recv(ws) for _ in range(30)]
        echoes = [text for text in received if isinstance(text, str) and text.startswith("m")]
        frames = [json.loads(text) for text in received if text not in echoes]
        assert 5 <= len(echoes) <= 7  # the burst, and what trickled back meanwhile
        assert len(frames) == 30 - len(echoes)
        (cid,) = server.gateway.live
        for frame in frames:
            assert list(frame) == ["message", "connectionId", "requestId"]
            assert frame["message"] == "Too Many Requests"
            assert frame["connectionId"] == cid
        raw = next(text for text in received if text not in echoes)
        assert raw.startswith('{"message": "Too Many Requests", "connectionId":"')
        time.sleep(0.6)  # a token back
        ws.send("after the flood")
        assert recv(ws) == "after the flood"


def test_connections_over_the_cap_get_429_until_one_leaves() -> None:
    with run_gateway(echo_app(), limits=Limits(max_connections=2)) as server, ExitStack() as stack:
        first = stack.enter_context(ws_connect(server.url))
        stack.enter_context(ws_connect(server.url))
        assert refused(server.url) == (429, {"message": "Too Many Requests"})
        first.close()
        deadline = time.monotonic() + TIMEOUT
        while len(server.gateway.live) > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        with ws_connect(server.url) as third:
            third.send("in")
            assert recv(third) == "in"


def test_no_throttling_unless_configured() -> None:
    limits = Limits()
    assert (limits.connect_rate, limits.message_rate, limits.max_connections) == (None,) * 3
    with run_gateway(echo_app()) as server, ws_connect(server.url) as ws:
        for index in range(300):
            ws.send(f"m{index}")
        assert [recv(ws) for _ in range(300)] == [f"m{index}" for index in range(300)]


@pytest.mark.parametrize(
    "options",
    [{"connect_rate": 0}, {"message_rate": -1.0}, {"message_burst": 0}, {"max_connections": 0}],
)
def test_limits_refuse_values_out_of_range(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Limits(**options)
