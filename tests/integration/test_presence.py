"""Presence: `connections.subscribers(topic)` on every node and on Lambda, and the demo's
pattern on top of it (`who`, announced subscribe/unsubscribe, a leave on close)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.conftest import TIMEOUT
from wsgate.aws.connections import ApiGatewayConnections
from wsgate.core.limits import Limits
from wsgate.server.delivery import Delivery, NodeUnreachable, Operation
from wsgate.store.base import ConnectionRecord
from wsgate.store.memory import MemoryStore
from wsgate.testing import TestClient, TestGateway


class TopicNodes:
    """Other nodes holding a topic's subscribers; "dead" ones do not answer."""

    def __init__(self, subscribers: dict[str, list[str] | None]) -> None:
        self.subscribers = subscribers
        self.asked: list[tuple[Any, str, tuple[Any, ...]]] = []
        self.topics: list[str | None] = []

    async def start(self, operations: dict[str, Operation]) -> None:
        pass

    async def stop(self) -> None:
        pass

    def stamp(self, connection_id: str) -> str:
        return connection_id

    async def locate(self, connection_id: str) -> str | None:
        return None

    async def nodes_for(self, topic: str | None) -> list[str]:
        self.topics.append(topic)
        return list(self.subscribers)

    async def call(self, node: Any, operation: str, *args: Any) -> Any:
        self.asked.append((node, operation, args))
        answer = self.subscribers[node]
        if answer is None:
            raise NodeUnreachable(f"node {node} did not answer")
        return answer


async def _store_with(*subscriptions: tuple[str, str]) -> MemoryStore:
    store = MemoryStore()
    await store.open()
    for connection_id, topic in subscriptions:
        await store.add_connection(ConnectionRecord(connection_id, 0, "127.0.0.1"))
        await store.subscribe(connection_id, topic)
    return store


def test_subscribers_gathers_the_topic_from_every_node() -> None:
    """A gateway node lists its own subscribers and those of every node holding the topic;
    a node that does not answer is left out."""
    others = TopicNodes({"b": ["b1"], "c": None, "d": ["d1", "d2"]})

    async def main() -> None:
        store = await _store_with(("a1", "room"), ("a2", "elsewhere"))
        delivery = Delivery({}, store, Limits(), node="a", others=others)
        await delivery.start()
        assert sorted(await delivery.subscribers("room")) == ["a1", "b1", "d1", "d2"]
        assert others.topics == ["room"]
        assert {(operation, args) for _, operation, args in others.asked} == {
            ("subscribers", ("room",))
        }

    asyncio.run(main())


def test_subscribers_on_lambda_come_from_the_store() -> None:
    """On Lambda (`ApiGatewayConnections`) a topic's subscribers are the store's."""

    async def main() -> None:
        store = await _store_with(("x", "room"), ("y", "room"), ("z", "other"))
        with ThreadPoolExecutor(1) as executor:
            api = ApiGatewayConnections(store, lambda: None, executor)
            assert sorted(await api.subscribers("room")) == ["x", "y"]

    asyncio.run(main())


def _wait_subscribed(gateway: TestGateway, client: TestClient, topic: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while client.connection_id not in gateway.subscribers(topic):
        assert time.monotonic() < deadline, "the subscription never took effect"
        time.sleep(0.01)


def test_the_demo_announces_joins_and_leaves_and_answers_who() -> None:
    """An announced subscribe tells the topic's other members and answers the joiner with
    the members; `who` lists them with their names; unsubscribing or closing is a leave."""
    from wsgate.demo import app

    with TestGateway(app) as gateway:
        ada, bob, eve = gateway.connect(), gateway.connect(), gateway.connect()
        ada.send({"action": "setName", "name": "Ada"})
        assert ada.receive_json() == {"name": "Ada"}
        ada.send({"action": "subscribe", "topic": "room", "announce": True})
        assert ada.receive_json() == {
            "topic": "room",
            "members": [{"connectionId": ada.connection_id, "name": "Ada"}],
        }
        eve.send({"action": "subscribe", "topic": "room"})  # not announced
        _wait_subscribed(gateway, eve, "room")
        bob.send({"action": "subscribe", "topic": "room", "announce": True})
        joined = {
            "presence": "join",
            "topic": "room",
            "connectionId": bob.connection_id,
            "name": None,
        }
        assert ada.receive_json() == joined
        assert eve.receive_json() == joined
        members = bob.receive_json()["members"]
        assert {m["connectionId"] for m in members} == {
            ada.connection_id,
            bob.connection_id,
            eve.connection_id,
        }
        bob.send({"action": "who", "topic": "room"})
        assert {m["connectionId"]: m["name"] for m in bob.receive_json()["members"]}[
            ada.connection_id
        ] == "Ada"

        bob.send({"action": "unsubscribe", "topic": "room", "announce": True})
        assert ada.receive_json() == {**joined, "presence": "leave"}
        assert eve.receive_json() == {**joined, "presence": "leave"}

        ada.close()
        left = eve.receive_json()
        assert left == {
            "presence": "leave",
            "topic": "room",
            "connectionId": ada.connection_id,
            "name": "Ada",
        }
        bob.expect_nothing()


def test_the_demo_who_needs_a_topic_and_set_name_a_name() -> None:
    """`who` without a topic and `setName` without a name answer the sender with an error."""
    from wsgate.demo import app

    with TestGateway(app) as gateway:
        client = gateway.connect()
        for body in [{"action": "who"}, {"action": "setName", "name": " "}]:
            client.send(body)
            assert isinstance(client.receive_json()["error"], str)
