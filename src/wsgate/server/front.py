"""The listening socket's protocol: read one request head, then hand the socket over.

One port serves WebSocket clients and the HTTP `@connections` API. Each new TCP
connection starts here: `FrontDoor` buffers bytes until the request head is complete.
A WebSocket upgrade to a socket path goes to `OpenConnection` (`server/upgrade.py`:
`$connect` runs while reading is paused, then picows takes the socket); anything else
goes to aiohttp, which serves HTTP. Both take over the same transport with the bytes
read so far, so nothing is lost and nothing is parsed twice by the same library.

Clients that send their heads slowly (slowloris) are bounded twice: each head must be
complete within HEAD_TIMEOUT (aiohttp holds later heads of a keep-alive connection to the
same bound, see `server/http.py`), and at most MAX_UNFINISHED_HEADS connections may be
sending a first head at once.

The process's open files are bounded too: past `max_open_files() - SPARE_FILES`, new
connections are closed at once, with a warning, so the listening socket itself never meets
EMFILE (uvloop then closes it without a word, and the gateway would accept nothing more).
And what a flood of malformed requests and frames logs is bounded (`limit_log_floods`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Collection, Coroutine
from typing import Any, cast

from wsgate.core.handshake import (
    MAX_HEAD_BYTES,
    HandshakeError,
    RequestHead,
    head_length,
    parse_head,
)
from wsgate.server.transport import hand_over, refuse

log = logging.getLogger("wsgate.server")

#: The first byte of a TLS ClientHello (a handshake record), never of an HTTP request.
TLS_HANDSHAKE = b"\x16"

#: How long a client may take to send its request head.
HEAD_TIMEOUT = 10.0

#: How many connections may be sending their first request head at once; new connections
#: past it are closed at once. Above the biggest burst of connects the listen backlog holds
#: (real clients send their head in one packet, but a burst is accepted before it is read),
#: and low enough that clients trickling heads cannot take every file descriptor.
MAX_UNFINISHED_HEADS = 4096

#: File descriptors kept free for everything but new connections (the store, handlers'
#: files, the accept itself): a connection whose socket is past the limit minus these is
#: closed at once.
SPARE_FILES = 32

#: The gateway's entry point: takes a WebSocket upgrade request (its head, and the bytes
#: that came after it) from here on.
OpenConnection = Callable[[RequestHead, asyncio.Transport, bytes], Coroutine[Any, Any, None]]


class UnfinishedHeads:
    """How many of one event loop's connections are still sending their first head.

    One per loop, not per listener: `serve()` makes one listener per loop, and a count kept
    beside the loop is never shared between threads.
    """

    def __init__(self) -> None:
        self.count = 0
        self.last_file = max_open_files() - SPARE_FILES
        self._refused = 0
        self._logged_at = float("-inf")

    def admit(self, now: float, fd: int) -> bool:
        """Count one more, or refuse it (False) when MAX_UNFINISHED_HEADS are in progress or
        its socket `fd` is past `last_file`; refusals are logged at most once a second,
        with how many there were."""
        if fd > self.last_file:
            why = (
                f"the process is out of open files (socket {fd}, limit {self.last_file} "
                f"+ {SPARE_FILES} spare: raise `ulimit -n`)"
            )
        elif self.count < MAX_UNFINISHED_HEADS:
            self.count += 1
            return True
        else:
            why = (
                f"{self.count} connections are still sending their request head "
                f"(at most {MAX_UNFINISHED_HEADS})"
            )
        self._refused += 1
        if now - self._logged_at >= 1.0:
            log.warning("closed %d new connection(s) at once: %s", self._refused, why)
            self._refused = 0
            self._logged_at = now
        return False


def max_open_files() -> int:
    """The process's open-files limit (RLIMIT_NOFILE), or a bound no fd reaches where
    there is none (Windows)."""
    try:
        import resource
    except ImportError:
        return 1 << 62
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1 << 62 if soft == resource.RLIM_INFINITY else soft


class LogFlood(logging.Filter):
    """Lets at most `per_second` records of a logger through each second, each one line
    (an exception's traceback becomes its type and message); the next record let through
    says how many were dropped. For loggers a client's malformed requests and frames
    write to (aiohttp's, picows'): a flood of them cannot fill the disk."""

    def __init__(self, per_second: int = 5) -> None:
        super().__init__()
        self.per_second = per_second
        self._second = float("-inf")
        self._passed = 0
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self._second >= 1.0:
            self._second, self._passed = now, 0
        if self._passed >= self.per_second:
            self._dropped += 1
            return False
        self._passed += 1
        message = record.getMessage()
        if record.exc_info is not None and record.exc_info[1] is not None:
            error = record.exc_info[1]
            message = f"{message}: {type(error).__name__}: {' '.join(str(error).split())}"
            record.exc_info = record.exc_text = None
        if self._dropped:
            message = f"{message} (and {self._dropped} such lines suppressed)"
            self._dropped = 0
        record.msg, record.args = message, None
        return True


#: The loggers a client's malformed input writes to: aiohttp's, picows' (named by
#: `server/upgrade.py`) and this module's.
FLOODED_LOGGERS = ("aiohttp.server", "wsgate.websocket", "wsgate.server")


def limit_log_floods() -> None:
    """Put a `LogFlood` on each of FLOODED_LOGGERS (once)."""
    for name in FLOODED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(each, LogFlood) for each in logger.filters):
            logger.addFilter(LogFlood())


_unfinished_heads: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, UnfinishedHeads] = (
    weakref.WeakKeyDictionary()
)


class FrontDoor(asyncio.Protocol):
    """Reads a request head; a WebSocket upgrade goes to the gateway, the rest to HTTP."""

    def __init__(
        self,
        socket_paths: Collection[str],
        open_connection: OpenConnection,
        http_protocol: Callable[[], asyncio.Protocol],
        tasks: set[asyncio.Task[None]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._socket_paths = socket_paths
        self._open_connection = open_connection
        self._http_protocol = http_protocol
        self._tasks = tasks
        # Passed in: asyncio.get_running_loop() costs a getpid() system call on 3.11.
        self._loop = loop
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        heads = _unfinished_heads.get(loop)
        if heads is None:
            heads = _unfinished_heads[loop] = UnfinishedHeads()
        self._heads = heads

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport; they behave as one.
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if not self._heads.admit(self._loop.time(), sock.fileno() if sock is not None else -1):
            self._transport.abort()
            return
        self._timer = self._loop.call_later(HEAD_TIMEOUT, self._transport.abort)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        if not self._buffer and data[:1] == TLS_HANDSHAKE:
            # A TLS client (wss:// or https:// to this plain port) cannot read an HTTP
            # answer: closing at once tells it now instead of after the head timeout.
            self._head_finished()
            transport.abort()
            return
        self._buffer += data
        length = head_length(self._buffer)
        if length < 0 and len(self._buffer) <= MAX_HEAD_BYTES:
            return  # wait for the rest of the head
        self._head_finished()
        received = bytes(self._buffer)
        self._buffer.clear()
        if length < 0 or length > MAX_HEAD_BYTES:
            refuse(
                transport, 431, "Request Header Fields Too Large", "the request head is over 16 KB"
            )
            return
        try:
            head = parse_head(received[:length])
        except HandshakeError as error:
            refuse(transport, error.status, "Bad Request", error.message)
            return
        if not head.is_websocket_upgrade or head.path not in self._socket_paths:
            hand_over(transport, self._http_protocol(), received)
            return
        transport.pause_reading()
        task = self._loop.create_task(self._open_connection(head, transport, received[length:]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._opened)

    def _opened(self, task: asyncio.Task[None]) -> None:
        """A failure the gateway did not answer must not leave the socket paused forever."""
        if not task.cancelled() and task.exception() is not None:
            log.error("opening a WebSocket connection failed", exc_info=task.exception())
            if self._transport is not None:
                self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_finished()

    def _head_finished(self) -> None:
        """The head is read, or will never be: stop its timer and free its place."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._heads.count -= 1
