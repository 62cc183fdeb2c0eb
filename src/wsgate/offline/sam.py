"""SAM / CloudFormation template -> AppSpec: a WebSocket API's routes and functions.

The graph followed, as API Gateway follows it when deployed:

    AWS::ApiGatewayV2::Api (ProtocolType WEBSOCKET, RouteSelectionExpression)
      <- AWS::ApiGatewayV2::Route (ApiId, RouteKey, Target "integrations/<Integration>")
           <- AWS::ApiGatewayV2::RouteResponse (RouteId): the route is two-way
      -> AWS::ApiGatewayV2::Integration (AWS_PROXY, IntegrationUri
           arn:aws:apigateway:...:lambda:path/2015-03-31/functions/<function ARN>/invocations)
      -> AWS::Serverless::Function (Handler, CodeUri, Runtime, Environment.Variables,
           MemorySize, Timeout, Layers; `Globals.Function` under them) or
           AWS::Lambda::Function (Code as a local path)
      -> AWS::Serverless::LayerVersion (ContentUri, a local folder: on the function's
           sys.path after its code, its `python/` folder when it has one)
    the `$connect` route's AuthorizationType CUSTOM + AuthorizerId
      -> AWS::ApiGatewayV2::Authorizer (AuthorizerType REQUEST, IdentitySource,
           AuthorizerUri ...functions/<function ARN>/invocations): run before `$connect`.
    the `$connect` route's AuthorizationType AWS_IAM: the App's `authorization="AWS_IAM"`
      (SigV4-signed handshakes, checked against the gateway's --access-keys).

Defaults are CloudFormation's: 128 MB and 3 s. The stage is --stage, else the
`AWS::ApiGatewayV2::Stage` of the API, else `dev`; the region is AWS_REGION (or
AWS_DEFAULT_REGION) from the environment, else us-east-1, as `sam local` does with a
profile; the stack name (for `${AWS::StackName}`) is the template's folder name. A
`samconfig.toml` next to the template, as `sam deploy` reads it (the `default`
environment, `global` then `deploy` parameters), gives `stack_name`, `region` and
`parameter_overrides`; `--parameter-overrides` win over it. Resources whose `Condition`
is false are left out, as CloudFormation does.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from wsgate.core.routing import CONNECT, DISCONNECT
from wsgate.exceptions import ConfigError
from wsgate.offline.cloudformation import (
    API,
    API_STAGE,
    DYNAMODB_TABLE,
    FUNCTION_TYPES,
    LAMBDA_FUNCTION,
    NO_VALUE,
    SIMPLE_TABLE,
    Intrinsics,
    Pseudo,
    table_spec,
)
from wsgate.offline.spec import (
    CLOUDFORMATION_MEMORY_MB,
    CLOUDFORMATION_TIMEOUT_S,
    DEFAULT_REGION,
    DEFAULT_ROUTE_SELECTION,
    AppSpec,
    AuthorizerSpec,
    FunctionSpec,
    RouteSpec,
    StreamSpec,
    is_python_runtime,
    layer_folder,
    stream_spec,
)

ROUTE = "AWS::ApiGatewayV2::Route"
ROUTE_RESPONSE = "AWS::ApiGatewayV2::RouteResponse"
INTEGRATION = "AWS::ApiGatewayV2::Integration"
EVENT_SOURCE_MAPPING = "AWS::Lambda::EventSourceMapping"
AUTHORIZER = "AWS::ApiGatewayV2::Authorizer"
#: Layers a function's `Layers` can `Ref` (only AWS::Serverless's ContentUri can be local).
LAYER_TYPES = ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion")

_FUNCTION_IN_URI = re.compile(r":function:([^/:]+)")


def _stack_name(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9-]", "-", path.resolve().parent.name).strip("-")
    return name or "wsgate"


def sam_spec(
    doc: Any,
    path: Path,
    *,
    stage: str | None = None,
    environ: Mapping[str, str] | None = None,
    api_id: str | None = None,
    parameters: Mapping[str, str] | None = None,
) -> AppSpec:
    """The WebSocket API of a parsed SAM or CloudFormation template; `api_id` is what a
    `Ref` to it evaluates to (the local API's id), `parameters` override the template's
    (`--parameter-overrides`)."""
    source = path.name
    if not isinstance(doc, dict) or not isinstance(doc.get("Resources"), dict):
        raise ConfigError(f"{source}: a template needs a Resources mapping")
    environ = os.environ if environ is None else environ
    resources: dict[str, Any] = doc["Resources"]
    samconfig = read_samconfig(path.parent / "samconfig.toml")
    region = str(
        samconfig.get("region")
        or environ.get("AWS_REGION")
        or environ.get("AWS_DEFAULT_REGION")
        or DEFAULT_REGION
    )
    intrinsics = Intrinsics(
        source=source,
        resource=lambda name: (
            resources.get(name) if isinstance(resources.get(name), dict) else None
        ),
        pseudo=Pseudo(
            region=region, stack_name=str(samconfig.get("stack_name") or _stack_name(path))
        ),
        parameters=doc.get("Parameters") or {},
        mappings=doc.get("Mappings") or {},
        api_id=api_id,
        overrides={
            **parse_parameter_overrides(samconfig.get("parameter_overrides") or ""),
            **(parameters or {}),
        },
        conditions=doc.get("Conditions") or {},
    )
    resources = {
        name: res
        for name, res in resources.items()
        if not isinstance(res, dict) or intrinsics.included(res, f"Resources.{name}")
    }

    def of_type(kind: str) -> dict[str, dict[str, Any]]:
        return {
            name: res
            for name, res in resources.items()
            if isinstance(res, dict) and res.get("Type") == kind
        }

    def props(name: str, res: Mapping[str, Any]) -> dict[str, Any]:
        value = res.get("Properties") or {}
        if not isinstance(value, dict):
            raise intrinsics.error(f"Resources.{name}.Properties", "must be a mapping")
        return value

    def prop(name: str, res: Mapping[str, Any], key: str) -> Any:
        properties = props(name, res)
        if key not in properties:
            return None
        value = intrinsics.evaluate(properties[key], f"Resources.{name}.Properties.{key}")
        return None if value is NO_VALUE else value

    apis = {
        name: res
        for name, res in of_type(API).items()
        if str(prop(name, res, "ProtocolType")).upper() == "WEBSOCKET"
    }
    if not apis:
        raise ConfigError(f"{source}: no {API} with ProtocolType WEBSOCKET")
    if len(apis) > 1:
        raise ConfigError(
            f"{source}: {len(apis)} WebSocket APIs ({', '.join(sorted(apis))}); wsgate serves one"
        )
    ((api_name, api),) = apis.items()
    selection = prop(api_name, api, "RouteSelectionExpression") or DEFAULT_ROUTE_SELECTION
    # What the resources' `ApiId: !Ref Api` evaluate to.
    api_ref = intrinsics.ref(api_name, f"Resources.{api_name}")

    if stage is None:
        stages = [
            prop(name, res, "StageName")
            for name, res in of_type(API_STAGE).items()
            if prop(name, res, "ApiId") == api_ref
        ]
        stage = str(stages[0]) if stages else "dev"
    intrinsics.stage = stage

    two_way_routes = {
        prop(name, res, "RouteId")
        for name, res in of_type(ROUTE_RESPONSE).items()
        if prop(name, res, "ApiId") in (api_ref, None)
    }
    integrations = of_type(INTEGRATION)
    functions_by_name: dict[str, str] = {}
    for name, res in resources.items():
        if isinstance(res, dict) and res.get("Type") in FUNCTION_TYPES:
            functions_by_name[name] = name
            functions_by_name[intrinsics.function_name(name, res)] = name

    routes: dict[str, list[RouteSpec]] = {}
    authorizer: AuthorizerSpec | None = None
    iam = False
    seen: dict[str, str] = {}
    for name, res in of_type(ROUTE).items():
        if prop(name, res, "ApiId") != api_ref:
            continue
        where = f"Resources.{name}.Properties"
        key = prop(name, res, "RouteKey")
        if not isinstance(key, str):
            raise intrinsics.error(f"{where}.RouteKey", "a route needs a RouteKey")
        if key in seen:
            raise intrinsics.error(where, f"route {key!r} is already defined by {seen[key]}")
        seen[key] = name
        target = prop(name, res, "Target")
        if not isinstance(target, str) or not target.startswith("integrations/"):
            raise intrinsics.error(
                f"{where}.Target", f"route {key!r} needs Target 'integrations/<Integration>'"
            )
        integration_id = target.removeprefix("integrations/")
        integration = integrations.get(integration_id)
        if integration is None:
            raise intrinsics.error(
                f"{where}.Target", f"no {INTEGRATION} named {integration_id!r} in the template"
            )
        function = _integrated_function(
            integration_id, integration, prop, intrinsics, functions_by_name
        )
        two_way = name in two_way_routes and key not in (CONNECT, DISCONNECT)
        routes.setdefault(function, []).append(RouteSpec(key, two_way))
        authorization = str(prop(name, res, "AuthorizationType") or "NONE").upper()
        if authorization == "AWS_IAM":
            if key != CONNECT:
                raise intrinsics.error(
                    f"{where}.AuthorizationType",
                    f"only $connect can be authorized with AWS_IAM, not {key!r}",
                )
            iam = True
        elif authorization == "CUSTOM":
            if key != CONNECT:
                raise intrinsics.error(
                    f"{where}.AuthorizationType",
                    f"only $connect can have an authorizer, not {key!r}",
                )
            authorizer = _authorizer(
                prop(name, res, "AuthorizerId"),
                f"{where}.AuthorizerId",
                of_type(AUTHORIZER),
                prop,
                intrinsics,
                functions_by_name,
            )
        elif authorization != "NONE":
            raise intrinsics.error(
                f"{where}.AuthorizationType",
                f"expected NONE, CUSTOM or AWS_IAM, got {authorization!r}",
            )
    if not routes:
        raise ConfigError(f"{source}: the WebSocket API {api_name} has no routes")
    if authorizer is not None:
        routes.setdefault(authorizer.function, [])
    streams = _streams(resources, intrinsics, functions_by_name)
    for function in streams:
        routes.setdefault(function, [])

    not_run = tuple(
        (name, _events_of(res))
        for name, res in resources.items()
        if isinstance(res, dict) and res.get("Type") in FUNCTION_TYPES and name not in routes
    )
    globals_ = (doc.get("Globals") or {}).get("Function") or {}
    functions = tuple(
        _function(
            name, resources[name], globals_, tuple(keys), intrinsics, path, streams.get(name, ())
        )
        for name, keys in routes.items()
    )
    tables = tuple(
        table_spec(name, res, intrinsics)
        for name, res in resources.items()
        if isinstance(res, dict) and res.get("Type") in (DYNAMODB_TABLE, SIMPLE_TABLE)
    )
    name = prop(api_name, api, "Name")
    return AppSpec(
        name=str(name or api_name),
        source=path,
        route_selection=str(selection),
        stage=stage,
        region=region,
        functions=functions,
        tables=tables,
        authorizer=authorizer,
        not_run=not_run,
        authorization="AWS_IAM" if iam else "NONE",
    )


def _events_of(resource: Mapping[str, Any]) -> str:
    """A function's event sources (`SQS, Schedule events`), for the list of those not run."""
    events = (resource.get("Properties") or {}).get("Events") or {}
    kinds = sorted(
        {str(event.get("Type")) for event in events.values() if isinstance(event, dict)}
        if isinstance(events, dict)
        else set()
    )
    if kinds:
        return f"{', '.join(kinds)} events"
    return "not the integration of a WebSocket route"


def read_samconfig(path: Path) -> dict[str, Any]:
    """The `default` environment's `global` then `deploy` parameters of a samconfig.toml."""
    if not path.is_file():
        return {}
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    default = config.get("default") or {}
    merged: dict[str, Any] = {}
    for command in ("global", "deploy"):
        section = (default.get(command) or {}).get("parameters") or {}
        if isinstance(section, dict):
            merged.update(section)
    return merged


def parse_parameter_overrides(value: str | list[str]) -> dict[str, str]:
    """`Key=Value Key2="a b"` as `sam --parameter-overrides` takes it, or a list of such
    words; CloudFormation's `ParameterKey=K,ParameterValue=V` form too."""
    words = value if isinstance(value, list) else shlex.split(value)
    overrides: dict[str, str] = {}
    for word in words:
        if word.startswith("ParameterKey="):
            key, _, rest = word.removeprefix("ParameterKey=").partition(",")
            overrides[key] = rest.removeprefix("ParameterValue=")
            continue
        key, equals, val = word.partition("=")
        if not equals or not key:
            raise ConfigError(f"parameter override {word!r}: expected Key=Value")
        overrides[key] = val
    return overrides


def _authorizer(
    authorizer_id: Any,
    where: str,
    authorizers: Mapping[str, dict[str, Any]],
    prop: Callable[[str, Mapping[str, Any], str], Any],
    intrinsics: Intrinsics,
    functions_by_name: Mapping[str, str],
) -> AuthorizerSpec:
    """The AWS::ApiGatewayV2::Authorizer `authorizer_id` names, as a function to run."""
    resource = authorizers.get(authorizer_id) if isinstance(authorizer_id, str) else None
    if resource is None:
        raise intrinsics.error(
            where, f"CUSTOM authorization needs AuthorizerId {{Ref: <{AUTHORIZER}>}}"
        )
    at = f"Resources.{authorizer_id}.Properties"
    kind = str(prop(authorizer_id, resource, "AuthorizerType") or "").upper()
    if kind != "REQUEST":
        raise intrinsics.error(
            f"{at}.AuthorizerType", f"{kind or 'no AuthorizerType'}: WebSocket APIs take REQUEST"
        )
    uri = prop(authorizer_id, resource, "AuthorizerUri")
    match = _FUNCTION_IN_URI.search(uri) if isinstance(uri, str) else None
    if match is None or match.group(1) not in functions_by_name:
        raise intrinsics.error(
            f"{at}.AuthorizerUri",
            f"{uri!r} does not name a function of this template "
            "(expected ...functions/${Function.Arn}/invocations)",
        )
    sources = prop(authorizer_id, resource, "IdentitySource") or []
    sources = [sources] if isinstance(sources, str) else sources
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise intrinsics.error(f"{at}.IdentitySource", "expected a list of identity sources")
    return AuthorizerSpec(functions_by_name[match.group(1)], tuple(sources))


def _integrated_function(
    integration_id: str,
    integration: dict[str, Any],
    prop: Callable[[str, Mapping[str, Any], str], Any],
    intrinsics: Intrinsics,
    functions_by_name: Mapping[str, str],
) -> str:
    where = f"Resources.{integration_id}.Properties"
    kind = str(prop(integration_id, integration, "IntegrationType") or "").upper()
    if kind != "AWS_PROXY":
        raise intrinsics.error(
            f"{where}.IntegrationType",
            f"{kind or 'no IntegrationType'}: wsgate runs AWS_PROXY Lambda integrations only",
        )
    uri = prop(integration_id, integration, "IntegrationUri")
    match = _FUNCTION_IN_URI.search(uri) if isinstance(uri, str) else None
    if match is None or match.group(1) not in functions_by_name:
        raise intrinsics.error(
            f"{where}.IntegrationUri",
            f"{uri!r} does not name a function of this template "
            "(expected ...functions/${Function.Arn}/invocations)",
        )
    return functions_by_name[match.group(1)]


def _streams(
    resources: Mapping[str, Any], intrinsics: Intrinsics, functions_by_name: Mapping[str, str]
) -> dict[str, tuple[StreamSpec, ...]]:
    """Each function's DynamoDB Stream sources: SAM `Events` of `Type: DynamoDB`, and
    `AWS::Lambda::EventSourceMapping`s whose EventSourceArn is a table's stream."""
    found: dict[str, list[StreamSpec]] = {}
    for name, res in resources.items():
        if not isinstance(res, dict):
            continue
        kind = res.get("Type")
        properties = res.get("Properties") or {}
        if kind in FUNCTION_TYPES:
            events = properties.get("Events") or {}
            for event_name, event in events.items() if isinstance(events, dict) else ():
                if not isinstance(event, dict) or event.get("Type") != "DynamoDB":
                    continue
                where = f"Resources.{name}.Properties.Events.{event_name}.Properties"
                config = event.get("Properties") or {}
                if intrinsics.evaluate(config.get("Enabled", True), f"{where}.Enabled") in (
                    False,
                    "false",
                ):
                    continue
                found.setdefault(name, []).append(_stream(config, "Stream", where, intrinsics))
        elif kind == EVENT_SOURCE_MAPPING:
            where = f"Resources.{name}.Properties"
            arn = intrinsics.evaluate(properties.get("EventSourceArn"), f"{where}.EventSourceArn")
            if ":dynamodb:" not in str(arn):
                continue  # SQS, Kinesis, ...: not run (listed with their functions)
            target = intrinsics.evaluate(properties.get("FunctionName"), f"{where}.FunctionName")
            function = functions_by_name.get(str(target).rpartition(":function:")[2] or str(target))
            if function is None:
                raise intrinsics.error(
                    f"{where}.FunctionName", f"no function {target!r} in the template"
                )
            found.setdefault(function, []).append(
                _stream(properties, "EventSourceArn", where, intrinsics)
            )
    return {function: tuple(specs) for function, specs in found.items()}


def _stream(
    config: Mapping[str, Any], arn_key: str, where: str, intrinsics: Intrinsics
) -> StreamSpec:
    def value(key: str) -> Any:
        return intrinsics.evaluate(config.get(key), f"{where}.{key}")

    try:
        return stream_spec(
            value(arn_key),
            value("BatchSize"),
            value("StartingPosition"),
            value("MaximumRetryAttempts"),
        )
    except ValueError as exc:
        raise intrinsics.error(where, str(exc)) from None


def _function(
    name: str,
    resource: dict[str, Any],
    globals_: Mapping[str, Any],
    routes: tuple[RouteSpec, ...],
    intrinsics: Intrinsics,
    path: Path,
    streams: tuple[StreamSpec, ...] = (),
) -> FunctionSpec:
    base = f"Resources.{name}.Properties"
    own = resource.get("Properties") or {}
    serverless = resource.get("Type") != LAMBDA_FUNCTION
    merged: dict[str, Any] = {**globals_, **own} if serverless else dict(own)
    if serverless:
        variables = {
            **((globals_.get("Environment") or {}).get("Variables") or {}),
            **((own.get("Environment") or {}).get("Variables") or {}),
        }
    else:
        variables = (own.get("Environment") or {}).get("Variables") or {}

    def value(key: str) -> Any:
        if key not in merged:
            return None
        result = intrinsics.evaluate(merged[key], f"{base}.{key}")
        return None if result is NO_VALUE else result

    runtime = value("Runtime")
    if not is_python_runtime(runtime):
        raise intrinsics.error(
            f"{base}.Runtime",
            f"function {name} uses runtime {runtime!r}; wsgate runs Python functions "
            "(python3.x) only",
        )
    if str(value("PackageType") or "Zip") != "Zip":
        raise intrinsics.error(f"{base}.PackageType", f"function {name}: only Zip packages run")
    handler = value("Handler")
    if not isinstance(handler, str) or "." not in handler:
        raise intrinsics.error(f"{base}.Handler", f"function {name} needs Handler module.function")
    code = value("CodeUri" if serverless else "Code")
    if code is None and serverless and "InlineCode" not in merged:
        code = "."
    if not isinstance(code, str):
        raise intrinsics.error(
            f"{base}.{'CodeUri' if serverless else 'Code'}",
            f"function {name}: the code must be a local folder (not S3 or inline code)",
        )
    code_dir = (path.parent / code).resolve()
    if not code_dir.is_dir():
        raise intrinsics.error(f"{base}.CodeUri", f"function {name}: no folder {code_dir}")

    environment = intrinsics.environment(variables, f"{base}.Environment.Variables")

    def number(key: str, default: float) -> float:
        raw = value(key)
        if raw is None:
            return default
        try:
            result = float(raw)
        except (TypeError, ValueError):
            raise intrinsics.error(f"{base}.{key}", f"expected a number, got {raw!r}") from None
        if result <= 0:
            raise intrinsics.error(f"{base}.{key}", f"must be positive, got {raw!r}")
        return int(result) if result.is_integer() else result

    reserved = value("ReservedConcurrentExecutions")
    layer_items = own.get("Layers") or []
    if serverless and globals_.get("Layers"):
        # SAM adds a list of Globals to the function's own, the global entries first.
        layer_items = [*globals_["Layers"], *layer_items]
    layers, remote_layers = _layers(layer_items, intrinsics, path, f"{base}.Layers")
    return FunctionSpec(
        name=name,
        function_name=intrinsics.function_name(name, resource),
        handler=handler,
        code_dir=code_dir,
        runtime=str(runtime),
        environment=environment,
        memory_size=int(number("MemorySize", CLOUDFORMATION_MEMORY_MB)),
        timeout=number("Timeout", CLOUDFORMATION_TIMEOUT_S),
        routes=routes,
        reserved_concurrency=int(reserved) if reserved else None,
        layers=layers,
        remote_layers=remote_layers,
        streams=streams,
    )


def _layers(
    items: Any, intrinsics: Intrinsics, path: Path, where: str
) -> tuple[tuple[Path, ...], tuple[str, ...]]:
    """A function's `Layers`: the folders of the template's own LayerVersions (a `Ref` to
    one with a local ContentUri), and the ARNs of the others (nothing local to run)."""
    if not isinstance(items, list):
        raise intrinsics.error(where, "Layers must be a list")
    folders: list[Path] = []
    remote: list[str] = []
    for index, item in enumerate(items):
        at = f"{where}[{index}]"
        name = item.get("Ref") if isinstance(item, dict) and len(item) == 1 else None
        resource = intrinsics.resource(name) if isinstance(name, str) else None
        if resource is None or resource.get("Type") not in LAYER_TYPES:
            arn = intrinsics.evaluate(item, at)
            if arn is not NO_VALUE:
                remote.append(str(arn))
            continue
        properties = resource.get("Properties") or {}
        content = intrinsics.evaluate(
            properties.get("ContentUri", properties.get("Content")),
            f"Resources.{name}.Properties.ContentUri",
        )
        if not isinstance(content, str):
            remote.append(f"{name} (its content is not a local folder)")
            continue
        folder = (path.parent / content).resolve()
        if not folder.is_dir():
            raise intrinsics.error(
                f"Resources.{name}.Properties.ContentUri", f"layer {name}: no folder {folder}"
            )
        folders.append(layer_folder(folder))
    return tuple(folders), tuple(remote)
