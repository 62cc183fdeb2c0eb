"""The store contract as a state machine: random sequences of operations against a model.

`tests/integration/test_store_contract.py` checks each operation on its own; here
hypothesis drives the memory, SQLite and Redis stores through random sequences of
add / re-add / remove / subscribe / unsubscribe / touch, and after every step compares
what the store says (`connection_ids`, `get_connection`, `subscribers`, `topics`) with a
plain Python model of the contract (`store/base.py`). A sequence that breaks it is
shrunk to the shortest one that does.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.redis_server import redis_server_fixture, redis_url  # noqa: F401 (a fixture)
from wsgate.store import ConnectionRecord, Store, open_store

T = TypeVar("T")

#: A few ids and topics, so that sequences hit the same ones again (odd characters too).
IDS = ["R1kmxc2VNjMCFIA=", "a", "b-_=", "Zz9"]
TOPICS = ["news", "a:b", "ü🙂", "x" * 200]
NODES = ["node-1", "node-2"]

#: Sequences tried per backend (up to 25 steps each): Redis answers over a socket, so
#: fewer of them keep its run within seconds on a busy machine.
SEQUENCES = {"memory": 25, "sqlite": 20, "redis": 8}

records = st.builds(
    ConnectionRecord,
    connection_id=st.sampled_from(IDS),
    connected_at=st.integers(0, 2**41),
    source_ip=st.sampled_from(["10.0.0.1", "::1", "203.0.113.9"]),
    last_active_at=st.integers(0, 2**41),
    user_agent=st.none() | st.text(max_size=20),
    stage=st.just("dev"),
    domain_name=st.just("localhost:8080"),
    node=st.sampled_from(NODES),
    authorizer=st.none()
    | st.dictionaries(st.sampled_from(["principalId", "user", "n"]), st.text(max_size=5)),
)


class StoreContract(RuleBasedStateMachine):
    """One fresh store per sequence, and the model it must agree with."""

    #: Set by each test: a URL of a fresh, empty store.
    new_url: Callable[[], str]

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store: Store = open_store(type(self).new_url())
        self.run(self.store.open())
        self.connections: dict[str, ConnectionRecord] = {}
        self.subscriptions: dict[str, set[str]] = {}

    def run(self, operation: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(operation)

    def teardown(self) -> None:
        try:
            self.run(self.store.close())
        finally:
            self.loop.close()

    # -- operations ----------------------------------------------------------------------

    @rule(record=records)
    def add_connection(self, record: ConnectionRecord) -> None:
        """Adding replaces the record; the connection keeps its subscriptions."""
        self.run(self.store.add_connection(record))
        self.connections[record.connection_id] = record
        self.subscriptions.setdefault(record.connection_id, set())

    @rule(connection_id=st.sampled_from(IDS))
    def remove_connection(self, connection_id: str) -> None:
        found = self.run(self.store.remove_connection(connection_id))
        assert found == (connection_id in self.connections)
        self.connections.pop(connection_id, None)
        self.subscriptions.pop(connection_id, None)

    @rule(connection_id=st.sampled_from(IDS), topic=st.sampled_from(TOPICS))
    def subscribe(self, connection_id: str, topic: str) -> None:
        done = self.run(self.store.subscribe(connection_id, topic))
        assert done == (connection_id in self.connections)
        if done:
            self.subscriptions[connection_id].add(topic)

    @precondition(lambda self: any(self.subscriptions.values()))
    @rule(data=st.data())
    def unsubscribe_one_there_is(self, data: st.DataObject) -> None:
        pairs = sorted((cid, t) for cid, topics in self.subscriptions.items() for t in topics)
        connection_id, topic = data.draw(st.sampled_from(pairs))
        assert self.run(self.store.unsubscribe(connection_id, topic))
        self.subscriptions[connection_id].discard(topic)

    @rule(connection_id=st.sampled_from(IDS), topic=st.sampled_from(TOPICS))
    def unsubscribe(self, connection_id: str, topic: str) -> None:
        done = self.run(self.store.unsubscribe(connection_id, topic))
        assert done == (topic in self.subscriptions.get(connection_id, set()))
        if done:
            self.subscriptions[connection_id].discard(topic)

    @rule(activity=st.dictionaries(st.sampled_from(IDS), st.integers(0, 2**41), max_size=4))
    def touch(self, activity: dict[str, int]) -> None:
        """Known connections take the new time; unknown ids are not created."""
        self.run(self.store.touch(activity))
        for connection_id, at in activity.items():
            record = self.connections.get(connection_id)
            if record is not None:
                self.connections[connection_id] = replace(record, last_active_at=at)

    # -- what the store must say -----------------------------------------------------------

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert sorted(self.run(self.store.connection_ids())) == sorted(self.connections)
        for connection_id in IDS:
            assert self.run(self.store.get_connection(connection_id)) == self.connections.get(
                connection_id
            )
            assert self.run(self.store.topics(connection_id)) == sorted(
                self.subscriptions.get(connection_id, ())
            )
        for topic in TOPICS:
            expected = sorted(cid for cid, ts in self.subscriptions.items() if topic in ts)
            assert sorted(self.run(self.store.subscribers(topic))) == expected


@pytest.fixture(params=list(SEQUENCES))
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def new_url(backend: str, request: pytest.FixtureRequest) -> Iterator[Callable[[], str]]:
    """How to make a fresh store of each backend, one per sequence."""
    if backend == "memory":
        yield lambda: "memory://"
    elif backend == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield lambda: f"sqlite:///{Path(directory) / uuid.uuid4().hex / 'wsgate.db'}"
    else:
        port = request.getfixturevalue("redis_server").port
        yield lambda: redis_url(port)


def test_every_sequence_of_operations_keeps_the_contract(
    backend: str, new_url: Callable[[], str]
) -> None:
    """`SEQUENCES[backend]` random sequences of up to 25 operations, each step checked
    against the model."""
    machine = type("Contract", (StoreContract,), {"new_url": staticmethod(new_url)})
    stateful = settings(
        max_examples=SEQUENCES[backend],
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    run_state_machine_as_test(machine, settings=stateful)
