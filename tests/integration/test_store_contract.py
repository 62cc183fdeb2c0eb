"""One contract for every connection store backend, plus what is specific to SQLite.

Redis' specifics are in test_store_redis.py.

Each test drives the store with `asyncio.run`, so no async test plugin is needed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import TypeVar

import pytest

from tests.moto_server import dynamodb_store_url
from tests.redis_server import redis_server_fixture, redis_store_url  # noqa: F401 (a fixture)
from wsgate.exceptions import ConfigError, StoreError
from wsgate.store import ConnectionRecord, Store, open_store
from wsgate.store.sqlite import SQLiteStore

T = TypeVar("T")


@pytest.fixture(params=["memory", "sqlite", "dynamodb", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh store of each backend."""
    if request.param == "memory":
        return "memory://"
    if request.param == "dynamodb":
        return dynamodb_store_url(request)
    if request.param == "redis":
        return redis_store_url(request)
    return f"sqlite:///{tmp_path / 'store' / 'wsgate.db'}"


def run(url: str, scenario: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store at `url`, run `scenario` against it, close the store."""

    async def main() -> T:
        store = open_store(url)
        await store.open()
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(main())


def record(connection_id: str, **fields: object) -> ConnectionRecord:
    values: dict[str, object] = {
        "connected_at": 1_705_751_697_419,
        "source_ip": "10.0.0.1",
        "last_active_at": 1_705_751_697_419,
        "user_agent": "agent/1.0",
        "stage": "dev",
        "domain_name": "localhost:8080",
        "node": "node-1",
    }
    values.update(fields)
    return ConnectionRecord(connection_id, **values)  # type: ignore[arg-type]


def test_add_and_get_connection(store_url: str) -> None:
    """A added record is returned equal by get_connection; unknown ids give None."""
    rec = record("R1kmxc2VNjMCFIA=")

    async def scenario(store: Store) -> None:
        await store.add_connection(rec)
        assert await store.get_connection("R1kmxc2VNjMCFIA=") == rec
        assert await store.get_connection("unknown") is None

    run(store_url, scenario)


def test_optional_fields_round_trip(store_url: str) -> None:
    """A record with no user agent and no authorizer keeps them as None."""
    rec = record("a", user_agent=None, authorizer=None)

    async def scenario(store: Store) -> None:
        await store.add_connection(rec)
        got = await store.get_connection("a")
        assert got == rec
        assert got is not None and got.user_agent is None and got.authorizer is None

    run(store_url, scenario)


def test_authorizer_round_trips(store_url: str) -> None:
    """An authorizer context dict comes back equal, nested values included."""
    authorizer = {"principalId": "user", "n": 3, "ok": True, "nested": {"l": [1, "x", None]}}

    async def scenario(store: Store) -> None:
        await store.add_connection(record("a", authorizer=authorizer))
        got = await store.get_connection("a")
        assert got is not None
        assert got.authorizer == authorizer

    run(store_url, scenario)


def test_add_replaces_record(store_url: str) -> None:
    """Adding a record with an existing id replaces the stored record."""

    async def scenario(store: Store) -> None:
        await store.add_connection(record("a", source_ip="1.1.1.1"))
        await store.add_connection(record("a", source_ip="2.2.2.2"))
        got = await store.get_connection("a")
        assert got is not None and got.source_ip == "2.2.2.2"
        assert await store.connection_ids() == ["a"]

    run(store_url, scenario)


def test_add_replacing_record_keeps_subscriptions(store_url: str) -> None:
    """Replacing a connection's record does not drop its subscriptions."""

    async def scenario(store: Store) -> None:
        await store.add_connection(record("a"))
        assert await store.subscribe("a", "room")
        await store.add_connection(record("a", authorizer={"principalId": "u"}))
        assert await store.topics("a") == ["room"]
        assert await store.subscribers("room") == ["a"]

    run(store_url, scenario)


def test_connection_ids(store_url: str) -> None:
    """connection_ids lists every open connection and nothing else."""

    async def scenario(store: Store) -> None:
        assert await store.connection_ids() == []
        for cid in ("c", "a", "b="):
            await store.add_connection(record(cid))
        assert sorted(await store.connection_ids()) == ["a", "b=", "c"]
        await store.remove_connection("a")
        assert sorted(await store.connection_ids()) == ["b=", "c"]

    run(store_url, scenario)


def test_remove_connection(store_url: str) -> None:
    """remove_connection forgets the record and says whether it was there."""

    async def scenario(store: Store) -> None:
        await store.add_connection(record("a"))
        assert await store.remove_connection("a") is True
        assert await store.get_connection("a") is None
        assert await store.remove_connection("a") is False
        assert await store.remove_connection("never") is False

    run(store_url, scenario)


def test_remove_connection_drops_subscriptions(store_url: str) -> None:
    """Removing a connection removes all its subscriptions, and a new record starts clean."""

    async def scenario(store: Store) -> None:
        await store.add_connection(record("a"))
        await store.add_connection(record("b"))
        for topic in ("t1", "t2"):
            assert await store.subscribe("a", topic)
        assert await store.subscribe("b", "t1")
        assert await store.remove_connection("a")
        assert await store.subscribers("t1") == ["b"]
        assert await store.subscribers("t2") == []
        assert await store.topics("a") == []
        await store.add_connection(record("a"))
        assert await store.topics("a") == []
        assert await store.subscribers("t2") == []

    run(store_url, scenario)


def test_subscribe_unknown_connection(store_url: str) -> None:
    """Subscribing an unknown connection returns False and leaves no subscription."""

    async def scenario(store: Store) -> None:
        assert await store.subscribe("ghost", "room") is False
        assert await store.subscribers("room") == []
        assert await store.topics("ghost") == []

    run(store_url, scenario)


def test_subscribe_is_idempotent(store_url: str) -> None:
    """Subscribing twice returns True both times and subscribes once."""

    async def scenario(store: Store) -> None:
        await store.add_connection(record("a"))
        assert await store.subscribe("a", "room") is True
        assert await store.subscribe("a", "room") is True
        assert await store.subscribers("room") == ["a"]
        assert await store.topics("a") == ["room"]

    run(store_url, scenario)


def test_unsubscribe(store_url: str) -> None:
    """unsubscribe returns True once for an existing subscription, then False."""

    async def scenario(store: Store) -> None:
        await store.add_connection(record("a"))
        await store.add_connection(record("b"))
        await store.subscribe("a", "room")
        await store.subscribe("b", "room")
        assert await store.unsubscribe("a", "room") is True
        assert await store.unsubscribe("a", "room") is False
        assert await store.subscribers("room") == ["b"]
        assert await store.topics("a") == []
        assert await store.unsubscribe("a", "other") is False
        assert await store.unsubscribe("ghost", "room") is False
        assert await store.get_connection("a") is not None

    run(store_url, scenario)


def test_subscriptions_both_ways(store_url: str) -> None:
    """subscribers(topic) and topics(connection) read the same pairs; topics are sorted."""

    async def scenario(store: Store) -> None:
        for cid in ("a", "b", "c"):
            await store.add_connection(record(cid))
        for cid, topic in [("a", "zeta"), ("a", "alpha"), ("a", "mid"), ("b", "alpha")]:
            assert await store.subscribe(cid, topic)
        assert sorted(await store.subscribers("alpha")) == ["a", "b"]
        assert await store.subscribers("zeta") == ["a"]
        assert await store.subscribers("nobody") == []
        assert await store.topics("a") == ["alpha", "mid", "zeta"]
        assert await store.topics("b") == ["alpha"]
        assert await store.topics("c") == []

    run(store_url, scenario)


def test_touch_updates_last_active(store_url: str) -> None:
    """touch sets last_active_at of known connections and ignores unknown ids."""

    async def scenario(store: Store) -> None:
        await store.add_connection(record("a", last_active_at=1000))
        await store.add_connection(record("b", last_active_at=1000))
        await store.touch({"a": 5000, "ghost": 7000})
        a = await store.get_connection("a")
        b = await store.get_connection("b")
        assert a is not None and a.last_active_at == 5000
        assert a == record("a", last_active_at=5000)
        assert b is not None and b.last_active_at == 1000
        assert await store.get_connection("ghost") is None
        await store.touch({})
        assert sorted(await store.connection_ids()) == ["a", "b"]

    run(store_url, scenario)


def test_close_and_reopen_same_object(store_url: str) -> None:
    """A closed store can be opened again."""

    async def scenario() -> None:
        store = open_store(store_url)
        await store.open()
        await store.close()
        await store.open()
        try:
            await store.add_connection(record("a"))
            assert await store.connection_ids() == ["a"]
        finally:
            await store.close()

    asyncio.run(scenario())


# -- SQLite specifics -------------------------------------------------------------------


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'wsgate.db'}"


