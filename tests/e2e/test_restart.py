"""A gateway restarted on the same SQLite store starts clean, however the last one ended."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from websockets.sync.client import ClientConnection

from tests.conftest import TIMEOUT, management_client, recv, ws_connect
from tests.e2e.test_cli import (
    EXAMPLES,
    free_port,
    live_ids,
    stop,
    wait_for_connections,
    wsgate_serve,
)

pytestmark = pytest.mark.slow


def frame(topic: str, data: object) -> str:
    return json.dumps({"type": "message", "topic": topic, "data": data})


def wait_subscribed(publisher: ClientConnection, subscriber: ClientConnection, topic: str) -> None:
    """Publish probes until `subscriber` gets one, then drain both sides."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        assert time.monotonic() < deadline, "the subscription never took effect"
        publisher.send(frame(topic, "__probe__"))
        try:
            got = subscriber.recv(timeout=0.1)
        except TimeoutError:
            continue
        assert json.loads(got) == {"topic": topic, "data": "__probe__"}
        break
    time.sleep(0.3)
    for ws in (publisher, subscriber):
        while True:
            try:
                got = ws.recv(timeout=0)
            except TimeoutError:
                break
            assert json.loads(got) == {"topic": topic, "data": "__probe__"}


@pytest.mark.parametrize("ending", ["sigint", "kill-9"])
def test_restart_forgets_old_connections_and_subscriptions(tmp_path: Path, ending: str) -> None:
    """After SIGINT or kill -9, a restart on the same store has no old connection or topic."""
    port = free_port()
    url = f"ws://127.0.0.1:{port}/dev"
    management = management_client(SimpleNamespace(management_url=f"http://127.0.0.1:{port}/dev"))
    args = (str(EXAMPLES / "topics.py"), "--store", f"sqlite:///{tmp_path / 'state.db'}")

    with wsgate_serve(*args, cwd=tmp_path, port=port) as first:
        with ws_connect(url) as a, ws_connect(url) as b:
            for ws in (a, b):
                ws.send(json.dumps({"type": "subscribe", "topic": "news"}))
            # Each one publishing to the other proves both subscriptions are in place.
            wait_subscribed(a, b, "news")
            wait_subscribed(b, a, "news")
            old_ids = wait_for_connections(port, 2)
            for connection_id in old_ids:
                info = management.get_connection(ConnectionId=connection_id)
                assert info["Identity"]["SourceIp"] == "127.0.0.1"
            if ending == "sigint":
                assert stop(first) == 0
            else:
                first.kill()
                assert first.wait(timeout=TIMEOUT) == -9

    with wsgate_serve(*args, cwd=tmp_path, port=port) as second:
        assert live_ids(port) == []
        for connection_id in old_ids:
            with pytest.raises(management.exceptions.GoneException):
                management.get_connection(ConnectionId=connection_id)
        with ws_connect(url) as subscriber, ws_connect(url) as publisher:
            subscriber.send(json.dumps({"type": "subscribe", "topic": "news"}))
            wait_subscribed(publisher, subscriber, "news")
            new_ids = wait_for_connections(port, 2)
            assert not set(new_ids) & set(old_ids)
            publisher.send(frame("news", {"after": "restart"}))
            assert json.loads(recv(subscriber)) == {"topic": "news", "data": {"after": "restart"}}
            time.sleep(0.3)
            for ws in (subscriber, publisher):  # exactly one copy, to the subscriber only
                with pytest.raises(TimeoutError):
                    ws.recv(timeout=0)
        assert stop(second) == 0
