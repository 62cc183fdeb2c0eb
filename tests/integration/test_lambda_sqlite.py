"""Lambda mode (`wsgate serve APP --lambda`) on the default store, SQLite.

The Lambda adapter runs each invocation on an event loop of its calling thread, as
concurrent Lambda invocations each run on their own; the SQLite store they share must
answer on whichever loop calls it, and clients that leave must leave nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tests.conftest import TIMEOUT, recv, run_gateway, ws_connect
from wsgate.aws.lambda_handler import LambdaAdapter
from wsgate.importer import load_app
from wsgate.server import Server
from wsgate.store import open_store
from wsgate.store.base import ConnectionRecord
from wsgate.store.sqlite import SQLiteStore

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def rows(path: Path) -> dict[str, int]:
    """How many rows each table of the store file holds, read as another process would."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return {
            table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("connections", "subscriptions")
        }


@contextmanager
def lambda_mode(target: Path, store: Path) -> Iterator[Server]:
    """The gateway as `wsgate serve TARGET --lambda --store sqlite:///STORE` wires it."""
    adapter = LambdaAdapter(
        load_app(str(target)),
        open_store(f"sqlite:///{store}"),
        management_endpoint="http://{domainName}/{stage}",
    )
    with adapter, run_gateway(adapter.as_app()) as server:
        yield server


def test_topics_in_lambda_mode_leave_nothing_in_the_sqlite_store(tmp_path: Path) -> None:
    """Rounds of subscribe, publish and disconnect by several clients at once: every
    message arrives, and once they are gone the store holds no connection and no topic."""
    store = tmp_path / "wsgate.db"
    with lambda_mode(EXAMPLES / "topics.py", store) as server:
        for round_ in range(6):
            with ExitStack() as stack:
                clients = [stack.enter_context(ws_connect(server.url)) for _ in range(4)]
                for ws in clients:
                    ws.send(json.dumps({"type": "subscribe", "topic": "news"}))
                deadline = time.monotonic() + TIMEOUT
                while rows(store)["subscriptions"] < len(clients):
                    assert time.monotonic() < deadline, rows(store)
                    time.sleep(0.02)
                clients[0].send(json.dumps({"type": "message", "topic": "news", "data": round_}))
                for ws in clients[1:]:
                    assert json.loads(recv(ws)) == {"topic": "news", "data": round_}
            deadline = time.monotonic() + TIMEOUT
            while rows(store) != {"connections": 0, "subscriptions": 0}:
                assert time.monotonic() < deadline, f"round {round_} left {rows(store)}"
                time.sleep(0.02)


def test_the_sqlite_store_answers_on_any_event_loop(tmp_path: Path) -> None:
    """Opened on one loop, used from loops of other threads (and closed from yet another)."""
    store = SQLiteStore(tmp_path / "wsgate.db")
    asyncio.run(store.open())
    errors: list[BaseException] = []

    async def use(number: int) -> None:
        cid = f"c{number}"
        await store.add_connection(ConnectionRecord(cid, 1, "127.0.0.1"))
        assert await store.subscribe(cid, "news")
        assert cid in await store.subscribers("news")
        assert cid in await store.connection_ids()
        assert await store.topics(cid) == ["news"]
        assert await store.remove_connection(cid)
        assert cid not in await store.subscribers("news")

    def thread(number: int) -> None:
        try:
            for _ in range(20):
                asyncio.run(use(number))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=thread, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 4)
    try:
        assert errors == []
        assert rows(tmp_path / "wsgate.db") == {"connections": 0, "subscriptions": 0}
    finally:
        asyncio.run(store.close())