def test_sqlite_reopen_starts_empty(tmp_path: Path) -> None:
    """Reopening a SQLite file purges connections and subscriptions of the previous run."""
    url = sqlite_url(tmp_path)

    async def fill(store: Store) -> None:
        await store.add_connection(record("a"))
        await store.subscribe("a", "room")

    async def check(store: Store) -> None:
        assert await store.connection_ids() == []
        assert await store.get_connection("a") is None
        assert await store.subscribers("room") == []
        assert await store.topics("a") == []

    run(url, fill)
    run(url, check)


def test_sqlite_second_store_on_same_file_refused(tmp_path: Path) -> None:
    """A second store opening a file that is open raises StoreError saying it is in use."""
    url = sqlite_url(tmp_path)

    async def scenario() -> None:
        first = open_store(url)
        await first.open()
        try:
            await first.add_connection(record("a"))
            second = open_store(url)
            with pytest.raises(StoreError, match="in use"):
                await second.open()
            # The refused store did not purge the live one's data.
            assert await first.connection_ids() == ["a"]
        finally:
            await first.close()
        # Once the first store is closed the file can be opened again.
        third = open_store(url)
        await third.open()
        await third.close()

    asyncio.run(scenario())


def test_sqlite_store_imports_without_fcntl() -> None:
    """The default store's module imports where `fcntl` does not exist, as on Windows.

    This checks the import only (fcntl is imported when a lock is taken, msvcrt's locking
    is used on Windows); it does not show that Windows locking works.
    """
    code = "import sys; sys.modules['fcntl'] = None; import wsgate.store.sqlite"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    """The SQLite file is in WAL journal mode after open."""
    url = sqlite_url(tmp_path)

    async def scenario(store: Store) -> str:
        await store.add_connection(record("a"))
        with closing(sqlite3.connect(tmp_path / "wsgate.db")) as db:
            return str(db.execute("PRAGMA journal_mode").fetchone()[0])

    assert run(url, scenario) == "wal"


