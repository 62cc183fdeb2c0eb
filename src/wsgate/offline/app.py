"""Serve the Lambda functions of a serverless.yml or a SAM template on the local gateway.

    with open_offline_app(Path("serverless.yml")) as offline_app:
        async with serve(offline_app.app, stage=offline_app.stage) as server:
            offline_app.attach(server.host, server.port)
            ...

`OfflineApp` turns an `AppSpec` into an `App` whose routes invoke the functions, each in
its own function processes (`wsgate.offline.pool`). A route is an async function that
hands the event to the function's pool, so the event loop never waits on a pipe. The
function's result is the route's result, so the gateway's rules apply unchanged (a raised
error becomes `Internal server error` or 502, two-way routes send `body`): `$connect`
returning `None` or a dict without `statusCode` accepts the connection, as serverless-offline
does and as many deployed apps rely on; `strict_connect_result` makes it the 502 REST APIs
answer instead (docs/compatibility.md §4.1). The
`$connect` authorizer of the file is the App's authorizer, run in its function's processes:
its result is judged by the gateway's rules (docs/compatibility.md §7), and an error whose
message is `Unauthorized` is the 401 it is on AWS.

Local by default: without `dynamodb_endpoint`, the handlers' DynamoDB is a moto server
started for the app (`wsgate.offline.local_dynamodb`) and their credentials are
placeholders, so nothing reaches a real AWS account unless `aws=True` says so.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from wsgate.app import App
from wsgate.core.authorizer import UNAUTHORIZED
from wsgate.core.events import Event
from wsgate.core.routing import CONNECT
from wsgate.exceptions import ConfigError, TargetError
from wsgate.offline.cloudformation import load_document
from wsgate.offline.dependencies import install_dependencies
from wsgate.offline.environment import (
    DUMMY_ACCESS_KEY_ID,
    DUMMY_SECRET_ACCESS_KEY,
    function_environment,
    gateway_origins,
    has_credentials,
)
from wsgate.offline.local_dynamodb import LocalDynamoDB
from wsgate.offline.pool import DEFAULT_MAX_PROCESSES, FunctionError, FunctionPool
from wsgate.offline.sam import parse_parameter_overrides, sam_spec
from wsgate.offline.serverless import serverless_spec
from wsgate.offline.spec import AppSpec, FunctionSpec
from wsgate.offline.streams import StreamPoller
from wsgate.offline.tables import create_tables

log = logging.getLogger("wsgate.offline")


class OfflineApp:
    """An AppSpec on the local gateway: the App to serve and the function processes behind it."""

    def __init__(
        self,
        spec: AppSpec,
        *,
        dynamodb_endpoint: str | None = None,
        max_processes: int = DEFAULT_MAX_PROCESSES,
        aws: bool = False,
        strict_connect_result: bool = False,
        local_dynamodb: LocalDynamoDB | None = None,
        api_id: str | None = None,
        dependencies: Mapping[str, Path] | None = None,
    ) -> None:
        self.spec = spec
        #: FunctionSpec.name -> the folder of its installed requirements.txt.
        self.dependencies = dict(dependencies or {})
        self.stage = spec.stage
        #: The local API's id: `requestContext.apiId`, and what `Ref`s to the API are.
        self.api_id = api_id or local_api_id(spec.source)
        self.aws = aws
        self.dynamodb_endpoint = dynamodb_endpoint
        self.origins: tuple[str, ...] = ()
        #: Placeholders unless the user asked for their real account (`aws`) and has one.
        self.dummy_credentials = not (aws and has_credentials())
        #: The moto server started for this app, stopped by `close()`.
        self.local_dynamodb = local_dynamodb
        #: One per DynamoDB Stream a function is subscribed to, started by `attach()`.
        self.stream_pollers: list[StreamPoller] = []
        self.pools = {
            fn.name: FunctionPool(fn, _bind(self.environment, fn), max_processes)
            for fn in spec.functions
        }
        self.app = App(
            route_selection=spec.route_selection, name=spec.name, authorization=spec.authorization
        )
        for fn in spec.functions:
            for route in fn.routes:
                self.app.add_route(
                    route.key,
                    _route_handler(self.pools[fn.name], route.key, strict_connect_result),
                    return_response=route.two_way,
                )
        if spec.authorizer is not None:
            self.app.add_authorizer(
                _authorizer_handler(self.pools[spec.authorizer.function]),
                identity_sources=spec.authorizer.identity_sources,
            )

    def attach(self, host: str, port: int) -> None:
        """Give function processes started from now on the gateway's addresses (https rewrite)."""
        self.origins = gateway_origins(host, port)
        self._start_streams()
        log.info(
            "API id %s: the functions' https://%s.execute-api.%s.amazonaws.com/%s "
            "(any API id) reaches this gateway",
            self.api_id,
            self.api_id,
            self.spec.region,
            self.stage,
        )

    def _start_streams(self) -> None:
        """Poll the local DynamoDB's streams for the functions subscribed to them (their
        records may ask the gateway to post: so once it listens)."""
        subscriptions = [(fn, stream) for fn in self.spec.functions for stream in fn.streams]
        if not subscriptions or self.stream_pollers:
            return
        if self.dynamodb_endpoint is None:
            for fn, stream in subscriptions:
                log.info("not run locally: function %s (stream of %s)", fn.name, stream.table)
            return
        options = {"endpoint_url": self.dynamodb_endpoint, "region_name": self.spec.region}
        if self.dummy_credentials:
            options["aws_access_key_id"] = DUMMY_ACCESS_KEY_ID
            options["aws_secret_access_key"] = DUMMY_SECRET_ACCESS_KEY
        for fn, stream in subscriptions:
            poller = StreamPoller(self.pools[fn.name], stream, options)
            poller.start()
            self.stream_pollers.append(poller)

    def pids(self) -> list[int]:
        """The function processes alive now."""
        return [pid for pool in self.pools.values() for pid in pool.pids()]

    def restart_processes(self) -> str:
        """The functions' code changed: the next invocations start cold on it (each
        running one finishes on the code it started on). Says what restarts."""
        for pool in self.pools.values():
            pool.restart()
        return f"{len(self.pools)} functions (their next invocations start cold)"

    def close(self) -> None:
        """Stop every function process (after the gateway stopped: $disconnect needs them),
        then the local DynamoDB (their $disconnect may write to it)."""
        try:
            for poller in self.stream_pollers:
                poller.stop()
            for pool in self.pools.values():
                pool.close()
        finally:
            if self.local_dynamodb is not None:
                self.local_dynamodb.stop()

    def __enter__(self) -> OfflineApp:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def environment(self, fn: FunctionSpec) -> dict[str, str]:
        """The environment `fn`'s next function process starts with."""
        return function_environment(
            fn,
            region=self.spec.region,
            origins=self.origins,
            dummy_credentials=self.dummy_credentials,
            dynamodb_endpoint=self.dynamodb_endpoint,
            api_id=self.api_id,
            stage=self.stage,
            real_aws=self.aws,
            dependencies=str(self.dependencies.get(fn.name, "")),
        )


