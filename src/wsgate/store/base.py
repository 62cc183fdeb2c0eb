"""The connection store: live connections and their topic subscriptions.

A `Store` is what API Gateway apps keep in DynamoDB: one record per open connection, plus
(topic, connection) subscription pairs that can be read both ways. Every backend passes
the same contract tests (`tests/integration/test_store_contract.py`).

    store = open_store("sqlite:///wsgate.db")
    await store.open()
    await store.add_connection(record)
    await store.subscribe(record.connection_id, "general")
    ids = await store.subscribers("general")

All methods are coroutines so network backends (Redis, DynamoDB) fit behind the same
protocol; embedded backends keep blocking work off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    """One open connection, as the store keeps it."""

    connection_id: str
    connected_at: int  # epoch milliseconds
    source_ip: str
    #: Last message in either direction, epoch ms; written in batches (see `touch`).
    last_active_at: int = 0
    user_agent: str | None = None
    stage: str = ""
    domain_name: str = ""
    #: Which gateway process holds the socket.
    node: str = ""
    authorizer: dict[str, Any] | None = field(default=None, hash=False)


class Store(Protocol):
    """Connections and subscriptions, shared by every gateway that uses the same store."""

    async def open(self) -> None:
        """Connect and create what is missing. Connections left by a stopped gateway of
        this node are purged here, so a restart never starts with stale connections."""

    async def close(self) -> None:
        """Release connections and threads; the store can be opened again."""

    async def add_connection(self, record: ConnectionRecord) -> None:
        """Record an open connection (replacing a record with the same id)."""

    async def touch(self, activity: dict[str, int]) -> None:
        """Update `last_active_at` of many connections at once (id -> epoch ms).

        Gateways call it about once a second with what changed, never once per message."""

    async def remove_connection(self, connection_id: str) -> bool:
        """Forget a connection and all its subscriptions; False if it was not there."""

    async def get_connection(self, connection_id: str) -> ConnectionRecord | None:
        """The record of an open connection, or None."""

    async def connection_ids(self) -> list[str]:
        """Ids of every open connection."""

    async def subscribe(self, connection_id: str, topic: str) -> bool:
        """Subscribe a connection to a topic (idempotent); False if the connection is unknown."""

    async def unsubscribe(self, connection_id: str, topic: str) -> bool:
        """Remove one subscription; False if it did not exist."""

    async def subscribers(self, topic: str) -> list[str]:
        """Ids of the connections subscribed to `topic`."""

    async def topics(self, connection_id: str) -> list[str]:
        """Topics a connection is subscribed to, sorted."""
