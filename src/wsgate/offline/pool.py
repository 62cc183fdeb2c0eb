"""The function processes of one Lambda function: started on demand, kept warm, stopped.

Each process runs `wsgate.offline.function_process`, one Lambda execution environment: the
function's environment variables, its code folder, a warm module, one invocation at a time.
A function's pool grows on demand up to `max_processes` (or its reserved concurrency), as
Lambda scales out; an invocation past the function's timeout kills its process (the next
one starts cold) and fails. Invocations wait on the pipes from threads of the function's
own executor, so the event loop never does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from wsgate.offline.spec import FunctionSpec

log = logging.getLogger("wsgate.offline")

#: Processes per function unless its reserved concurrency is lower.
DEFAULT_MAX_PROCESSES = 8
#: Lambda's limit for the init phase (importing the handler's module).
INIT_TIMEOUT = 10.0


class FunctionError(Exception):
    """An invocation failed: Lambda's error payload, for the gateway's log."""

    def __init__(self, function: str, error: Mapping[str, Any]) -> None:
        self.function = function
        self.error_type = str(error.get("errorType") or "Error")
        self.error_message = str(error.get("errorMessage") or "")
        self.stack_trace = [str(line) for line in error.get("stackTrace") or []]
        text = f"function {function}: [ERROR] {self.error_type}: {self.error_message}"
        if self.stack_trace:
            trace = "".join(self.stack_trace).rstrip("\n")
            text += f"\nTraceback (most recent call last):\n{trace}"
        super().__init__(text)


class _FunctionProcess:
    """One function process and the gateway's ends of its two pipes."""

    def __init__(
        self, popen: subprocess.Popen[bytes], requests: int, responses: int, generation: int
    ) -> None:
        self.popen = popen
        #: The pool's `generation` when it started: an older one runs code of before.
        self.generation = generation
        self.requests = requests
        self.responses = responses
        self.ready = False
        self._buffer = bytearray()
        self._poll = select.poll()
        self._poll.register(responses, select.POLLIN)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.requests, view) :]

    def receive(self, deadline: float) -> dict[str, Any] | None:
        """The next message, or None at the deadline. EOFError if the process exited."""
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                message: dict[str, Any] = json.loads(line)
                return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if not self._poll.poll(max(1, int(remaining * 1000))):
                continue
            chunk = os.read(self.responses, 1 << 16)
            if not chunk:
                raise EOFError
            self._buffer += chunk

    def end_input(self) -> None:
        """Close the request pipe: the process exits after its current invocation."""
        if self.requests >= 0:
            os.close(self.requests)
            self.requests = -1

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()

    def reap(self, timeout: float) -> None:
        """Wait up to `timeout` for the process to exit, kill it after that; close the pipes."""
        self.end_input()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        if self.responses >= 0:
            os.close(self.responses)
            self.responses = -1


