"""One Lambda execution environment, run as a function process of the local gateway.

    python -m wsgate.offline.function_process REQUEST_FD RESPONSE_FD

The gateway (`wsgate.offline.pool`) starts one of these per concurrent invocation of a
function, with the function's environment, in its code folder, and keeps it warm: the
handler is imported once (the init phase) and module-level state lives on across
invocations, as on Lambda. A function process runs one invocation at a time.

Protocol: JSON lines over two dedicated pipes, whose descriptors are the arguments, so the
process's own stdout and stderr stay the user's terminal (handlers' `print()` and logging
reach it, as they reach CloudWatch on AWS):

    process -> gateway  {"ready": true}                      once, after the init phase
    gateway -> process  {"requestId": ..., "event": {...}, "timeoutMs": ..., "traceId": ...}
    process -> gateway  {"result": <the handler's return value>}
                     or {"error": {"errorType", "errorMessage", "stackTrace", "requestId"}}

Errors have Lambda's shape and types: the exception's class name, or
`Runtime.ImportModuleError`, `Runtime.HandlerNotFound`, `Runtime.MalformedHandlerName`,
`Runtime.UserCodeSyntaxError` for load failures (retried on the next invocation, as Lambda
retries a failed init), `Runtime.MarshalError` for a result that is not JSON. Timeouts are
the gateway's business: it kills the process. EOF on the request pipe ends the process; so
does the gateway's death (a watchdog thread notices the new parent), so none is orphaned.

Why https is rewritten here: handlers build their management client as on AWS,
`boto3.client("apigatewaymanagementapi", endpoint_url=f"https://{domainName}/{stage}")`,
and `domainName` is the local gateway's `host:port`, which speaks plain HTTP. Serving TLS
would need a certificate the handlers trust (AWS_CA_BUNDLE, a CA to generate and install);
patching `boto3.client` would miss sessions, resources and clients made before the patch.
Every botocore request, whatever made it, goes through `URLLib3Session.send`, so the process
wraps that one method, before any user code is imported: a request to
`https://<gateway authority>/...` (the authorities are in WSGATE_GATEWAY_ORIGINS, which the
process removes from its environment) is sent to `http://<same authority>/...`. So is a
request to API Gateway's own `https://<api id>.execute-api.<region>.amazonaws.com/<stage>/
@connections/...`, the endpoint handlers build from the API id (a `Ref`, an environment
variable, AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI, or hard-coded with the deployed id):
it goes to the gateway (WSGATE_EXECUTE_API, `host:port/stage`), under the stage served.
Other hosts are untouched; a call to another AWS endpoint is logged once per host, saying
that wsgate does not serve it and where it goes (real AWS with `--aws`; otherwise AWS
refuses the placeholder credentials). The gateway's `@connections` API checks no
signatures, so the dummy credentials sign well enough.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from decimal import Decimal
from types import TracebackType
from typing import Any

from wsgate.context import CognitoIdentity
from wsgate.offline.spec import LOCAL_ACCOUNT_ID

#: Comma-separated `host:port` authorities whose https URLs go to the gateway over http.
ORIGINS_VARIABLE = "WSGATE_GATEWAY_ORIGINS"
#: `host:port/stage`: where API Gateway management calls (`*.execute-api.*`) go instead.
EXECUTE_API_VARIABLE = "WSGATE_EXECUTE_API"
#: "1" when the handlers may use the user's real AWS account (`--aws`).
REAL_AWS_VARIABLE = "WSGATE_REAL_AWS"
#: Folders for sys.path after the function's code (os.pathsep-separated): its installed
#: requirements.txt (`wsgate.offline.dependencies`), then its layers.
SYS_PATH_VARIABLE = "WSGATE_SYS_PATH"

#: API Gateway's default endpoint of an API: `<api id>.execute-api.<region>.amazonaws.com`.
_EXECUTE_API_HOST = re.compile(
    r"^[a-z0-9]+\.execute-api\.[a-z0-9-]+\.amazonaws\.com(\.cn)?(:443)?$"
)
#: Any other AWS endpoint (logged, not changed).
_AWS_HOST = re.compile(r"(^|\.)(amazonaws\.com(\.cn)?|api\.aws)(:\d+)?$")

_LOG_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s"


def install_https_rewrite(origins: str, execute_api: str = "", real_aws: bool = False) -> bool:
    """Send botocore's `https://<origin>/...` requests to `http://<origin>/...` instead, and
    API Gateway management calls (`https://<id>.execute-api.<region>.amazonaws.com/<stage>/
    ...`) to `http://<execute_api>/...` (`host:port/stage`); log calls to other AWS hosts.

    Returns False (and changes nothing) when there is no origin or botocore is missing.
    """
    authorities = {item.strip().lower() for item in origins.split(",") if item.strip()}
    if not authorities:
        return False
    try:
        from botocore.httpsession import URLLib3Session
    except ImportError:
        return False
    original = URLLib3Session.send
    logged: set[str] = set()

    def send(self: URLLib3Session, request: Any) -> Any:
        url: str = request.url
        scheme, _, rest = url.partition("://")
        end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        host, path = rest[:end].lower(), rest[end:]
        if scheme.lower() == "https" and host in authorities:
            request.url = "http://" + rest
        elif execute_api and _EXECUTE_API_HOST.match(host):
            # /<their stage>/@connections/... -> /<stage served>/@connections/...
            tail = path.lstrip("/").partition("/")[2]
            request.url = f"http://{execute_api}/{tail}"
        elif _AWS_HOST.search(host) and host not in logged:
            logged.add(host)
            print(
                f"wsgate: {os.environ.get('AWS_LAMBDA_FUNCTION_NAME', 'a function')} calls "
                f"{scheme}://{host}, which wsgate does not serve locally: "
                + (
                    "it goes to your AWS account (--aws)"
                    if real_aws
                    else "AWS will refuse wsgate's placeholder credentials (run with --aws "
                    "to use your account, or point the client at a local endpoint)"
                ),
                file=sys.stderr,
                flush=True,
            )
        return original(self, request)

    send.__wrapped__ = original  # type: ignore[attr-defined]
    URLLib3Session.send = send  # type: ignore[method-assign]
    return True


class FunctionContext:
    """`context` as the Python runtime builds it, from this environment's variables.

    Its own class rather than `wsgate.context.LambdaContext`: this process is the Lambda
    side, and reads everything from the environment, as awslambdaric does (the attributes
    are listed in docs/compatibility.md §9).
    """

    __slots__ = ("_deadline", "aws_request_id")

    identity = CognitoIdentity()
    client_context = None
    tenant_id = None

    def __init__(self, request_id: str, deadline: float) -> None:
        self.aws_request_id = request_id
        self._deadline = deadline

    @property
    def function_name(self) -> str:
        return os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")

    @property
    def function_version(self) -> str:
        return os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")

    @property
    def memory_limit_in_mb(self) -> str:
        return os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")

    @property
    def invoked_function_arn(self) -> str:
        region = os.environ.get("AWS_REGION", "us-east-1")
        return f"arn:aws:lambda:{region}:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME") or f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def log(self, message: str) -> None:
        sys.stdout.write(message)
        sys.stdout.flush()


class _Fault(Exception):
    """A load failure with Lambda's errorType."""

    def __init__(self, error_type: str, message: str, stack_trace: list[str] | None = None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack_trace = stack_trace or []


def _error(exc: BaseException, tb: TracebackType | None) -> dict[str, Any]:
    if isinstance(exc, _Fault):
        return {
            "errorType": exc.error_type,
            "errorMessage": exc.message,
            "stackTrace": exc.stack_trace,
        }
    return {
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_list(traceback.extract_tb(tb)),
    }


def load_handler(handler: str) -> Callable[..., Any]:
    """Import `module.function` as awslambdaric's bootstrap does (split on the last dot)."""
    module_name, dot, function_name = handler.rpartition(".")
    if not dot or not module_name:
        raise _Fault(
            "Runtime.MalformedHandlerName",
            f"Bad handler '{handler}': not enough values to unpack (expected 2, got 1)",
        )
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise _Fault(
            "Runtime.BuiltInModuleConflict",
            f"Cannot use built-in module {module_name} as a handler module",
        )
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        raise _Fault(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}"
        ) from exc
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise _Fault(
            "Runtime.UserCodeSyntaxError",
            f"Syntax error in module '{module_name}': {exc}",
            trace,
        ) from exc
    try:
        function: Callable[..., Any] = getattr(module, function_name)
    except AttributeError:
        raise _Fault(
            "Runtime.HandlerNotFound",
            f"Handler '{function_name}' missing on module '{module_name}'",
        ) from None
    return function


