"""Running a handler as API Gateway runs a Lambda integration: a context, a deadline, and
a failure the client is told about but never sees the inside of.

Every invocation (`$connect`, messages, `$disconnect`) comes through `Invoker.invoke`.
Deadlines are not a timer per call (asyncio.timeout was a tenth of an echo's time): each
running invocation's task is entered in `deadlines`, and the gateway's sweeper calls
`expire` to cancel the overdue ones. A sync handler that times out runs on in its thread
(Python cannot stop a thread), as a Lambda invocation API Gateway gave up on does.

An async handler runs on the event loop: one that blocks it (`time.sleep`, a blocking
client) stalls every connection of the gateway. `LoopWatchdog` notices and names it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from wsgate import connection_api
from wsgate.app import Route
from wsgate.context import LambdaContext
from wsgate.core.events import Event
from wsgate.dispatch import call_handler

handler_log = logging.getLogger("wsgate.handler")

#: An event loop blocked longer than this (seconds) is logged, naming the invocation that
#: holds it: every connection of the gateway waits meanwhile.
LOOP_BLOCK_WARNING = 0.5


class HandlerFailed(Exception):
    """The handler raised; the original exception is the cause."""


class HandlerTimedOut(Exception):
    """The handler ran past the handler timeout."""


class Invoker:
    """Invokes an app's handlers on one event loop, sync ones on a pool of threads."""

    def __init__(self, function_name: str, handler_timeout: float, threads: int) -> None:
        self.function_name = function_name
        self.handler_timeout = handler_timeout
        #: Running invocations and when each must end. Also what keeps message tasks alive
        #: (the loop only keeps weak references to tasks).
        self.deadlines: dict[asyncio.Task[Any], float] = {}
        #: What each running invocation is: its route and connection (`LoopWatchdog`).
        self.invocations: dict[asyncio.Task[Any], tuple[Route, str]] = {}
        self._timed_out: set[asyncio.Task[Any]] = set()
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="wsgate-handler")
        self._binding: connection_api.Binding | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchdog: LoopWatchdog | None = None

    def bind(self, binding: connection_api.Binding) -> None:
        """Handlers reach `wsgate.connections` through `binding`, on its loop (which
        `LoopWatchdog` watches from now until `shutdown`)."""
        self._binding = binding
        self._loop = binding.loop
        if self._watchdog is None:
            self._watchdog = LoopWatchdog(self, binding.loop)

    async def invoke(self, route: Route, event: Event) -> Any:
        """Run `route`'s handler for `event` within the handler timeout.

        Raises HandlerFailed (logged with its traceback) or HandlerTimedOut (logged).
        """
        binding = self._binding
        assert binding is not None, "Invoker.bind() first"
        context = LambdaContext(
            function_name=self.function_name, deadline=time.monotonic() + self.handler_timeout
        )
        task = asyncio.current_task(self._loop)
        if task is not None:
            self.deadlines[task] = context.deadline
            self.invocations[task] = (route, event.connection_id)
        try:
            return await call_handler(route, event, context, binding, self._threads)
        except asyncio.CancelledError:
            if task is None or task not in self._timed_out:
                raise  # not a timeout: the gateway is stopping
            self._timed_out.discard(task)
            task.uncancel()
            handler_log.error(
                "%s handler %s timed out after %ss (connection %s)",
                route.key,
                route.name,
                self.handler_timeout,
                event.connection_id,
            )
            raise HandlerTimedOut from None
        except Exception as exc:
            handler_log.error(
                "%s handler %s failed (connection %s, request %s)",
                route.key,
                route.name,
                event.connection_id,
                context.aws_request_id,
                exc_info=True,
            )
            raise HandlerFailed from exc
        finally:
            if task is not None:
                self.deadlines.pop(task, None)
                self.invocations.pop(task, None)
                self._timed_out.discard(task)

    def expire(self, now: float) -> None:
        """Cancel the invocations past their deadline (the sweeper calls this)."""
        for task, deadline in list(self.deadlines.items()):
            if task.done():  # cancelled before its own cleanup could run
                self.deadlines.pop(task, None)
                self.invocations.pop(task, None)
                self._timed_out.discard(task)
            elif now >= deadline and task not in self._timed_out:
                self._timed_out.add(task)
                task.cancel()

    def shutdown(self) -> None:
        """Queued sync calls never start; running ones finish on their threads."""
        self._threads.shutdown(wait=False, cancel_futures=True)
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None


class LoopWatchdog:
    """Warns when the event loop is blocked, naming the invocation that blocks it.

    The loop stamps a heartbeat every `threshold / 5` seconds; a thread looks at it as
    often. A heartbeat older than `threshold` means the loop is held now: the thread asks
    which task the loop is running and, if it is an invocation, names its route and
    connection. One warning per blockage, at most one every `REPEAT` seconds (the next
    one counts those left out), so a handler that blocks on every message cannot flood
    the log.
    """

    REPEAT = 10.0

    def __init__(
        self,
        invoker: Invoker,
        loop: asyncio.AbstractEventLoop,
        threshold: float = LOOP_BLOCK_WARNING,
    ) -> None:
        self.invoker = invoker
        self.loop = loop
        self.threshold = threshold
        self._period = threshold / 5
        self._beat = time.monotonic()
        self._stopped = threading.Event()
        self._logged_at = float("-inf")
        self._left_out = 0
        self._timer = loop.call_soon(self._heartbeat)
        # Not `_thread`: mypyc names the C field `__thread`, a keyword to gcc.
        self._watcher = threading.Thread(target=self._watch, name="wsgate-watchdog", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._timer.cancel()
        self._stopped.set()

    def _heartbeat(self) -> None:
        self._beat = time.monotonic()
        self._timer = self.loop.call_later(self._period, self._heartbeat)

    def _watch(self) -> None:
        reported = False
        while not self._stopped.wait(self._period):
            blocked = time.monotonic() - self._beat
            if blocked < self.threshold:
                reported = False
            elif not reported:
                reported = True
                self._report(blocked)

    def _report(self, blocked: float) -> None:
        now = time.monotonic()
        if now - self._logged_at < self.REPEAT:
            self._left_out += 1
            return
        # Read from this thread: the loop is stuck inside this task's step right now.
        task = asyncio.current_task(self.loop)
        invocation = self.invoker.invocations.get(task) if task is not None else None
        culprit = (
            f"the {invocation[0].key} handler {invocation[0].name} (connection {invocation[1]})"
            if invocation is not None
            else f"{task.get_name() if task is not None else 'a callback'}, not a handler"
        )
        left_out = f" ({self._left_out} more since the last warning)" if self._left_out else ""
        handler_log.warning(
            "the event loop has been blocked for over %.1f s by %s: every connection waits "
            "meanwhile. An async handler must never block (time.sleep, blocking I/O): make "
            "it a sync handler, which runs on a thread%s",
            blocked,
            culprit,
            left_out,
        )
        self._logged_at = now
        self._left_out = 0
