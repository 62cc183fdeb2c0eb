"""A store that fails to write (a full disk) never costs a user's `$disconnect`, and the
records it could not remove are removed once it can write again."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tests.conftest import TIMEOUT, run_gateway, ws_connect
from wsgate import App
from wsgate.core.limits import Limits
from wsgate.exceptions import StoreError
from wsgate.store.sqlite import SQLiteStore


class FailingWrites:
    """A real SQLite store whose writes fail with StoreError while `full` is set."""

    def __init__(self, path: Path) -> None:
        self.store = SQLiteStore(path)
        self.full = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def _check(self) -> None:
        if self.full:
            raise StoreError(f"sqlite store {self.store.path}: database or disk is full")

    async def add_connection(self, record: Any) -> None:
        self._check()
        await self.store.add_connection(record)

    async def touch(self, activity: dict[str, int]) -> None:
        self._check()
        await self.store.touch(activity)

    async def remove_connection(self, connection_id: str) -> bool:
        self._check()
        return await self.store.remove_connection(connection_id)


def test_disconnect_runs_and_records_go_when_the_disk_has_room_again(tmp_path: Path) -> None:
    """Clients leave while writes fail: each `$disconnect` runs at once, the gateway stops
    holding them, and their records leave the store once writes succeed again."""
    app = App(name="faults")
    disconnected: list[str] = []

    @app.on_disconnect
    async def on_disconnect(event: Any, context: Any) -> None:
        disconnected.append(event.connection_id)

    store = FailingWrites(tmp_path / "wsgate.db")
    with (
        run_gateway(app, store=store, limits=Limits(handler_timeout=1.0)) as server,
        ExitStack() as stack,
    ):
        clients = [stack.enter_context(ws_connect(server.url)) for _ in range(3)]
        wait_until(lambda: len(stored_ids(store)) == 3, "the connections were not stored")
        store.full = True
        for ws in clients:
            ws.close()
        wait_until(lambda: len(disconnected) == 3, f"$disconnect ran for {disconnected} only")
        assert not server.gateway.live
        assert len(stored_ids(store)) == 3  # nothing could be removed yet
        store.full = False
        wait_until(lambda: not stored_ids(store), "the records were never removed")


def stored_ids(store: FailingWrites) -> set[str]:
    """The connection ids in the SQLite file itself."""
    with sqlite3.connect(store.store.path) as db:
        return {row[0] for row in db.execute("SELECT connection_id FROM connections")}


def wait_until(condition: Callable[[], bool], failure: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.02)
