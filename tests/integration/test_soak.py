"""A short soak: connections come and go for 15 seconds while messages are published.

Churners connect, subscribe to random topics and vanish (a clean close, a TCP socket
dropped without a close frame, or right after the handshake) while a publisher publishes
without pause. The accounting is exact because it rests on what cannot race: a set of
long-lived subscribers, subscribed before the first publish and open after the last,
must each receive every publish once, in order; the publisher waits for each publish's
answer (a two-way route), so publishes are ordered. Churners must only break nothing.
Afterwards the store holds exactly the live connections, with no subscription left to a
connection that is gone, and once everyone leaves, nothing at all.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

from tests.conftest import TIMEOUT, TIMEOUT_FACTOR, recv, run_gateway, ws_connect
from tests.raw_client import CLOSE, RawClient, close_payload
from wsgate import App, connections
from wsgate.exceptions import GoneError
from wsgate.server.runner import Server

T = TypeVar("T")

SOAK_SECONDS = 15.0
STABLE = 5
CHURNERS = 4
TOPICS = ["stable", "t0", "t1", "t2"]


def soak_app(disconnects: Counter[int]) -> App:
    app = App(name="soak")

    @app.route("subscribe")
    async def subscribe(event: dict[str, Any], context: object) -> None:
        try:
            topic = event.json["topic"]  # type: ignore[attr-defined]
            await connections.subscribe(event["requestContext"]["connectionId"], topic)
        except GoneError:
            pass  # gone while its subscribe was on the way: nothing to keep

    @app.route("publish", return_response=True)
    async def publish(event: dict[str, Any], context: object) -> int:
        body = event.json  # type: ignore[attr-defined]
        return await connections.publish(body["topic"], json.dumps(body))

    @app.on_disconnect
    async def disconnect(event: dict[str, Any], context: object) -> None:
        disconnects[event["requestContext"]["disconnectStatusCode"]] += 1

    return app


def on_loop(server: Server, operation: Coroutine[Any, Any, T]) -> T:
    return asyncio.run_coroutine_threadsafe(operation, server.gateway.loop).result(TIMEOUT)


def churn(url: str, stop: threading.Event, seed: int, ways: Counter[str]) -> None:
    """Connect, subscribe to random topics, vanish in a random way; until `stop`."""
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            client = RawClient.connect(url)
        except OSError:
            ways["refused"] += 1
            continue
        with client:
            for topic in rng.sample(TOPICS, rng.randrange(len(TOPICS) + 1)):
                client.send_text(json.dumps({"action": "subscribe", "topic": topic}))
            way = rng.choice(["close", "drop", "drop", "at once"])
            if way == "close":
                time.sleep(rng.random() * 0.05)
                client.send(CLOSE, close_payload(1000))
                client.recv_close_code()
            elif way == "drop":
                time.sleep(rng.random() * 0.05)
            ways[way] += 1


def wait_until(condition: Any, what: str, within: float = 2 * TIMEOUT) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(0.05)


def test_churn_with_concurrent_publishes_loses_nothing(tmp_path: Path) -> None:
    """Every publish reaches every long-lived subscriber once, in order, however many
    clients come and go meanwhile; afterwards the store equals the live connections."""
    disconnects: Counter[int] = Counter()
    store = f"sqlite:///{tmp_path / 'soak.db'}"
    with run_gateway(soak_app(disconnects), store=store) as server, ExitStack() as stack:
        stable = [stack.enter_context(ws_connect(server.url)) for _ in range(STABLE)]
        for ws in stable:
            ws.send(json.dumps({"action": "subscribe", "topic": "stable"}))
        wait_until(
            lambda: len(on_loop(server, server.gateway.store.subscribers("stable"))) == STABLE,
            "the stable subscribers subscribed",
        )
        publisher = stack.enter_context(ws_connect(server.url))
        stop = threading.Event()
        ways: Counter[str] = Counter()
        churners = [
            threading.Thread(target=churn, args=(server.url, stop, seed, ways), daemon=True)
            for seed in range(CHURNERS)
        ]
        for thread in churners:
            thread.start()
        published = 0
        sent_to_stable: list[int] = []
        reached_too_few = []
        deadline = time.monotonic() + SOAK_SECONDS
        while time.monotonic() < deadline:
            topic = "stable" if published % 2 == 0 else random.choice(TOPICS)
            publisher.send(json.dumps({"action": "publish", "topic": topic, "seq": published}))
            reached = int(recv(publisher, 10 * TIMEOUT))
            if topic == "stable":
                sent_to_stable.append(published)
                if reached < STABLE:
                    reached_too_few.append((published, reached))
            published += 1
        stop.set()
        for thread in churners:
            thread.join(10 * TIMEOUT_FACTOR)
        publisher.send(json.dumps({"action": "publish", "topic": "stable", "seq": "end"}))
        recv(publisher)
        received = [read_until_end(ws) for ws in stable]
        churned = sum(ways.values())
        figures = (
            f"{churned} connections churned ({dict(ways)}), {published} publishes, "
            f"{len(sent_to_stable)} of them to the {STABLE} long-lived subscribers, "
            f"{sum(map(len, received))} messages delivered to them"
        )
        print(figures)
        lost = [len(sent_to_stable) - len(seqs) for seqs in received]
        assert all(seqs == sent_to_stable for seqs in received), f"{figures}; lost {lost}"
        assert not reached_too_few, f"{figures}; publishes reaching too few: {reached_too_few}"
        assert churned > 50, figures

        # The store holds exactly the live connections, with no orphan subscription.
        wait_until(lambda: len(server.gateway.live) == STABLE + 1, "the churners gone")
        wait_until(lambda: not server.gateway.connection_tasks, "their $disconnect done")
        live = set(server.gateway.live)
        assert set(on_loop(server, server.gateway.store.connection_ids())) == live, figures
        for topic in TOPICS:
            orphans = set(on_loop(server, server.gateway.store.subscribers(topic))) - live
            assert not orphans, f"{figures}; subscriptions of gone connections to {topic}"
        print(f"lost = 0; store == live ({len(live)} connections); disconnects {dict(disconnects)}")

    assert sum(disconnects.values()) == churned + STABLE + 1, (figures, dict(disconnects))
    assert 1011 not in disconnects, dict(disconnects)


def read_until_end(ws: Any) -> list[int]:
    """The `seq` of every message a stable subscriber got, up to the final one."""
    seqs = []
    while (seq := json.loads(recv(ws, 10 * TIMEOUT))["seq"]) != "end":
        seqs.append(seq)
    return seqs
