"""Calling a route's handler: the one place that knows how sync and async handlers run.

Async handlers run on the event loop. Sync handlers run on a worker thread, so they never
block it, with the context (and so the `wsgate.connections` binding) copied in; their
`connections` calls hop back to the loop. The local gateway and the Lambda adapter both
call `call_handler`; each adds its own timeout and error mapping around it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable
from concurrent.futures import Executor
from typing import Any

from wsgate import connection_api
from wsgate.app import Route
from wsgate.core.events import Event


def call_handler(
    route: Route,
    event: Event,
    context: Any,
    binding: connection_api.Binding,
    executor: Executor,
) -> Awaitable[Any]:
    """Start `route`'s handler with `wsgate.connections` bound to `binding`; await the result.

    A plain function returning the handler's own coroutine (or the thread's future), so
    an async handler costs no extra coroutine per call. Call it from the caller's task.
    """
    connection_api.current.set(binding)
    if route.is_async:
        return route.handler(event, context)
    run = contextvars.copy_context().run
    return asyncio.get_running_loop().run_in_executor(executor, run, route.handler, event, context)