def _note_runtimes(spec: AppSpec) -> None:
    """One line per Python the functions declare other than this one: a note for an older
    one (they run here, as most code does), a warning for a newer one (they may not)."""
    running = sys.version_info[:2]
    here = f"python{running[0]}.{running[1]}"
    for runtime in sorted({fn.runtime for fn in spec.functions} - {here}):
        try:
            declared = tuple(int(part) for part in runtime.removeprefix("python").split("."))
        except ValueError:
            declared = running
        if declared > running:
            log.warning(
                "%s declares %s, newer than this Python (%s): code that needs %s may fail "
                "here; run wsgate with %s",
                spec.source.name,
                runtime,
                here,
                runtime,
                runtime,
            )
        else:
            log.info(
                "%s declares %s; its functions run on this Python, %s",
                spec.source.name,
                runtime,
                here,
            )


def local_api_id(source: Path) -> str:
    """A 10-character id like API Gateway's, the same for a file on every run."""
    digest = hashlib.sha256(str(source.resolve()).encode()).digest()
    number = int.from_bytes(digest[:8], "big")
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    return "".join(alphabet[(number >> (6 * i)) % 36] for i in range(10))


def _bind(
    environment: Callable[[FunctionSpec], dict[str, str]], fn: FunctionSpec
) -> Callable[[], dict[str, str]]:
    return lambda: environment(fn)


def _route_handler(
    pool: FunctionPool, key: str, strict_connect_result: bool
) -> Callable[[Event, Any], Awaitable[Any]]:
    strict = strict_connect_result and key == CONNECT

    async def invoke(event: Event, context: Any) -> Any:
        request_id = str(getattr(context, "aws_request_id", "") or uuid.uuid4())
        result = await pool.invoke(event, request_id)
        if strict and not (isinstance(result, dict) and "statusCode" in result):
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


def _authorizer_handler(pool: FunctionPool) -> Callable[[Event, Any], Awaitable[Any]]:
    async def invoke(event: Event, context: Any) -> Any:
        request_id = str(getattr(context, "aws_request_id", "") or uuid.uuid4())
        try:
            return await pool.invoke(event, request_id)
        except FunctionError as error:
            if error.error_message == UNAUTHORIZED:  # the function's own "Unauthorized"
                raise Exception(UNAUTHORIZED) from error
            raise

    invoke.__qualname__ = f"{pool.spec.function_name} ({pool.spec.handler})"
    return invoke