class FunctionPool:
    """The warm processes of one function, up to `max_processes` at a time."""

    def __init__(
        self,
        spec: FunctionSpec,
        environment: Callable[[], dict[str, str]],
        max_processes: int = DEFAULT_MAX_PROCESSES,
    ) -> None:
        self.spec = spec
        self.max_processes = max(1, min(max_processes, spec.reserved_concurrency or max_processes))
        self._environment = environment
        self._lock = threading.Condition()
        self._idle: list[_FunctionProcess] = []
        self._processes: set[_FunctionProcess] = set()
        self._starting = 0
        self._closed = False
        #: Counts `restart()`s: a process of an older generation is not used again.
        self._generation = 0
        self._executor = ThreadPoolExecutor(
            self.max_processes, thread_name_prefix=f"wsgate-fn-{spec.name}"
        )

    def pids(self) -> list[int]:
        with self._lock:
            return [process.pid for process in self._processes]

    async def invoke(self, event: Mapping[str, Any], request_id: str) -> Any:
        """Invoke the function with `event` without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.invoke_blocking, event, request_id)

    def invoke_blocking(self, event: Mapping[str, Any], request_id: str) -> Any:
        """Invoke the function and wait for its result; raise FunctionError if it failed."""
        timeout = self.spec.timeout
        trace = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0"
        request = {
            "requestId": request_id,
            "event": event,
            "timeoutMs": int(timeout * 1000),
            "traceId": trace,
        }
        data = (json.dumps(request, separators=(",", ":")) + "\n").encode("utf-8")
        process = self._acquire(request_id)
        healthy = False
        try:
            if not process.ready:
                self._wait_ready(process, request_id)
            try:
                process.send(data)
                reply = process.receive(time.monotonic() + timeout)
            except (OSError, EOFError):
                raise self._exited(process, request_id) from None
            if reply is None:
                log.error(
                    "function %s: invocation %s timed out after %.2f s; stopping its process",
                    self.spec.name,
                    request_id,
                    timeout,
                )
                raise FunctionError(
                    self.spec.name,
                    {
                        "errorType": "Sandbox.Timedout",
                        "errorMessage": f"RequestId: {request_id} Error: Task timed out after "
                        f"{timeout:.2f} seconds",
                    },
                )
            healthy = True
        finally:
            self._release(process, healthy)
        if "error" in reply:
            raise FunctionError(self.spec.name, reply["error"])
        return reply.get("result")

    def _wait_ready(self, process: _FunctionProcess, request_id: str) -> None:
        try:
            message = process.receive(time.monotonic() + max(INIT_TIMEOUT, self.spec.timeout))
        except EOFError:
            raise self._exited(process, request_id) from None
        if message is None:
            raise FunctionError(
                self.spec.name,
                {"errorType": "Sandbox.Timedout", "errorMessage": "the init phase timed out"},
            )
        process.ready = True

    def _exited(self, process: _FunctionProcess, request_id: str) -> FunctionError:
        status = process.popen.wait()
        how = f"signal: {-status}" if status < 0 else f"exit status {status}"
        return FunctionError(
            self.spec.name,
            {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: {how}",
            },
        )

    def _acquire(self, request_id: str) -> _FunctionProcess:
        with self._lock:
            while True:
                if self._closed:
                    raise FunctionError(
                        self.spec.name,
                        {"errorType": "Runtime.Shutdown", "errorMessage": "wsgate is stopping"},
                    )
                if self._idle:
                    return self._idle.pop()  # the most recently used: the warmest
                if len(self._processes) + self._starting < self.max_processes:
                    self._starting += 1
                    break
                self._lock.wait()
        try:
            process = self._spawn()
        except BaseException:
            with self._lock:
                self._starting -= 1
                self._lock.notify()
            raise
        with self._lock:
            self._starting -= 1
            if not self._closed:
                self._processes.add(process)
                log.info("function %s: cold start (process %d)", self.spec.name, process.pid)
                return process
        process.kill()
        process.reap(1)
        raise FunctionError(
            self.spec.name, {"errorType": "Runtime.Shutdown", "errorMessage": "wsgate is stopping"}
        )

    def _spawn(self) -> _FunctionProcess:
        generation = self._generation  # before the process imports anything
        request_read, request_write = os.pipe()
        response_read, response_write = os.pipe()
        try:
            popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "wsgate.offline.function_process",
                    str(request_read),
                    str(response_write),
                ],
                pass_fds=(request_read, response_write),
                env=self._environment(),
                cwd=self.spec.code_dir,
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            os.close(request_write)
            os.close(response_read)
            raise FunctionError(
                self.spec.name,
                {"errorType": "Runtime.StartError", "errorMessage": f"cannot start: {exc}"},
            ) from exc
        finally:
            os.close(request_read)
            os.close(response_write)
        return _FunctionProcess(popen, request_write, response_read, generation)

    def _release(self, process: _FunctionProcess, healthy: bool) -> None:
        with self._lock:
            if healthy and not self._closed and process.generation == self._generation:
                self._idle.append(process)
                self._lock.notify()
                return
            self._processes.discard(process)
            self._lock.notify()
        process.kill()
        process.reap(1)

    def restart(self) -> None:
        """New code: idle processes stop now, busy ones when their invocation ends (on the
        code it started on); the next invocation starts a cold process."""
        with self._lock:
            if self._closed:
                return
            self._generation += 1
            idle, self._idle = self._idle, []
            self._processes.difference_update(idle)
            self._lock.notify_all()
        for process in idle:
            process.end_input()
        if idle:  # reaped off the event loop: a process may take its time to exit
            self._executor.submit(_reap, idle)

    def close(self, timeout: float = 2.0) -> None:
        """Stop every process: idle ones get EOF, busy ones are killed; wait for them all."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._processes.difference_update(idle)
            busy = list(self._processes)
            self._lock.notify_all()
        for process in busy:
            process.kill()  # its invoking thread sees EOF, reaps it and closes its pipes
        for process in idle:
            process.end_input()
        deadline = time.monotonic() + timeout
        for process in idle:
            process.reap(max(0.0, deadline - time.monotonic()))
        self._executor.shutdown(wait=True, cancel_futures=True)


def _reap(processes: list[_FunctionProcess], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    for process in processes:
        process.reap(max(0.0, deadline - time.monotonic()))
