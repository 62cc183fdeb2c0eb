"""Workers of one gateway: N processes on one port that behave as one API.

`wsgate serve --workers N` runs N gateway processes on the same port (one listening
socket they share: the kernel spreads new connections over them), one per core. Each
worker holds its own sockets and its own partition of the table (its connections and
their subscriptions), so its reads stay local and fast. This module makes them one
gateway: a worker asks another over a Unix socket when an operation concerns a connection
it does not hold.

- A connection id's first character names the worker that holds it (an id stays 15
  random characters, over 80 bits), so `send`, `info`, `disconnect`, `subscribe` and
  `unsubscribe` go straight to the owner.
- `publish` and `broadcast` run on every worker, each delivering to its own
  subscribers; the counts add up.
- Listing connections gathers every worker's ids.

The sockets live in a directory only this user can enter (mode 0700), and the messages
are pickles exchanged between processes of the same `wsgate serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import pickle
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from wsgate.exceptions import WsgateError
from wsgate.server.delivery import NodeFailed, NodeUnreachable

log = logging.getLogger("wsgate.peers")

#: The first character of a connection id held by worker i is `ID_ALPHABET[i]`.
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
MAX_WORKERS = len(ID_ALPHABET)

_HEADER = struct.Struct("!I")
#: How long a worker waits for a peer that is still starting.
CONNECT_TIMEOUT = 10.0
#: How long a worker waits for another's answer (a stuck worker fails the call, not hangs).
CALL_TIMEOUT = 10.0

Operation = Callable[..., Awaitable[Any]]


class PeerError(NodeUnreachable):
    """Another worker could not be reached, or did not answer in time."""


def owner(connection_id: str) -> int:
    """The worker that holds `connection_id` (-1 for an id no worker made)."""
    return ID_ALPHABET.find(connection_id[:1]) if connection_id else -1


def socket_path(directory: Path, worker: int) -> Path:
    return directory / f"worker-{worker}.sock"


async def _read(reader: asyncio.StreamReader) -> Any:
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    return pickle.loads(await reader.readexactly(size))


def _write(writer: asyncio.StreamWriter, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(_HEADER.pack(len(data)) + data)


class _Link:
    """Requests to one peer over one connection, answered in any order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count()
        self._reader_task = asyncio.create_task(self._read_answers(reader))

    async def call(self, operation: str, args: tuple[Any, ...]) -> Any:
        request_id = next(self._ids)
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = answer
        _write(self._writer, (request_id, operation, args))
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                return await answer
        except TimeoutError:
            raise PeerError(f"no answer to {operation} within {CALL_TIMEOUT:g}s") from None
        finally:
            self._pending.pop(request_id, None)

    async def _read_answers(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                request_id, ok, value = await _read(reader)
                answer = self._pending.get(request_id)
                if answer is None or answer.done():
                    continue
                if ok:
                    answer.set_result(value)
                else:
                    answer.set_exception(value)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for answer in self._pending.values():
                if not answer.done():
                    answer.set_exception(PeerError("the worker went away"))

    @property
    def alive(self) -> bool:
        return not self._reader_task.done()

    async def close(self) -> None:
        self._writer.close()
        self._reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await self._reader_task


class Peers:
    """This worker's side of the bus: serves the others' requests, asks them its own."""

    def __init__(self, worker: int, count: int, directory: Path) -> None:
        if not 0 <= worker < count <= MAX_WORKERS:
            raise WsgateError(f"worker {worker} of {count}: at most {MAX_WORKERS} workers")
        self.worker = worker
        self.count = count
        self.directory = directory
        self._operations: dict[str, Operation] = {}
        self._server: asyncio.AbstractServer | None = None
        self._links: dict[int, _Link] = {}
        self._connecting: dict[int, asyncio.Lock] = {}
        self._serving: set[asyncio.StreamWriter] = set()

    @property
    def others(self) -> list[int]:
        return [w for w in range(self.count) if w != self.worker]

    async def start(self, operations: dict[str, Operation]) -> None:
        """Answer the other workers' requests with `operations` (name -> coroutine)."""
        self._operations = operations
        path = socket_path(self.directory, self.worker)
        path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self._links.values():
            await link.close()
        self._links.clear()
        for writer in list(self._serving):
            writer.close()  # its reader sees the end and the serving task returns
        await asyncio.sleep(0)
        socket_path(self.directory, self.worker).unlink(missing_ok=True)

    def stamp(self, connection_id: str) -> str:
        """The id with its first character naming this worker, which holds it."""
        return ID_ALPHABET[self.worker] + connection_id[1:]

    async def locate(self, connection_id: str) -> int | None:
        """The other worker that holds `connection_id` (read from the id), if one does."""
        worker = owner(connection_id)
        return worker if worker != self.worker and 0 <= worker < self.count else None

    async def call(self, worker: int, operation: str, *args: Any) -> Any:
        """Ask `worker` to run `operation(*args)` and return its answer (PeerError if it
        cannot be reached, NodeFailed if the operation raised there)."""
        link = await self._link(worker)
        return await link.call(operation, args)

    async def nodes_for(self, topic: str | None) -> list[int]:
        """Every other worker: which of them hold a topic's subscribers only they know."""
        return self.others

    async def _link(self, worker: int) -> _Link:
        link = self._links.get(worker)
        if link is not None and link.alive:
            return link
        lock = self._connecting.setdefault(worker, asyncio.Lock())
        async with lock:
            link = self._links.get(worker)
            if link is not None and link.alive:
                return link
            path = socket_path(self.directory, worker)
            deadline = time.monotonic() + CONNECT_TIMEOUT
            while True:
                try:
                    reader, writer = await asyncio.open_unix_connection(path)
                    break
                except (FileNotFoundError, ConnectionRefusedError) as exc:
                    if time.monotonic() > deadline:
                        raise PeerError(f"worker {worker} is not answering at {path}") from exc
                    await asyncio.sleep(0.05)
            link = self._links[worker] = _Link(reader, writer)
            return link

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._serving.add(writer)
        answering: set[asyncio.Task[None]] = set()
        try:
            while True:
                request_id, operation, args = await _read(reader)
                # Each request in its own task: a slow one does not hold up the others.
                answer = asyncio.create_task(self._answer(writer, request_id, operation, args))
                answering.add(answer)
                answer.add_done_callback(answering.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._serving.discard(writer)
            writer.close()

    async def _answer(
        self, writer: asyncio.StreamWriter, request_id: int, operation: str, args: tuple[Any, ...]
    ) -> None:
        try:
            value = await self._operations[operation](*args)
        except Exception as exc:  # operations answer with values; this is a failure
            log.exception("worker %d failed %s from a peer", self.worker, operation)
            message: Any = (request_id, False, NodeFailed(f"{type(exc).__name__}: {exc}"))
        else:
            message = (request_id, True, value)
        if not writer.is_closing():
            _write(writer, message)