def load_app_spec(
    path: Path,
    *,
    stage: str | None = None,
    api_id: str | None = None,
    parameters: Mapping[str, str] | None = None,
) -> AppSpec:
    """Read serverless.yml or a SAM/CloudFormation template (told apart by their content).

    `api_id`: what `Ref`s to the WebSocket API evaluate to (default: `local_api_id`);
    `parameters`: serverless.yml's `${param:KEY}` (and values for `${ssm:...}`...), a
    template's parameter overrides.
    """
    if not path.is_file():
        raise TargetError(f"no such file: {path}")
    doc = load_document(path)
    api_id = api_id or local_api_id(path)
    if isinstance(doc, dict) and ("service" in doc or "provider" in doc):
        return serverless_spec(doc, path, stage=stage, api_id=api_id, params=parameters)
    if isinstance(doc, dict) and "Resources" in doc:
        return sam_spec(doc, path, stage=stage, api_id=api_id, parameters=parameters)
    raise ConfigError(
        f"{path}: neither a serverless.yml (service, provider, functions) "
        "nor a SAM/CloudFormation template (Resources)"
    )


#: What the base install lacks for serverless.yml/SAM targets, and how to get it.
OFFLINE_EXTRA = "pip install 'wsgate[offline]'"


def require_modules(modules: dict[str, str], what: str) -> None:
    """A ConfigError naming `what` needs and the extra to install, if a module is missing.

    `modules` maps import names to the names users know (`yaml` is PyYAML).
    """
    missing = [name for module, name in modules.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise ConfigError(f"{what} needs {' and '.join(missing)}: {OFFLINE_EXTRA}")


def open_offline_app(
    path: Path,
    *,
    stage: str | None = None,
    dynamodb_endpoint: str | None = None,
    max_processes: int = DEFAULT_MAX_PROCESSES,
    aws: bool = False,
    strict_connect_result: bool = False,
    api_id: str | None = None,
    parameters: Sequence[str] = (),
    install: bool = True,
) -> OfflineApp:
    """Load serverless.yml or template.yaml; create its DynamoDB tables on a local DynamoDB.

    `stage` None means the file's own (provider.stage, the template's Stage, else dev).
    The handlers' DynamoDB is `dynamodb_endpoint` (or AWS_ENDPOINT_URL_DYNAMODB), else a
    moto server started here; the tables under `Resources` are created there if missing.
    `aws` instead lets the handlers use the user's AWS account, real DynamoDB included.
    `strict_connect_result`: `$connect` must return a proxy response (else 502). `api_id`:
    the local API's (default: `local_api_id(path)`); serve the app with it. `parameters`:
    `KEY=VALUE` words (`--param`, `--parameter-overrides`). `install`: each function's
    requirements.txt is installed into a cached folder of its own first. Call
    `attach()` once the gateway listens, and `close()` after it stopped.
    """
    path = Path(path)
    require_modules({"yaml": "PyYAML", "boto3": "boto3"}, f"serving {path.name}")
    api_id = api_id or local_api_id(path)
    spec = load_app_spec(
        path,
        stage=stage,
        api_id=api_id,
        parameters=parse_parameter_overrides(list(parameters)),
    )
    _note_runtimes(spec)
    for name, why in spec.not_run:
        log.info("not run locally: function %s (%s); wsgate runs WebSocket routes", name, why)
    remote_layers: dict[str, list[str]] = {}
    for fn in spec.functions:
        for arn in fn.remote_layers:
            remote_layers.setdefault(arn, []).append(fn.name)
    for arn, names in remote_layers.items():
        log.warning(
            "layer %s (of %s) is not available locally: install what the functions import "
            "from it into this environment (or a requirements.txt)",
            arn,
            ", ".join(names),
        )
    dependencies = install_dependencies(spec) if install else {}
    endpoint = dynamodb_endpoint or os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or None
    local_dynamodb: LocalDynamoDB | None = None
    if aws:
        log.warning(
            "--aws: the functions of %s use your AWS account%s",
            spec.source.name,
            f" (DynamoDB at {endpoint})" if endpoint else ", its DynamoDB tables included",
        )
    elif endpoint is None:
        require_modules(
            {"moto": "moto[server]", "flask": "Flask"},
            f"a local DynamoDB for {path.name} (or --dynamodb-endpoint URL, or --aws)",
        )
        local_dynamodb = LocalDynamoDB()
        local_dynamodb.start()
        endpoint = local_dynamodb.endpoint
        log.info("local DynamoDB (moto) for the functions: %s", endpoint)
    offline_app = OfflineApp(
        spec,
        dynamodb_endpoint=endpoint,
        max_processes=max_processes,
        aws=aws,
        strict_connect_result=strict_connect_result,
        local_dynamodb=local_dynamodb,
        api_id=api_id,
        dependencies=dependencies,
    )
    try:
        if endpoint and spec.tables:
            created = create_tables(
                spec.tables,
                endpoint=endpoint,
                region=spec.region,
                dummy_credentials=offline_app.dummy_credentials,
            )
            for name in created:
                log.info("created DynamoDB table %s at %s", name, endpoint)
    except BaseException:
        offline_app.close()
        raise
    return offline_app
