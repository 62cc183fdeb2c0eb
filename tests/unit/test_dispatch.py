"""How sync handlers are called: on a worker thread, their outcome handed back to the loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from wsgate import Event, connection_api
from wsgate.app import Route
from wsgate.dispatch import call_handler


def sync_route(handler: Callable[[Any, Any], Any]) -> Route:
    return Route("r", handler, is_async=False)


def run(scenario: Callable[[connection_api.Binding, ThreadPoolExecutor], Any]) -> Any:
    """Run `scenario` on a fresh loop with a one-thread pool, as the gateway would."""

    async def main() -> Any:
        binding = connection_api.Binding(object(), asyncio.get_running_loop())  # type: ignore[arg-type]
        with ThreadPoolExecutor(1) as executor:
            return await scenario(binding, executor)

    return asyncio.run(main())


def test_result_and_exception_come_back() -> None:
    """A sync handler's return value, or its exception, is what the caller awaits."""

    async def scenario(binding: connection_api.Binding, executor: ThreadPoolExecutor) -> None:
        assert (
            await call_handler(
                sync_route(lambda e, c: e["n"] + 1), Event(n=1), None, binding, executor
            )
            == 2
        )

        def fail(event: Any, context: Any) -> None:
            raise KeyError("boom")

        with pytest.raises(KeyError, match="boom"):
            await call_handler(sync_route(fail), Event(), None, binding, executor)

    run(scenario)


def test_stop_iteration_is_an_error_not_a_hang() -> None:
    """`next()` on an empty iterator in a handler fails the call (a future cannot hold a
    StopIteration: without the wrapping the caller would wait for ever)."""

    async def scenario(binding: connection_api.Binding, executor: ThreadPoolExecutor) -> None:
        call = call_handler(
            sync_route(lambda e, c: next(iter([]))), Event(), None, binding, executor
        )
        with pytest.raises(RuntimeError, match="StopIteration"):
            await asyncio.wait_for(call, 5)

    run(scenario)


def test_a_call_cancelled_before_it_started_never_runs() -> None:
    """A call that timed out while queued behind a busy thread is not run later."""
    ran: list[str] = []
    release = threading.Event()

    async def scenario(binding: connection_api.Binding, executor: ThreadPoolExecutor) -> None:
        busy = call_handler(
            sync_route(lambda e, c: release.wait(5)), Event(), None, binding, executor
        )
        queued = call_handler(
            sync_route(lambda e, c: ran.append("late")), Event(), None, binding, executor
        )
        queued.cancel()  # type: ignore[attr-defined]  # what a handler timeout does
        release.set()
        assert await busy is True
        done = call_handler(sync_route(lambda e, c: "after"), Event(), None, binding, executor)
        assert await done == "after"  # the one thread has passed the cancelled call by now

    run(scenario)
    assert ran == []


def test_calls_dropped_by_a_shutdown_are_cancelled_not_left_waiting() -> None:
    """An executor shut down with cancel_futures tells the callers of its queued calls."""
    release = threading.Event()

    async def scenario(binding: connection_api.Binding, executor: ThreadPoolExecutor) -> None:
        busy = call_handler(
            sync_route(lambda e, c: release.wait(5)), Event(), None, binding, executor
        )
        queued = call_handler(sync_route(lambda e, c: "never"), Event(), None, binding, executor)
        executor.shutdown(wait=False, cancel_futures=True)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(queued, 5)
        release.set()
        assert await busy is True

    run(scenario)
