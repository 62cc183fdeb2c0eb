"""SQLite store: the embedded default. One file, WAL journal, safe across restarts.

The file belongs to one gateway at a time (an exclusive lock next to it says so), which is
what makes purging on open safe: every connection in the file belonged to a gateway that
is no longer running, whether it stopped cleanly or was killed. sqlite3 calls block, so they
run on one dedicated thread, never on the event loop.

Being the file's only writer also lets the store keep an index of the subscriptions and
connection ids in memory, updated by the database thread as each write commits (in commit
order: the thread runs writes one at a time). `subscribers` and `connection_ids`, read on
every publish and broadcast, answer from it at once, without a trip to that thread. The
file stays the durable copy, and what `wsgate connections` and other readers see.

Any event loop may call the store, not only the one that opened it: each call's answer
goes back to the loop that asked (the Lambda adapter runs invocations on a loop per
thread, as concurrent Lambda invocations each run on their own), and a lock keeps the
index whole for readers on other threads.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, TypeVar

from wsgate.exceptions import StoreError
from wsgate.store.base import ConnectionRecord

T = TypeVar("T")

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS connections (
    connection_id TEXT PRIMARY KEY,
    connected_at INTEGER NOT NULL,
    source_ip TEXT NOT NULL,
    last_active_at INTEGER NOT NULL,
    user_agent TEXT,
    stage TEXT NOT NULL,
    domain_name TEXT NOT NULL,
    node TEXT NOT NULL,
    authorizer TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscriptions (
    topic TEXT NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections(connection_id) ON DELETE CASCADE,
    PRIMARY KEY (topic, connection_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS subscriptions_by_connection ON subscriptions (connection_id, topic);
"""


#: Windows locks are mandatory (a locked byte cannot be read by others), so the lock is on a
#: byte past the pid written at the start of the file, which a refused gateway reads.
_LOCKED_BYTE = 64


