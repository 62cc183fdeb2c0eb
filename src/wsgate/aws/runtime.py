"""Serve Lambda functions from serverless.yml or a SAM template on the local gateway.

    with load_lambda_app(Path("serverless.yml"), dynamodb_endpoint=URL) as lambda_app:
        async with serve(lambda_app.app, stage=lambda_app.stage) as server:
            lambda_app.attach(server.host, server.port)
            ...

Each function runs in worker processes (`wsgate.aws.worker`), each one a Lambda execution
environment: the function's environment variables, its code folder, a warm module, one
invocation at a time. A function has a pool of them that grows on demand up to
`max_workers` (or its reserved concurrency), as Lambda scales out; an invocation past the
function's timeout kills its worker (the next one starts cold) and fails.

The App's routes are async functions that hand the event to a worker from a thread of the
function's own executor, so the event loop never waits on a pipe. The function's result is
the route's result, so the gateway's rules apply unchanged (a raised error becomes
`Internal server error` or 502, two-way routes send `body`), with one addition for raw
Lambda code: `$connect` returning `None` or a dict without `statusCode` is a malformed
proxy response, 502, as REST APIs answer (spec 4.1, 12.1).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from wsgate.app import App
from wsgate.aws.cloudformation import load_document
from wsgate.aws.spec import FunctionSpec, LambdaAppSpec, TableSpec
from wsgate.aws.worker import ORIGINS_VARIABLE
from wsgate.core.events import Event
from wsgate.core.routing import CONNECT
from wsgate.exceptions import ConfigError, TargetError

log = logging.getLogger("wsgate.aws")

#: Workers per function unless its reserved concurrency is lower.
DEFAULT_MAX_WORKERS = 8
#: Lambda's limit for the init phase (importing the handler's module).
INIT_TIMEOUT = 10.0
#: Credentials for workers (and table creation) when the user has none: botocore must sign.
DUMMY_ACCESS_KEY_ID = "wsgate-local"
DUMMY_SECRET_ACCESS_KEY = "wsgate-local"
#: Config files wsgate serves instead of Python apps.
CONFIG_SUFFIXES = (".yml", ".yaml", ".json")


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


class _Worker:
    """One worker process and the gateway's ends of its two pipes."""

    def __init__(self, process: subprocess.Popen[bytes], requests: int, responses: int) -> None:
        self.process = process
        self.requests = requests
        self.responses = responses
        self.ready = False
        self._buffer = bytearray()
        self._poll = select.poll()
        self._poll.register(responses, select.POLLIN)

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.requests, view) :]

    def receive(self, deadline: float) -> dict[str, Any] | None:
        """The next message, or None at the deadline. EOFError if the worker exited."""
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
        """Close the request pipe: the worker exits after its current invocation."""
        if self.requests >= 0:
            os.close(self.requests)
            self.requests = -1

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()

    def reap(self, timeout: float) -> None:
        """Wait up to `timeout` for the process to exit, kill it after that; close the pipes."""
        self.end_input()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.responses >= 0:
            os.close(self.responses)
            self.responses = -1


