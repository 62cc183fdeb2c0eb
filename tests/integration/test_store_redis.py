"""What only the Redis store does, on a real redis-server (tests/redis_server.py): the
per-node indexes cross-node delivery reads, purging a dead node, heartbeats, key prefixes
and hash tags, errors, and surviving a server restart.

The common behaviour of every store is in test_store_contract.py.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from tests.conftest import free_port
from tests.moto_server import TIMEOUT
from tests.redis_server import (  # noqa: F401 (a fixture)
    RedisServer,
    redis_server_binary,
    redis_server_fixture,
    redis_url,
    unique_prefix,
)
from wsgate.exceptions import ConfigError, StoreError
from wsgate.store import ConnectionRecord, open_store
from wsgate.store.redis import PASSWORD_VARIABLE, PURGE_BATCH, RedisStore


def record(connection_id: str, node: str = "node-1") -> ConnectionRecord:
    return ConnectionRecord(connection_id, connected_at=1, source_ip="10.0.0.1", node=node)


@asynccontextmanager
async def opened(url: str, node: str | None = None) -> AsyncIterator[RedisStore]:
    store = RedisStore(url, node=node)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def raw_client(server: RedisServer) -> redis.Redis:
    return redis.Redis(port=server.port, decode_responses=True)


def test_open_store_picks_redis(redis_server: RedisServer) -> None:
    """redis://, rediss:// and redis+sentinel:// URLs open a RedisStore with their prefix."""
    for url in (
        redis_url(redis_server.port, "app"),
        "rediss://:secret@redis.example:6380/2?prefix=app&ssl_cert_reqs=none",
        "redis+sentinel://s1:26379,s2:26379/mymaster?prefix=app",
    ):
        store = open_store(url)
        assert isinstance(store, RedisStore)
        assert store.prefix == "app"
        assert store.keys_start == "{app}:"
        assert "secret" not in repr(store)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost?nonsense=1", "unknown option nonsense"),
        ("redis://localhost?prefix=a&prefix=b", "given twice"),
        ("redis://localhost?prefix={x}", "bad key prefix"),
        ("redis://localhost?prefix=x:", "bad key prefix"),
        ("redis://localhost/notanumber", "database number"),
        ("redis://:pw@/0", "needs a host"),
        ("redis+sentinel://s1:26379", "service name"),
        ("redis://host:port", "bad host:port"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    """A Redis URL that cannot work raises ConfigError saying why, without the password."""
    with pytest.raises(ConfigError, match=message) as caught:
        open_store(url)
    assert "pw" not in str(caught.value).replace("password", "")


def test_node_indexes(redis_server: RedisServer) -> None:
    """Per topic the nodes with subscribers, per (topic, node) the ids, per node its ids."""

    async def scenario() -> None:
        async with opened(redis_url(redis_server.port)) as store:
            await store.add_connection(record("a1", "A"))
            await store.add_connection(record("a2", "A"))
            await store.add_connection(record("b1", "B"))
            for cid in ("a1", "a2", "b1"):
                assert await store.subscribe(cid, "news")
            assert await store.subscribe("a1", "sport")
            assert sorted(await store.nodes_of_topic("news")) == ["A", "B"]
            assert await store.nodes_of_topic("sport") == ["A"]
            assert sorted(await store.subscribers_on("news", "A")) == ["a1", "a2"]
            assert await store.subscribers_on("news", "B") == ["b1"]
            assert await store.subscribers_on("sport", "B") == []
            assert sorted(await store.connection_ids_on("A")) == ["a1", "a2"]
            assert sorted(await store.nodes()) == ["A", "B"]

            assert await store.unsubscribe("b1", "news")
            assert await store.nodes_of_topic("news") == ["A"]
            assert await store.remove_connection("a1")
            assert await store.nodes_of_topic("sport") == []
            assert await store.subscribers_on("news", "A") == ["a2"]
            assert await store.remove_connection("b1")
            assert await store.nodes() == ["A"]
            assert await store.connection_ids_on("B") == []

    asyncio.run(scenario())


def test_record_moved_to_another_node_moves_its_subscriptions(redis_server: RedisServer) -> None:
    """Replacing a record with one held by another node re-files its subscriptions there."""

    async def scenario() -> None:
        async with opened(redis_url(redis_server.port)) as store:
            await store.add_connection(record("c", "A"))
            await store.subscribe("c", "news")
            await store.add_connection(record("c", "B"))
            assert await store.nodes_of_topic("news") == ["B"]
            assert await store.subscribers_on("news", "B") == ["c"]
            assert await store.connection_ids_on("A") == []
            assert await store.nodes() == ["B"]
            assert await store.subscribers("news") == ["c"]

    asyncio.run(scenario())


def test_purge_node(redis_server: RedisServer) -> None:
    """purge_node drops the node's connections and subscriptions, not others'; twice is 0."""

    async def scenario() -> None:
        async with opened(redis_url(redis_server.port)) as store:
            for cid, node in [("a1", "A"), ("a2", "A"), ("b1", "B")]:
                await store.add_connection(record(cid, node))
                await store.subscribe(cid, "news")
            assert await store.purge_node("A") == 2
            assert await store.purge_node("A") == 0
            assert await store.purge_node("never-seen") == 0
            assert await store.connection_ids() == ["b1"]
            assert await store.subscribers("news") == ["b1"]
            assert await store.nodes_of_topic("news") == ["B"]
            assert await store.topics("a1") == []
            assert await store.get_connection("a1") is None
            assert await store.nodes() == ["B"]

    asyncio.run(scenario())


def test_purge_node_twice_at_once(redis_server: RedisServer) -> None:
    """Two survivors purging the same large node at once drop each connection exactly once."""
    url = redis_url(redis_server.port)
    count = PURGE_BATCH * 3 + 7

    async def scenario() -> tuple[int, int]:
        async with opened(url) as one, opened(url) as two:
            for i in range(count):
                await one.add_connection(record(f"c{i}", "dead"))
                await one.subscribe(f"c{i}", f"topic{i % 5}")
            await one.add_connection(record("alive", "other"))
            dropped = await asyncio.gather(one.purge_node("dead"), two.purge_node("dead"))
            assert await one.connection_ids() == ["alive"]
            assert await one.nodes_of_topic("topic0") == []
            return dropped[0], dropped[1]

    first, second = asyncio.run(scenario())
    assert first + second == count
    # Nothing of the dead node's is left in Redis.
    prefix = url.rpartition("prefix=")[2]
    left = set(raw_client(redis_server).scan_iter(match="{" + prefix + "}:*"))
    assert left == {f"{{{prefix}}}:{key}" for key in ("conns", "conn:alive", "node:other", "nodes")}


def test_open_with_a_node_purges_what_its_last_run_left(redis_server: RedisServer) -> None:
    """A store opened with a node id first drops that node's leftover connections."""
    url = redis_url(redis_server.port)

    async def scenario() -> list[str]:
        async with opened(url) as store:
            await store.add_connection(record("stale", "gw-1"))
            await store.add_connection(record("other", "gw-2"))
        async with opened(url, node="gw-1"):
            pass
        async with opened(url) as store:
            return sorted(await store.connection_ids())

    assert asyncio.run(scenario()) == ["other"]


def test_a_node_store_lists_and_fans_out_to_its_own_connections(
    redis_server: RedisServer,
) -> None:
    """With a node, connection_ids and subscribers are that node's (what it delivers to
    itself); get_connection still finds any node's record (where a connection lives)."""
    url = redis_url(redis_server.port, f"own{os.getpid()}")

    async def scenario() -> None:
        async with opened(url, node="gw-1") as one, opened(url, node="gw-2") as two:
            await one.add_connection(record("a", "gw-1"))
            await two.add_connection(record("b", "gw-2"))
            for store, connection_id in ((one, "a"), (two, "b")):
                assert await store.subscribe(connection_id, "news")
            assert await one.connection_ids() == ["a"]
            assert await two.subscribers("news") == ["b"]
            found = await one.get_connection("b")
            assert found is not None and found.node == "gw-2"
            assert sorted(await one.nodes_of_topic("news")) == ["gw-1", "gw-2"]
        async with opened(url) as everyone:
            assert sorted(await everyone.subscribers("news")) == ["a", "b"]

    asyncio.run(scenario())


def test_heartbeat_expires(redis_server: RedisServer) -> None:
    """A node is alive until its heartbeat's ttl has passed; a new heartbeat extends it."""

    async def scenario() -> None:
        async with opened(redis_url(redis_server.port)) as store:
            assert await store.live_nodes() == []
            assert not await store.is_alive("A")
            await store.heartbeat("A", 0.3)
            await store.heartbeat("B", 30)
            assert sorted(await store.live_nodes()) == ["A", "B"]
            assert await store.is_alive("A")
            await asyncio.sleep(0.5)
            assert await store.live_nodes() == ["B"]
            assert not await store.is_alive("A")
            await store.heartbeat("A", 30)
            assert await store.is_alive("A")
            with pytest.raises(ValueError, match="positive"):
                await store.heartbeat("A", 0)

    asyncio.run(scenario())


def test_touch_never_resurrects(redis_server: RedisServer) -> None:
    """touch after remove_connection writes nothing: no record, no key comes back."""
    url = redis_url(redis_server.port)

    async def scenario() -> None:
        async with opened(url) as store:
            await store.add_connection(record("a"))
            await store.add_connection(record("b"))
            await store.remove_connection("a")
            await store.touch({"a": 99, "b": 42, "never": 7})
            assert await store.get_connection("a") is None
            got = await store.get_connection("b")
            assert got is not None and got.last_active_at == 42
            assert await store.connection_ids() == ["b"]

    asyncio.run(scenario())
    prefix = url.rpartition("prefix=")[2]
    client = raw_client(redis_server)
    assert not client.exists(f"{{{prefix}}}:conn:a", f"{{{prefix}}}:conn:never")


def test_prefixes_keep_stores_apart(redis_server: RedisServer) -> None:
    """Two prefixes on one server see nothing of each other."""

    async def scenario() -> None:
        async with opened(redis_url(redis_server.port)) as one:
            async with opened(redis_url(redis_server.port)) as two:
                await one.add_connection(record("a", "A"))
                await one.subscribe("a", "news")
                await one.heartbeat("A", 30)
                assert await two.connection_ids() == []
                assert await two.get_connection("a") is None
                assert await two.subscribers("news") == []
                assert await two.nodes_of_topic("news") == []
                assert await two.live_nodes() == []
                assert await two.purge_node("A") == 0
                assert await one.connection_ids() == ["a"]

    asyncio.run(scenario())


def test_every_key_is_in_the_prefix_slot(redis_server: RedisServer) -> None:
    """Every key the store writes starts with {PREFIX}: and hashes to one cluster slot."""
    prefix = unique_prefix()

    async def scenario() -> None:
        async with opened(redis_url(redis_server.port, prefix)) as store:
            await store.add_connection(record("a", "A"))
            await store.add_connection(record("b", "B"))
            await store.subscribe("a", "news:eu")
            await store.subscribe("b", "news:eu")
            await store.heartbeat("A", 30)

    asyncio.run(scenario())
    keys = set(raw_client(redis_server).scan_iter(match=f"*{prefix}*"))
    assert len(keys) >= 10
    assert all(key.startswith("{" + prefix + "}:") for key in keys)
    assert {key_slot(key.encode()) for key in keys} == {key_slot(f"{{{prefix}}}:conns".encode())}


def test_unreachable_redis_is_a_clear_store_error() -> None:
    """Opening or using a store whose Redis does not answer raises StoreError naming it."""
    port = free_port()

    async def scenario() -> None:
        store = RedisStore(redis_url(port))
        with pytest.raises(StoreError, match=f"cannot reach Redis at 127.0.0.1:{port}"):
            await store.open()
        with pytest.raises(StoreError, match="not open"):
            await store.connection_ids()

    asyncio.run(scenario())


def test_store_survives_a_server_restart(redis_server: RedisServer) -> None:
    """While Redis is down calls raise StoreError; once it is back (empty) the same store
    works again without being reopened, scripts included."""
    url = redis_url(redis_server.port)

    async def scenario() -> None:
        async with opened(url) as store:
            await store.add_connection(record("before"))
            assert await store.subscribe("before", "news")
            redis_server.stop()
            try:
                with pytest.raises(StoreError, match="cannot reach Redis"):
                    await store.subscribe("before", "sport")
            finally:
                redis_server.restart()
            assert await store.get_connection("before") is None  # no persistence
            await store.add_connection(record("after"))
            assert await store.subscribe("after", "news")
            assert await store.subscribers("news") == ["after"]

    asyncio.run(scenario())


@pytest.fixture
def password_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    with RedisServer() as server:
        raw_client(server).config_set("requirepass", "s3cret")
        yield server


def test_password_from_url_or_environment(
    password_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The password comes from the URL, else WSGATE_REDIS_PASSWORD; a wrong one is a
    StoreError about credentials."""
    port = password_server.port

    async def scenario() -> None:
        for url in (redis_url(port), f"redis://:wrong@127.0.0.1:{port}"):
            with pytest.raises(StoreError, match="refused the credentials") as caught:
                await RedisStore(url).open()
            assert "wrong" not in str(caught.value)
        async with opened(f"redis://:s3cret@127.0.0.1:{port}/0?prefix=p") as store:
            await store.add_connection(record("a"))
        monkeypatch.setenv(PASSWORD_VARIABLE, "s3cret")
        async with opened(f"redis://127.0.0.1:{port}/0?prefix=p") as store:
            assert await store.connection_ids() == ["a"]

    asyncio.run(scenario())


@pytest.fixture
def sentinel(redis_server: RedisServer, tmp_path: Path) -> Iterator[int]:
    """A real Sentinel (redis-server --sentinel) watching the session's server as `main`."""
    port = free_port()
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor main 127.0.0.1 {redis_server.port} 1\n"
    )
    process = subprocess.Popen(
        [redis_server_binary(), str(config), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_sentinel(sentinel: int) -> None:
    """redis+sentinel:// asks the Sentinel for the master and uses it."""

    async def scenario() -> None:
        url = f"redis+sentinel://127.0.0.1:{sentinel}/main?prefix={unique_prefix()}"
        async with opened(url) as store:
            await store.add_connection(record("a"))
            assert await store.subscribe("a", "news")
            assert await store.subscribers("news") == ["a"]

    asyncio.run(scenario())


def test_lambda_mode_on_redis_leaves_nothing_behind(redis_server: RedisServer) -> None:
    """`wsgate serve APP --lambda --store redis://`: every invocation thread calls the store on
    its own event loop (redis-py's connections belong to one). Rounds of clients subscribe,
    publish and leave at once: every message arrives, and then no key of the prefix is left."""
    import json
    from contextlib import ExitStack

    from tests.conftest import recv, run_gateway, ws_connect
    from wsgate.aws.lambda_handler import LambdaAdapter
    from wsgate.importer import load_app

    prefix = unique_prefix()
    examples = Path(__file__).resolve().parents[2] / "examples"
    adapter = LambdaAdapter(
        load_app(str(examples / "topics.py")),
        open_store(redis_url(redis_server.port, prefix)),
        management_endpoint="http://{domainName}/{stage}",
    )
    keys = raw_client(redis_server)
    with adapter, run_gateway(adapter.as_app()) as server:
        for round_ in range(4):
            with ExitStack() as stack:
                clients = [stack.enter_context(ws_connect(server.url)) for _ in range(4)]
                for ws in clients:
                    ws.send(json.dumps({"type": "subscribe", "topic": "news"}))
                deadline = time.monotonic() + TIMEOUT
                # every client subscribed: each has its own topics set
                while len(keys.keys(f"{{{prefix}}}:topics:*")) < len(clients):
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                clients[0].send(json.dumps({"type": "message", "topic": "news", "data": round_}))
                for ws in clients[1:]:
                    assert json.loads(recv(ws)) == {"topic": "news", "data": round_}
            deadline = time.monotonic() + TIMEOUT
            while leftover := keys.keys(f"{{{prefix}}}:*"):
                assert time.monotonic() < deadline, f"round {round_} left {leftover}"
                time.sleep(0.02)
