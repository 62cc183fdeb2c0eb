"""In-memory store: the reference implementation, and the fastest for one process."""

from __future__ import annotations

from dataclasses import replace

from wsgate.store.base import ConnectionRecord


class MemoryStore:
    """Connections and subscriptions in dicts; gone when the process stops."""

    def __init__(self) -> None:
        self._connections: dict[str, ConnectionRecord] = {}
        self._by_topic: dict[str, dict[str, None]] = {}  # dict keeps subscription order
        self._by_connection: dict[str, set[str]] = {}

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def add_connection(self, record: ConnectionRecord) -> None:
        self._connections[record.connection_id] = record

    async def touch(self, activity: dict[str, int]) -> None:
        for connection_id, at in activity.items():
            record = self._connections.get(connection_id)
            if record is not None:
                self._connections[connection_id] = replace(record, last_active_at=at)

    async def remove_connection(self, connection_id: str) -> bool:
        found = self._connections.pop(connection_id, None) is not None
        for topic in self._by_connection.pop(connection_id, ()):
            members = self._by_topic.get(topic)
            if members is not None:
                members.pop(connection_id, None)
                if not members:
                    del self._by_topic[topic]
        return found

    async def get_connection(self, connection_id: str) -> ConnectionRecord | None:
        return self._connections.get(connection_id)

    async def connection_ids(self) -> list[str]:
        return list(self._connections)

    async def subscribe(self, connection_id: str, topic: str) -> bool:
        if connection_id not in self._connections:
            return False
        self._by_topic.setdefault(topic, {})[connection_id] = None
        self._by_connection.setdefault(connection_id, set()).add(topic)
        return True

    async def unsubscribe(self, connection_id: str, topic: str) -> bool:
        members = self._by_topic.get(topic)
        if members is None or connection_id not in members:
            return False
        del members[connection_id]
        if not members:
            del self._by_topic[topic]
        self._by_connection[connection_id].discard(topic)
        return True

    async def subscribers(self, topic: str) -> list[str]:
        return list(self._by_topic.get(topic, ()))

    async def topics(self, connection_id: str) -> list[str]:
        return sorted(self._by_connection.get(connection_id, ()))
