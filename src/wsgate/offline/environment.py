"""The environment a function process starts with, as Lambda would give it.

Lambda's own variables (AWS_LAMBDA_FUNCTION_NAME, AWS_REGION, _HANDLER, ...) over the
function's and the user's; placeholder credentials instead of the user's (unless `--aws`),
so botocore can sign its requests to the local gateway and the local DynamoDB but a call
to a real AWS service is refused rather than made on the user's account; `IS_OFFLINE`, as
serverless-offline sets it; and the gateway's addresses, so the function process can send
`https://{domainName}/...` to the gateway over http.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
import uuid
from collections.abc import Mapping

from wsgate.offline.function_process import (
    EXECUTE_API_VARIABLE,
    ORIGINS_VARIABLE,
    REAL_AWS_VARIABLE,
    SYS_PATH_VARIABLE,
)
from wsgate.offline.spec import FunctionSpec

#: Credentials for function processes (and table creation) unless the user's are wanted.
DUMMY_ACCESS_KEY_ID = "wsgate-local"
DUMMY_SECRET_ACCESS_KEY = "wsgate-local"
#: What else can pick the user's own credentials: dropped with the placeholders.
_USER_CREDENTIALS = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
)


def function_environment(
    fn: FunctionSpec,
    *,
    region: str,
    origins: tuple[str, ...],
    dummy_credentials: bool,
    dynamodb_endpoint: str | None,
    api_id: str = "",
    stage: str = "",
    real_aws: bool = False,
    dependencies: str = "",
) -> dict[str, str]:
    """A function process's environment: the user's, the function's, then Lambda's own.

    `origins` are the gateway's `host:port` authorities (see `gateway_origins`);
    `dummy_credentials` replaces the user's credentials with placeholders (credentials the
    function itself declares are kept). `api_id` and `stage`: the local API's, so a
    management client made without an endpoint (AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI)
    reaches the gateway too; `real_aws`: calls to other AWS hosts are meant (`--aws`);
    `dependencies`: the folder of the function's installed requirements.txt (on sys.path
    after the code, before the function's layers).
    """
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
            "IS_OFFLINE": "true",
            ORIGINS_VARIABLE: ",".join(origins),
            EXECUTE_API_VARIABLE: _execute_api(origins, stage),
            REAL_AWS_VARIABLE: "1" if real_aws else "",
            SYS_PATH_VARIABLE: os.pathsep.join(filter(None, [dependencies, *map(str, fn.layers)])),
        }
    )
    if api_id and stage:
        env.setdefault(
            "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI",
            f"https://{api_id}.execute-api.{region}.amazonaws.com/{stage}",
        )
    if dummy_credentials and "AWS_ACCESS_KEY_ID" not in fn.environment:
        for name in _USER_CREDENTIALS:
            env.pop(name, None)
        env["AWS_ACCESS_KEY_ID"] = DUMMY_ACCESS_KEY_ID
        env["AWS_SECRET_ACCESS_KEY"] = DUMMY_SECRET_ACCESS_KEY
    if dynamodb_endpoint:
        env["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb_endpoint
    return env


def _execute_api(origins: tuple[str, ...], stage: str) -> str:
    """Where API Gateway management calls go: the gateway over loopback if it listens
    there, else its first address; empty before the gateway listens."""
    if not origins or not stage:
        return ""
    loopback = [origin for origin in origins if origin.startswith("127.0.0.1:")]
    return f"{(loopback or list(origins))[0]}/{stage}"


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