def _json_default(value: Any) -> Any:
    """Decimals (what boto3's DynamoDB returns) serialise, as with Lambda's simplejson."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class _RequestId(logging.Filter):
    """Stamps log records with the current invocation's request id, as Lambda does."""

    current = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = _RequestId.current
        return True


def _install_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter(_LOG_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(_RequestId())
    logging.getLogger().addHandler(handler)


class Function:
    """The handler of this environment, loaded once, invoked many times."""

    def __init__(self, handler: str) -> None:
        self.handler_name = handler
        self.handler: Callable[..., Any] | None = None
        self.init_error: dict[str, Any] | None = None

    def load(self) -> None:
        """The init phase: import the handler's module (its module-level code runs)."""
        try:
            self.handler = load_handler(self.handler_name)
            self.init_error = None
        except Exception as exc:
            tb = exc.__traceback__.tb_next if exc.__traceback__ else None
            self.init_error = _error(exc, tb)

    def invoke(self, request: dict[str, Any]) -> str:
        """Run one invocation; return the JSON line to send back."""
        request_id = str(request.get("requestId") or uuid.uuid4())
        if self.handler is None:
            self.load()
        if self.handler is None:
            return json.dumps({"error": {**(self.init_error or {}), "requestId": request_id}})
        deadline = time.monotonic() + float(request.get("timeoutMs", 3000)) / 1000
        context = FunctionContext(request_id, deadline)
        if request.get("traceId"):
            os.environ["_X_AMZN_TRACE_ID"] = str(request["traceId"])
        _RequestId.current = request_id
        try:
            result = self.handler(request.get("event"), context)
        except Exception as exc:
            tb = exc.__traceback__.tb_next if exc.__traceback__ else None
            return json.dumps({"error": {**_error(exc, tb), "requestId": request_id}})
        if inspect.iscoroutine(result):  # Lambda does not await it either
            result.close()
        try:
            payload = json.dumps(result, default=_json_default)
        except (TypeError, ValueError) as exc:
            error = {
                "errorType": "Runtime.MarshalError",
                "errorMessage": f"Unable to marshal response: {exc}",
                "stackTrace": [],
                "requestId": request_id,
            }
            return json.dumps({"error": error})
        return '{"result": ' + payload + "}"


def _write(fd: int, line: str) -> None:
    view = memoryview((line + "\n").encode("utf-8"))
    while view:
        view = view[os.write(fd, view) :]


def exit_with_parent(parent: int) -> None:
    """Exit if the parent (the gateway) dies, even while a handler runs: no orphaned
    processes. The local DynamoDB's process uses it too."""

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="wsgate-parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(
            "usage: python -m wsgate.offline.function_process REQUEST_FD RESPONSE_FD",
            file=sys.stderr,
        )
        return 2
    request_fd, response_fd = int(args[0]), int(args[1])
    for fd in (request_fd, response_fd):
        os.set_inheritable(fd, False)  # not into processes the handler starts
    # Ctrl+C reaches the whole process group: the gateway stops its function processes
    # itself, after running $disconnect in them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent(os.getppid())
    install_https_rewrite(
        os.environ.pop(ORIGINS_VARIABLE, ""),
        os.environ.pop(EXECUTE_API_VARIABLE, ""),
        os.environ.pop(REAL_AWS_VARIABLE, "") == "1",
    )
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    # The code, then its packages (on AWS both are in the deployment package), its layers
    # (/opt/python), then ours.
    first = [task_root, *filter(None, os.environ.pop(SYS_PATH_VARIABLE, "").split(os.pathsep))]
    sys.path[:] = [*first, *(p for p in sys.path if p not in ("", *first, os.getcwd()))]
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)
    _install_logging()

    function = Function(os.environ.get("_HANDLER", ""))
    function.load()
    _write(response_fd, '{"ready": true}')
    with os.fdopen(request_fd, "rb") as requests:
        for line in requests:
            _write(response_fd, function.invoke(json.loads(line)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