def _lock_exclusively(file: IO[str]) -> bool:
    """Lock `file` for this process without waiting; False if another one holds it.

    flock on POSIX, msvcrt.locking on Windows: each imported on its own platform only, so
    the module loads on both.
    """
    if sys.platform == "win32":
        import msvcrt

        os.lseek(file.fileno(), _LOCKED_BYTE, os.SEEK_SET)
        try:
            msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(file: IO[str]) -> None:
    """Release the lock `_lock_exclusively` took (before the file closes, as Windows asks)."""
    if sys.platform == "win32":
        import msvcrt

        os.lseek(file.fileno(), _LOCKED_BYTE, os.SEEK_SET)
        msvcrt.locking(file.fileno(), msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(file, fcntl.LOCK_UN)


class SQLiteStore:
    """Connections and subscriptions in a SQLite file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock_file: IO[str] | None = None
        self._executor: ThreadPoolExecutor | None = None
        #: Calls waiting for the database thread (see `_run`), shared with that thread.
        self._queue: list[_Call] = []
        self._queue_lock = threading.Lock()
        #: The in-memory index (see the module docstring): live ids, topic -> ids; written
        #: by the database thread, read from any loop, under `_index_lock`.
        self._index_lock = threading.Lock()
        self._ids: set[str] = set()
        self._subscribers: dict[str, set[str]] = {}
        self._topics: dict[str, set[str]] = {}

    def _check_open(self) -> None:
        if self._db is None or self._executor is None:
            raise StoreError(f"sqlite store {self.path} is not open")

    async def _run(
        self,
        fn: Callable[[sqlite3.Connection], T],
        index: Callable[[T], None] | None = None,
    ) -> T:
        """Run `fn(db)` on the database thread, in a transaction with the calls queued with it.

        Group commit: calls made while the thread is busy wait in a queue, and the thread
        runs all of them in one transaction, with one commit and one hand-back to the loop.
        Fifty connections opening at once cost a few commits, not fifty, and order is kept.
        `index(result)` updates the in-memory index once the call committed, on the database
        thread, in commit order, whether or not the caller is still waiting (it may be
        cancelled). The answer comes back on the caller's own loop.
        """
        self._check_open()
        assert self._executor is not None
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._queue_lock:
            self._queue.append((fn, done, index))
            first = len(self._queue) == 1
        if first:
            self._executor.submit(self._run_queued)
        try:
            return await done
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite store {self.path}: {exc}") from exc

    def _run_queued(self) -> None:
        """On the database thread: run what is queued in one transaction, index what
        committed, then hand each answer back to the loop that waits for it."""
        with self._queue_lock:
            batch, self._queue = self._queue, []
        db = self._db
        assert db is not None
        outcomes: list[tuple[bool, Any]] = []
        try:
            db.execute("BEGIN")
            for fn, _, _ in batch:
                try:
                    outcomes.append((True, fn(db)))
                except Exception as exc:
                    if not db.in_transaction:  # SQLite rolled the whole batch back
                        raise
                    outcomes.append((False, exc))  # this call's error; the others go on
            db.execute("COMMIT")
        except sqlite3.Error as exc:  # the transaction failed: no call of it took effect
            if db.in_transaction:
                db.execute("ROLLBACK")
            outcomes = [(False, exc)] * len(batch)
        answers: dict[asyncio.AbstractEventLoop, list[_Answer]] = {}
        with self._index_lock:
            for (_, done, index), (ok, value) in zip(batch, outcomes, strict=True):
                if ok and index is not None:
                    index(value)
                answers.setdefault(done.get_loop(), []).append((done, ok, value))
        for loop, settled in answers.items():
            try:
                loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:  # that loop is closed: nobody waits there any more
                pass

    async def open(self) -> None:
        try:
            if self.path.is_dir():
                raise IsADirectoryError(21, "it is a directory", str(self.path))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._take_lock()
        except OSError as exc:  # read-only, full, a parent that is a file: say which, and why
            where = f" ({exc.filename})" if exc.filename and exc.filename != str(self.path) else ""
            raise StoreError(
                f"cannot open sqlite store {self.path}: {exc.strerror or exc}{where}"
            ) from exc
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wsgate-sqlite")
        try:
            loop = asyncio.get_running_loop()
            self._db = await loop.run_in_executor(self._executor, self._connect)
        except sqlite3.Error as exc:
            await self.close()
            raise StoreError(f"cannot open sqlite store {self.path}: {exc}") from exc

    def _take_lock(self) -> None:
        lock_path = self.path.with_name(self.path.name + ".lock")
        lock_file = open(lock_path, "a+")
        if not _lock_exclusively(lock_file):
            lock_file.seek(0)
            owner = lock_file.read().strip() or "another process"
            lock_file.close()
            raise StoreError(
                f"sqlite store {self.path} is in use by another gateway (pid {owner}); "
                "give each gateway its own file"
            )
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(str(os.getpid()))
        lock_file.flush()
        self._lock_file = lock_file

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            return self._prepare(db)
        except BaseException:
            db.close()
            raise

    def _prepare(self, db: sqlite3.Connection) -> sqlite3.Connection:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise sqlite3.DatabaseError(
                f"schema version {version} is not {SCHEMA_VERSION} (written by a newer wsgate?)"
            )
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        # Purge what a stopped or killed gateway left: none of those sockets is open now.
        db.execute("DELETE FROM subscriptions")
        db.execute("DELETE FROM connections")
        return db

    async def close(self) -> None:
        if self._db is not None and self._executor is not None:
            db = self._db
            await asyncio.get_running_loop().run_in_executor(self._executor, db.close)
        self._db = None
        with self._index_lock:
            self._ids.clear()
            self._subscribers.clear()
            self._topics.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._lock_file is not None:
            _unlock(self._lock_file)
            self._lock_file.close()
            self._lock_file = None

    async def add_connection(self, record: ConnectionRecord) -> None:
        row = (
            record.connection_id,
            record.connected_at,
            record.source_ip,
            record.last_active_at,
            record.user_agent,
            record.stage,
            record.domain_name,
            record.node,
            None if record.authorizer is None else json.dumps(record.authorizer),
        )
        await self._run(
            # An upsert, not INSERT OR REPLACE: replacing would delete the row and cascade
            # to its subscriptions.
            lambda db: db.execute(
                "INSERT INTO connections VALUES (?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(connection_id) DO UPDATE SET connected_at=excluded.connected_at, "
                "source_ip=excluded.source_ip, last_active_at=excluded.last_active_at, "
                "user_agent=excluded.user_agent, stage=excluded.stage, "
                "domain_name=excluded.domain_name, node=excluded.node, "
                "authorizer=excluded.authorizer",
                row,
            ),
            lambda _: self._ids.add(record.connection_id),
        )

    async def touch(self, activity: dict[str, int]) -> None:
        rows = [(at, connection_id) for connection_id, at in activity.items()]
        await self._run(
            lambda db: db.executemany(
                "UPDATE connections SET last_active_at = ? WHERE connection_id = ?", rows
            )
        )

    async def remove_connection(self, connection_id: str) -> bool:
        def remove(db: sqlite3.Connection) -> bool:
            # ON DELETE CASCADE drops the subscriptions in the same statement.
            return (
                db.execute(
                    "DELETE FROM connections WHERE connection_id = ?", (connection_id,)
                ).rowcount
                > 0
            )

        def unindex(_: bool) -> None:
            self._ids.discard(connection_id)
            for topic in list(self._topics.get(connection_id, ())):
                self._unindex(connection_id, topic)

        return await self._run(remove, unindex)

    async def get_connection(self, connection_id: str) -> ConnectionRecord | None:
        row = await self._run(
            lambda db: db.execute(
                "SELECT * FROM connections WHERE connection_id = ?", (connection_id,)
            ).fetchone()
        )
        return None if row is None else _record(row)

    async def connection_ids(self) -> list[str]:
        self._check_open()
        with self._index_lock:
            return list(self._ids)

    async def subscribe(self, connection_id: str, topic: str) -> bool:
        def subscribe(db: sqlite3.Connection) -> bool:
            # Only a known connection may subscribe: no orphan subscriptions.
            db.execute(
                "INSERT OR IGNORE INTO subscriptions SELECT ?, connection_id FROM connections "
                "WHERE connection_id = ?",
                (topic, connection_id),
            )
            return (
                db.execute(
                    "SELECT 1 FROM subscriptions WHERE topic = ? AND connection_id = ?",
                    (topic, connection_id),
                ).fetchone()
                is not None
            )

        def index(subscribed: bool) -> None:
            if subscribed:
                self._subscribers.setdefault(topic, set()).add(connection_id)
                self._topics.setdefault(connection_id, set()).add(topic)

        return await self._run(subscribe, index)

    async def unsubscribe(self, connection_id: str, topic: str) -> bool:
        return await self._run(
            lambda db: (
                db.execute(
                    "DELETE FROM subscriptions WHERE topic = ? AND connection_id = ?",
                    (topic, connection_id),
                ).rowcount
                > 0
            ),
            lambda _: self._unindex(connection_id, topic),
        )

    def _unindex(self, connection_id: str, topic: str) -> None:
        subscribers = self._subscribers.get(topic)
        if subscribers is not None:
            subscribers.discard(connection_id)
            if not subscribers:
                del self._subscribers[topic]
        topics = self._topics.get(connection_id)
        if topics is not None:
            topics.discard(topic)
            if not topics:
                del self._topics[connection_id]

    async def subscribers(self, topic: str) -> list[str]:
        self._check_open()
        with self._index_lock:
            return list(self._subscribers.get(topic, ()))

    async def topics(self, connection_id: str) -> list[str]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT topic FROM subscriptions WHERE connection_id = ? ORDER BY topic",
                (connection_id,),
            ).fetchall()
        )
        return [row[0] for row in rows]


_Call = tuple[
    Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]", Callable[[Any], None] | None
]
#: A call's future, and whether it succeeded with `value` or failed with it.
_Answer = tuple["asyncio.Future[Any]", bool, Any]


def _settle(answers: list[_Answer]) -> None:
    """On the caller's loop: wake whoever still waits, in commit order."""
    for done, ok, value in answers:
        if done.cancelled():
            continue
        if ok:
            done.set_result(value)
        else:
            done.set_exception(value)


def _record(row: tuple[Any, ...]) -> ConnectionRecord:
    cid, connected_at, source_ip, last_active_at, user_agent, stage, domain_name, node, auth = row
    return ConnectionRecord(
        connection_id=cid,
        connected_at=connected_at,
        source_ip=source_ip,
        last_active_at=last_active_at,
        user_agent=user_agent,
        stage=stage,
        domain_name=domain_name,
        node=node,
        authorizer=None if auth is None else json.loads(auth),
    )