class FunctionPool:
    """The warm workers of one function, up to `max_workers` at a time."""

    def __init__(
        self,
        spec: FunctionSpec,
        environment: Callable[[], dict[str, str]],
        max_workers: int = DEFAULT_MAX_WORKERS,
    ) -> None:
        self.spec = spec
        self.max_workers = max(1, min(max_workers, spec.reserved_concurrency or max_workers))
        self._environment = environment
        self._lock = threading.Condition()
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()
        self._starting = 0
        self._closed = False
        self._executor = ThreadPoolExecutor(
            self.max_workers, thread_name_prefix=f"wsgate-fn-{spec.name}"
        )

    def pids(self) -> list[int]:
        with self._lock:
            return [worker.pid for worker in self._workers]

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
        worker = self._acquire(request_id)
        healthy = False
        try:
            if not worker.ready:
                self._wait_ready(worker, request_id)
            try:
                worker.send(data)
                reply = worker.receive(time.monotonic() + timeout)
            except (OSError, EOFError):
                raise self._exited(worker, request_id) from None
            if reply is None:
                log.error(
                    "function %s: invocation %s timed out after %.2f s; stopping its worker",
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
            self._release(worker, healthy)
        if "error" in reply:
            raise FunctionError(self.spec.name, reply["error"])
        return reply.get("result")

    def _wait_ready(self, worker: _Worker, request_id: str) -> None:
        try:
            message = worker.receive(time.monotonic() + max(INIT_TIMEOUT, self.spec.timeout))
        except EOFError:
            raise self._exited(worker, request_id) from None
        if message is None:
            raise FunctionError(
                self.spec.name,
                {"errorType": "Sandbox.Timedout", "errorMessage": "the init phase timed out"},
            )
        worker.ready = True

    def _exited(self, worker: _Worker, request_id: str) -> FunctionError:
        status = worker.process.wait()
        how = f"signal: {-status}" if status < 0 else f"exit status {status}"
        return FunctionError(
            self.spec.name,
            {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: {how}",
            },
        )

    def _acquire(self, request_id: str) -> _Worker:
        with self._lock:
            while True:
                if self._closed:
                    raise FunctionError(
                        self.spec.name,
                        {"errorType": "Runtime.Shutdown", "errorMessage": "wsgate is stopping"},
                    )
                if self._idle:
                    return self._idle.pop()  # the most recently used: the warmest
                if len(self._workers) + self._starting < self.max_workers:
                    self._starting += 1
                    break
                self._lock.wait()
        try:
            worker = self._spawn()
        except BaseException:
            with self._lock:
                self._starting -= 1
                self._lock.notify()
            raise
        with self._lock:
            self._starting -= 1
            if not self._closed:
                self._workers.add(worker)
                log.info("function %s: cold start (worker %d)", self.spec.name, worker.pid)
                return worker
        worker.kill()
        worker.reap(1)
        raise FunctionError(
            self.spec.name, {"errorType": "Runtime.Shutdown", "errorMessage": "wsgate is stopping"}
        )

    def _spawn(self) -> _Worker:
        request_read, request_write = os.pipe()
        response_read, response_write = os.pipe()
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "wsgate.aws.worker",
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
        return _Worker(process, request_write, response_read)

    def _release(self, worker: _Worker, healthy: bool) -> None:
        with self._lock:
            if healthy and not self._closed:
                self._idle.append(worker)
                self._lock.notify()
                return
            self._workers.discard(worker)
            self._lock.notify()
        worker.kill()
        worker.reap(1)

    def close(self, timeout: float = 2.0) -> None:
        """Stop every worker: idle ones get EOF, busy ones are killed; wait for them all."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._workers.difference_update(idle)
            busy = list(self._workers)
            self._lock.notify_all()
        for worker in busy:
            worker.kill()  # its invoking thread sees EOF, reaps it and closes its pipes
        for worker in idle:
            worker.end_input()
        deadline = time.monotonic() + timeout
        for worker in idle:
            worker.reap(max(0.0, deadline - time.monotonic()))
        self._executor.shutdown(wait=True, cancel_futures=True)


def gateway_origins(host: str, port: int) -> tuple[str, ...]:
    """The `host:port` values a handler may find in `domainName` for a gateway on host:port."""
    wildcard = host in ("", "0.0.0.0", "::")
    hosts = {host} if not wildcard else set()
    try:
        loopback = wildcard or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        hosts |= {"127.0.0.1", "localhost", "::1"}
    if wildcard:
        try:
            name = socket.gethostname()
            hosts |= {name, *socket.gethostbyname_ex(name)[2]}
        except OSError:
            pass
    origins = {f"[{h}]:{port}" if ":" in h else f"{h}:{port}" for h in hosts}
    if port in (80, 443):
        origins |= {f"[{h}]" if ":" in h else h for h in hosts}
    return tuple(sorted(origins))


def has_credentials(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the user's environment provides AWS credentials (without asking any server).

    Environment variables, profiles, shared credentials and config files count; instance
    and container metadata are not queried.
    """
    environ = os.environ if environ is None else environ
    if environ.get("AWS_ACCESS_KEY_ID") or environ.get("AWS_PROFILE"):
        return True
    if environ.get("AWS_WEB_IDENTITY_TOKEN_FILE") or environ.get(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI"
    ):
        return True
    try:
        import botocore.credentials
        import botocore.session
    except ImportError:
        return False
    try:
        resolver = botocore.credentials.create_credential_resolver(botocore.session.Session())
        for name in ("container-role", "iam-role", "custom-process"):
            resolver.remove(name)
        return resolver.load_credentials() is not None
    except Exception:  # a broken profile: let botocore report it in the handler
        return False


class LambdaApp:
    """A LambdaAppSpec on the local gateway: the App to serve and the workers behind it."""

    def __init__(
        self,
        spec: LambdaAppSpec,
        *,
        dynamodb_endpoint: str | None = None,
        max_workers: int = DEFAULT_MAX_WORKERS,
    ) -> None:
        self.spec = spec
        self.stage = spec.stage
        self.dynamodb_endpoint = dynamodb_endpoint
        self.origins: tuple[str, ...] = ()
        self.dummy_credentials = not has_credentials()
        self.pools = {
            fn.name: FunctionPool(fn, _bind(self.environment, fn), max_workers)
            for fn in spec.functions
        }
        self.app = App(route_selection=spec.route_selection, name=spec.name)
        for fn in spec.functions:
            for route in fn.routes:
                self.app.add_route(
                    route.key,
                    _route_handler(self.pools[fn.name], route.key),
                    return_response=route.two_way,
                )

    def attach(self, host: str, port: int) -> None:
        """Tell workers started from now on where the gateway listens (for the https rewrite)."""
        self.origins = gateway_origins(host, port)

    def pids(self) -> list[int]:
        """The worker processes alive now."""
        return [pid for pool in self.pools.values() for pid in pool.pids()]

    def close(self) -> None:
        """Stop every worker (run this after the gateway stopped: $disconnect needs them)."""
        for pool in self.pools.values():
            pool.close()

    def __enter__(self) -> LambdaApp:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def environment(self, fn: FunctionSpec) -> dict[str, str]:
        """The worker's environment: the user's, the function's, then Lambda's own variables."""
        region = self.spec.region
        env = dict(os.environ)
        env.update(fn.environment)
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.function_name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": (
                    f"{time.strftime('%Y/%m/%d', time.gmtime())}/[$LATEST]{uuid.uuid4().hex}"
                ),
                "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
                "AWS_REGION": region,
                "AWS_DEFAULT_REGION": region,
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{fn.runtime}",
                "_HANDLER": fn.handler,
                "LAMBDA_TASK_ROOT": str(fn.code_dir),
                "TZ": "UTC",
                ORIGINS_VARIABLE: ",".join(self.origins),
            }
        )
        if self.dummy_credentials and "AWS_ACCESS_KEY_ID" not in fn.environment:
            env["AWS_ACCESS_KEY_ID"] = DUMMY_ACCESS_KEY_ID
            env["AWS_SECRET_ACCESS_KEY"] = DUMMY_SECRET_ACCESS_KEY
        if self.dynamodb_endpoint:
            env["AWS_ENDPOINT_URL_DYNAMODB"] = self.dynamodb_endpoint
        return env


