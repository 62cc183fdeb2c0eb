"""Calling a route's handler: the one place that knows how sync and async handlers run.

Async handlers run on the event loop. Sync handlers run on a worker thread, so they never
block it, with the context (and so the `wsgate.connections` binding) copied in; their
`connections` calls hop back to the loop (a local `send` without waiting for it). The
local gateway and the Lambda adapter both call `call_handler`; each adds its own timeout
and error mapping around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future
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
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()
    run = contextvars.copy_context().run
    work = executor.submit(_run_on_thread, loop, done, run, route.handler, event, context)
    # An executor shut down with `cancel_futures` never runs queued calls: their callers
    # are told, not left waiting.
    work.add_done_callback(lambda work: _cancel_if_dropped(work, loop, done))
    return done


def _cancel_if_dropped(
    work: Future[None], loop: asyncio.AbstractEventLoop, done: asyncio.Future[Any]
) -> None:
    if work.cancelled():
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(done.cancel)


def _run_on_thread(
    loop: asyncio.AbstractEventLoop,
    done: asyncio.Future[Any],
    run: Callable[..., Any],
    handler: Callable[..., Any],
    event: Event,
    context: Any,
) -> None:
    """A sync handler's call, on a worker thread; the outcome goes back in one hop.

    Not `run_in_executor`: its two chained futures cost a sixth of a sync echo. As there,
    a call whose invocation timed out before it started never starts, and one that was
    running goes on to its end (as a Lambda function does after API Gateway gave up on
    it) with its outcome dropped.
    """
    if done.cancelled():  # a plain read: the loop only ever makes it True
        return
    try:
        result = run(handler, event, context)
    except StopIteration as exc:  # a future cannot hold one (PEP 479 turns it into this)
        error = RuntimeError("handler raised StopIteration")
        error.__cause__ = exc
        loop.call_soon_threadsafe(_settle, done, None, error)
    except BaseException as exc:  # handed to the awaiting task, as is
        loop.call_soon_threadsafe(_settle, done, None, exc)
    else:
        loop.call_soon_threadsafe(_settle, done, result, None)


def _settle(done: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if done.cancelled():  # the invocation timed out, or the gateway stopped
        return
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(result)