def test_sqlite_creates_parent_directories(tmp_path: Path) -> None:
    """open() creates missing parent directories of the file."""
    path = tmp_path / "a" / "b" / "wsgate.db"

    async def scenario(store: Store) -> None:
        await store.add_connection(record("a"))

    run(f"sqlite:///{path}", scenario)
    assert path.is_file()


def test_sqlite_closed_store_raises(tmp_path: Path) -> None:
    """Using a SQLite store that is not open raises StoreError."""

    async def scenario() -> None:
        store = open_store(sqlite_url(tmp_path))
        with pytest.raises(StoreError, match="not open"):
            await store.connection_ids()
        await store.open()
        await store.close()
        with pytest.raises(StoreError, match="not open"):
            await store.get_connection("a")

    asyncio.run(scenario())


def test_sqlite_newer_schema_refused(tmp_path: Path) -> None:
    """A file with an unknown schema version is refused with StoreError, and not locked."""
    path = tmp_path / "wsgate.db"
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version=99")

    async def scenario() -> None:
        store = open_store(sqlite_url(tmp_path))
        with pytest.raises(StoreError, match="schema version 99"):
            await store.open()
        # The failed open released its lock: a store may open once the file is fixed.
        with closing(sqlite3.connect(path)) as db:
            db.execute("PRAGMA user_version=0")
        await store.open()
        await store.close()

    asyncio.run(scenario())


def test_sqlite_not_a_database_refused(tmp_path: Path) -> None:
    """A file that is not a SQLite database is refused with StoreError."""
    (tmp_path / "wsgate.db").write_bytes(b"this is not a database file" * 100)

    async def scenario() -> None:
        with pytest.raises(StoreError, match="cannot open sqlite store"):
            await open_store(sqlite_url(tmp_path)).open()

    asyncio.run(scenario())


# -- store URLs -------------------------------------------------------------------------


def test_open_store_urls(tmp_path: Path) -> None:
    """open_store picks the backend from the URL; sqlite paths may be relative or absolute."""
    absolute = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    assert isinstance(absolute, SQLiteStore)
    assert absolute.path == tmp_path / "x.db"
    relative = open_store("sqlite:///data/x.db")
    assert isinstance(relative, SQLiteStore)
    assert relative.path == Path("data/x.db")
    assert not isinstance(open_store("memory://"), SQLiteStore)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "mysql://localhost", "nonsense"])
def test_open_store_bad_urls(url: str) -> None:
    """An unusable store URL raises ConfigError explaining the accepted forms."""
    with pytest.raises(ConfigError, match="sqlite:///"):
        open_store(url)


def test_sqlite_a_cancelled_caller_does_not_lose_what_committed(tmp_path: Path) -> None:
    """A handler cancelled (timed out) mid-call: what SQLite committed still counts for
    the reads it answers from memory, so both views of a subscription agree. (SQLite runs
    calls in order, which is what lets the test know they committed; DynamoDB does not.)"""
    store_url = f"sqlite:///{tmp_path / 'wsgate.db'}"

    async def scenario(store: Store) -> tuple[list[str], list[str], list[str], list[str]]:
        await store.add_connection(record("c1"))
        await store.add_connection(record("c2"))
        await store.subscribe("c2", "news")
        subscribing = asyncio.ensure_future(store.subscribe("c1", "news"))
        unsubscribing = asyncio.ensure_future(store.unsubscribe("c2", "news"))
        await asyncio.sleep(0)
        subscribing.cancel()
        unsubscribing.cancel()
        # Calls queued after them run after them: by then both have committed.
        topics_c1 = await store.topics("c1")
        topics_c2 = await store.topics("c2")
        return sorted(await store.subscribers("news")), topics_c1, topics_c2, []

    subscribers, topics_c1, topics_c2, _ = run(store_url, scenario)
    if topics_c1:  # the subscription committed before the cancellation reached it
        assert subscribers == ["c1"]
    else:
        assert subscribers == []
    assert topics_c2 == []