def _bind(
    environment: Callable[[FunctionSpec], dict[str, str]], fn: FunctionSpec
) -> Callable[[], dict[str, str]]:
    return lambda: environment(fn)


def _route_handler(pool: FunctionPool, key: str) -> Callable[[Event, Any], Awaitable[Any]]:
    async def invoke(event: Event, context: Any) -> Any:
        request_id = str(getattr(context, "aws_request_id", "") or uuid.uuid4())
        result = await pool.invoke(event, request_id)
        if key == CONNECT and not (isinstance(result, dict) and "statusCode" in result):
            raise FunctionError(
                pool.spec.name,
                {
                    "errorType": "MalformedProxyResponse",
                    "errorMessage": f"$connect returned {json.dumps(result)}: API Gateway needs "
                    'a proxy response such as {"statusCode": 200}',
                },
            )
        return result

    invoke.__qualname__ = f"{pool.spec.function_name} ({pool.spec.handler})"
    return invoke


def load_spec(path: Path, *, stage: str | None = None) -> LambdaAppSpec:
    """Read serverless.yml or a SAM/CloudFormation template (told apart by their content)."""
    from wsgate.aws.sam import sam_spec
    from wsgate.aws.serverless import serverless_spec

    if not path.is_file():
        raise TargetError(f"no such file: {path}")
    doc = load_document(path)
    if isinstance(doc, dict) and ("service" in doc or "provider" in doc):
        return serverless_spec(doc, path, stage=stage)
    if isinstance(doc, dict) and "Resources" in doc:
        return sam_spec(doc, path, stage=stage)
    raise ConfigError(
        f"{path}: neither a serverless.yml (service, provider, functions) "
        "nor a SAM/CloudFormation template (Resources)"
    )


