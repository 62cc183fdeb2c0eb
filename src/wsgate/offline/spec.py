"""What `wsgate serve serverless.yml|template.yaml` runs: Lambda functions behind routes.

Both loaders (`wsgate.offline.serverless`, `wsgate.offline.sam`) reduce their file to one
`AppSpec`, so what runs it (`wsgate.offline.app`) does not care where it came from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

#: The Serverless Framework's defaults for a function (v3 docs: memorySize, timeout).
SERVERLESS_MEMORY_MB = 1024
SERVERLESS_TIMEOUT_S = 6
#: CloudFormation's / SAM's defaults for AWS::Lambda::Function and AWS::Serverless::Function.
CLOUDFORMATION_MEMORY_MB = 128
CLOUDFORMATION_TIMEOUT_S = 3
#: Serverless's `websocketsApiRouteSelectionExpression` default, and API Gateway's usual one.
DEFAULT_ROUTE_SELECTION = "$request.body.action"
DEFAULT_REGION = "us-east-1"
#: The account id in every ARN wsgate makes up (as `LambdaContext` uses).
LOCAL_ACCOUNT_ID = "000000000000"


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One route of the WebSocket API and whether it has a route response (two-way)."""

    key: str
    two_way: bool = False


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """A DynamoDB Stream event source of a function: which table, how it is read."""

    table: str
    batch_size: int = 100
    #: LATEST or TRIM_HORIZON (Lambda's StartingPosition).
    starting_position: str = "LATEST"
    #: Retries of a failed batch before it is discarded (MaximumRetryAttempts); -1, the
    #: default, retries until it succeeds, as Lambda does until the records expire.
    maximum_retry_attempts: int = -1


#: The table of a DynamoDB stream ARN (`arn:aws:dynamodb:...:table/<name>/stream/<label>`).
_STREAM_TABLE = re.compile(r":table/([^/]+)/stream/")


def stream_spec(
    arn: object,
    batch_size: object,
    starting_position: object,
    maximum_retry_attempts: object = None,
) -> StreamSpec:
    """The StreamSpec of a DynamoDB stream source, as serverless.yml and SAM declare one;
    ValueError saying what is wrong otherwise."""
    table = _STREAM_TABLE.search(str(arn))
    if table is None:
        raise ValueError(f"expected a DynamoDB table's StreamArn, got {arn!r}")
    position = str(starting_position or "TRIM_HORIZON").upper()
    if position not in ("LATEST", "TRIM_HORIZON"):
        raise ValueError(f"StartingPosition: expected LATEST or TRIM_HORIZON, got {position!r}")
    try:
        batch = int(str(batch_size or 100))
    except ValueError:
        raise ValueError(f"BatchSize: expected a number, got {batch_size!r}") from None
    retries = str(-1 if maximum_retry_attempts is None else maximum_retry_attempts)
    if not retries.lstrip("-").isdigit() or not -1 <= int(retries) <= 10000:
        raise ValueError(
            f"MaximumRetryAttempts: expected -1 (until it succeeds) to 10000, "
            f"got {maximum_retry_attempts!r}"
        )
    return StreamSpec(table.group(1), batch, position, int(retries))


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """One Lambda function, as its execution environment needs it."""

    #: The key in serverless.yml's `functions`, or the logical id in a template.
    name: str
    #: The deployed name: AWS_LAMBDA_FUNCTION_NAME and `context.function_name`.
    function_name: str
    #: `module.function`, relative to `code_dir` (`/` allowed in the module part).
    handler: str
    #: The code root: LAMBDA_TASK_ROOT, first on sys.path, the working directory.
    code_dir: Path
    runtime: str
    environment: Mapping[str, str]
    memory_size: int
    #: Seconds an invocation may run before it is stopped (Lambda's function timeout).
    timeout: float
    routes: tuple[RouteSpec, ...]
    #: ReservedConcurrentExecutions / reservedConcurrency: caps the function's processes.
    reserved_concurrency: int | None = None
    #: Its local layers' folders, in order: on sys.path after the code (see `layer_folder`).
    layers: tuple[Path, ...] = ()
    #: Its layers given as ARNs only: nothing local to put on sys.path.
    remote_layers: tuple[str, ...] = ()
    #: The DynamoDB Streams it is invoked from (`{"Records": [...]}` batches).
    streams: tuple[StreamSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthorizerSpec:
    """The Lambda REQUEST authorizer of `$connect`: which function, and the identity
    sources checked before invoking it (`route.request.querystring.token`, ...)."""

    #: The FunctionSpec.name of the authorizer's function.
    function: str
    identity_sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A DynamoDB table the app declares, as `CreateTable` parameters."""

    logical_id: str
    create_params: Mapping[str, Any]
    ttl_attribute: str | None = None

    @property
    def name(self) -> str:
        return str(self.create_params["TableName"])


@dataclass(frozen=True, slots=True)
class AppSpec:
    """A serverless.yml service or a SAM app: routes that invoke Python Lambda functions.

    `tables` are the DynamoDB tables it declares, to create on a local DynamoDB; the
    authorizer's function is one of `functions` (with no routes, unless it has some).
    """

    name: str
    source: Path
    route_selection: str
    stage: str
    region: str
    functions: tuple[FunctionSpec, ...]
    tables: tuple[TableSpec, ...] = field(default=())
    authorizer: AuthorizerSpec | None = None
    #: Functions of the file that wsgate does not run, each with why (its events).
    not_run: tuple[tuple[str, str], ...] = ()
    #: `$connect`'s `AuthorizationType` when it is `AWS_IAM` (SigV4-signed handshakes).
    authorization: Literal["NONE", "AWS_IAM"] = "NONE"


def layer_folder(content: Path) -> Path:
    """What of a layer's content goes on sys.path: its `python/` folder when it has one
    (Lambda extracts a layer into /opt and puts /opt/python on the path), else all of it."""
    python = content / "python"
    return python if python.is_dir() else content


def is_python_runtime(runtime: Any) -> bool:
    """`python3.12` and friends; anything else (nodejs, provided, java) is not ours."""
    return isinstance(runtime, str) and runtime.startswith("python3")


def environment_value(value: Any) -> str | None:
    """A Lambda environment value as CloudFormation passes it: always a string.

    Booleans become `true`/`false` (as CloudFormation writes them); `None` is no value.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not a valid environment value")
