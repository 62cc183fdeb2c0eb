"""Running a handler as API Gateway runs a Lambda integration: a context, a deadline, and
a failure the client is told about but never sees the inside of.

Every invocation (`$connect`, messages, `$disconnect`) comes through `Invoker.invoke`.
Deadlines are not a timer per call (asyncio.timeout was a tenth of an echo's time): each
running invocation's task is entered in `deadlines`, and the gateway's sweeper calls
`expire` to cancel the overdue ones. A sync handler that times out runs on in its thread
(Python cannot stop a thread), as a Lambda invocation API Gateway gave up on does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from wsgate import connection_api
from wsgate.app import Route
from wsgate.context import LambdaContext
from wsgate.core.events import Event
from wsgate.dispatch import call_handler

handler_log = logging.getLogger("wsgate.handler")


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
        self._timed_out: set[asyncio.Task[Any]] = set()
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="wsgate-handler")
        self._binding: connection_api.Binding | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, binding: connection_api.Binding) -> None:
        """Handlers reach `wsgate.connections` through `binding`, on its loop."""
        self._binding = binding
        self._loop = binding.loop

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
                self._timed_out.discard(task)

    def expire(self, now: float) -> None:
        """Cancel the invocations past their deadline (the sweeper calls this)."""
        for task, deadline in list(self.deadlines.items()):
            if task.done():  # cancelled before its own cleanup could run
                self.deadlines.pop(task, None)
                self._timed_out.discard(task)
            elif now >= deadline and task not in self._timed_out:
                self._timed_out.add(task)
                task.cancel()

    def shutdown(self) -> None:
        """Queued sync calls never start; running ones finish on their threads."""
        self._threads.shutdown(wait=False, cancel_futures=True)