def create_tables(
    tables: tuple[TableSpec, ...], *, endpoint: str, region: str, dummy_credentials: bool
) -> list[str]:
    """Create the tables missing at `endpoint` (a local DynamoDB); return their names."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=DUMMY_ACCESS_KEY_ID if dummy_credentials else None,
        aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY if dummy_credentials else None,
    )
    created: list[str] = []
    name = ""
    try:
        existing: set[str] = set()
        for page in client.get_paginator("list_tables").paginate():
            existing.update(page.get("TableNames", []))
        for table in tables:
            name = table.name
            if name in existing:
                continue
            try:
                client.create_table(**table.create_params)
            except client.exceptions.ResourceInUseException:
                continue
            client.get_waiter("table_exists").wait(
                TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
            )
            if table.ttl_attribute:
                client.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
                )
            created.append(name)
    except (BotoCoreError, ClientError) as exc:
        what = f"table {name}" if name else "tables"
        raise ConfigError(f"cannot create DynamoDB {what} at {endpoint}: {exc}") from exc
    finally:
        client.close()
    return created


def load_lambda_app(
    path: Path,
    *,
    stage: str | None = None,
    dynamodb_endpoint: str | None = None,
    max_workers: int = DEFAULT_MAX_WORKERS,
) -> LambdaApp:
    """Load serverless.yml or template.yaml; create its DynamoDB tables at the endpoint.

    `stage` None means the file's own (provider.stage, the template's Stage, else dev).
    `dynamodb_endpoint` (or AWS_ENDPOINT_URL_DYNAMODB) points the handlers' DynamoDB at a
    local one, and the tables under `Resources` are created there if missing. Call
    `attach()` once the gateway listens, and `close()` after it stopped.
    """
    spec = load_spec(Path(path), stage=stage)
    running = f"python{sys.version_info.major}.{sys.version_info.minor}"
    declared = sorted({fn.runtime for fn in spec.functions} - {running})
    if declared:
        log.warning(
            "%s declares %s; its functions run on this interpreter, %s",
            spec.source.name,
            ", ".join(declared),
            running,
        )
    endpoint = dynamodb_endpoint or os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or None
    lambda_app = LambdaApp(spec, dynamodb_endpoint=dynamodb_endpoint, max_workers=max_workers)
    if endpoint and spec.tables:
        created = create_tables(
            spec.tables,
            endpoint=endpoint,
            region=spec.region,
            dummy_credentials=lambda_app.dummy_credentials,
        )
        for name in created:
            log.info("created DynamoDB table %s at %s", name, endpoint)
    return lambda_app
