"""serverless.yml -> AppSpec: the functions with `websocket` events, as deployed.

What is read, and how the Serverless Framework (v3) would read it:

- `functions.<key>` with `events: [- websocket: $connect]` (short form) or
  `- websocket: {route: X, routeResponseSelectionExpression: $default}` (long form; the
  route response makes the route two-way). Functions without websocket events are skipped.
- `provider.websocketsApiRouteSelectionExpression` (default `$request.body.action`),
  `provider.websocketsApiName`, `provider.region` (default us-east-1), `provider.stage`.
- `runtime`, `memorySize` (default 1024), `timeout` (default 6 s), `environment` (merged
  over `provider.environment`), `name` (default `{service}-{stage}-{key}`),
  `reservedConcurrency`: function first, then provider.
- `resources.Resources`: `AWS::DynamoDB::Table`s, to create locally and to resolve `Ref`s.
- `authorizer` on the `$connect` event: a function of this service, as `authorizer: fn`,
  `{name: fn, identitySource: [...]}` or `{arn: ...:function:<its name>, identitySource:
  [...]}` (identitySource defaults to `route.request.header.Auth`, as in Serverless). It
  runs locally like any function; an ARN of a function outside the service cannot.
- `layers` of a function (else `provider.layers`): a `{Ref: <Name>LambdaLayer}` to one of
  the service's top-level `layers` puts its `path` folder (its `python/` folder when it
  has one) on the function's sys.path after its code; a layer ARN has nothing local.
- `stream` events of type dynamodb (`arn: {Fn::GetAtt: [Table, StreamArn]}`, `batchSize`,
  `startingPosition`, default TRIM_HORIZON): the function is invoked with the table's
  changes on the local DynamoDB (`wsgate.offline.streams`).

Serverless variables (`${self:...}`, `${opt:stage}`, `${env:...}`, `${file(...)}`, ...) are
resolved by `wsgate.offline.variables`, lazily and only in the keys above; CloudFormation
`Ref` and `Fn::*` in environment values are evaluated by `wsgate.offline.cloudformation`,
with `resources.Conditions` (a resource whose `Condition` is false is left out), and so
are the serverless-pseudo-parameters plugin's `#{AWS::Region}`, `#{Resource}`, ...
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wsgate.core.routing import CONNECT, DISCONNECT
from wsgate.exceptions import ConfigError
from wsgate.offline.cloudformation import (
    API,
    API_STAGE,
    DYNAMODB_TABLE,
    LAMBDA_FUNCTION,
    Intrinsics,
    Pseudo,
    table_spec,
)
from wsgate.offline.spec import (
    DEFAULT_ROUTE_SELECTION,
    SERVERLESS_MEMORY_MB,
    SERVERLESS_TIMEOUT_S,
    AppSpec,
    AuthorizerSpec,
    FunctionSpec,
    RouteSpec,
    StreamSpec,
    TableSpec,
    is_python_runtime,
    layer_folder,
    stream_spec,
)
from wsgate.offline.variables import VariableResolver


def _logical_function_id(key: str) -> str:
    """The logical id the Serverless Framework gives a function's AWS::Lambda::Function."""
    return _normalized(key) + "LambdaFunction"


def _logical_layer_id(name: str) -> str:
    """The logical id of a layer under `layers` (its AWS::Lambda::LayerVersion)."""
    return _normalized(name) + "LambdaLayer"


def _normalized(name: str) -> str:
    """A name as the Serverless Framework puts it in a logical id."""
    normalized = name[:1].upper() + name[1:]
    return normalized.replace("-", "Dash").replace("_", "Underscore")


#: `#{...}` of the serverless-pseudo-parameters plugin.
_PSEUDO_PLUGIN = re.compile(r"#\{([^}]+)\}")
#: The logical ids the Serverless Framework gives the WebSocket API and its stage.
WEBSOCKETS_API = "WebsocketsApi"
WEBSOCKETS_STAGE = "WebsocketsDeploymentStage"


def serverless_spec(
    doc: Any,
    path: Path,
    *,
    stage: str | None = None,
    environ: Mapping[str, str] | None = None,
    api_id: str | None = None,
    params: Mapping[str, str] | None = None,
) -> AppSpec:
    """The WebSocket functions of a parsed serverless.yml; `api_id` is what `{Ref:
    WebsocketsApi}` evaluates to (the local API's id)."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{path.name}: expected a mapping at the top level")
    r = VariableResolver(doc, path, stage, os.environ if environ is None else environ, params)
    service = r.get("service")
    if isinstance(service, dict):
        service = service.get("name")
    if not isinstance(service, str) or not service:
        raise r.error("service", "a service name is required")
    stage_name = r.stage
    region = r.region

    synthetic: dict[str, dict[str, Any]] = {
        WEBSOCKETS_API: {"Type": API, "Properties": {"ProtocolType": "WEBSOCKET"}},
        WEBSOCKETS_STAGE: {"Type": API_STAGE, "Properties": {"StageName": stage_name}},
    }
    keys = r.keys("functions")
    for key in keys:
        name = r.get(f"functions.{key}.name") or f"{service}-{stage_name}-{key}"
        synthetic[_logical_function_id(key)] = {
            "Type": LAMBDA_FUNCTION,
            "Properties": {"FunctionName": name},
        }

    def resource(name: str) -> Mapping[str, Any] | None:
        if name in synthetic:
            return synthetic[name]
        node = r.walk(f"resources.Resources.{name}")
        if not isinstance(node, dict):
            return None
        return node if intrinsics.included(node, f"resources.Resources.{name}") else None

    def variables(value: Any, where: str) -> Any:
        resolved = r.shallow(value, where)
        if isinstance(resolved, str) and "#{" in resolved:
            # serverless-pseudo-parameters: `#{X}` is `${X}` in an Fn::Sub.
            text = _PSEUDO_PLUGIN.sub(r"${\1}", resolved.replace("${", "${!"))
            return intrinsics.evaluate({"Fn::Sub": text}, where)
        return resolved

    conditions = r.get("resources.Conditions", {})
    intrinsics = Intrinsics(
        source=path.name,
        resource=resource,
        pseudo=Pseudo(region=region, stack_name=f"{service}-{stage_name}"),
        variables=variables,
        api_id=api_id,
        conditions=conditions if isinstance(conditions, dict) else {},
    )
    intrinsics.stage = stage_name

    provider_env = _environment(r, intrinsics, "provider.environment")
    routes_of = {key: _websocket_routes(r, key) for key in keys}
    authorizer = _authorizer(r, keys, synthetic, routes_of)
    functions: list[FunctionSpec] = []
    not_run: list[tuple[str, str]] = []
    owners: dict[str, str] = {}
    for key in keys:
        routes = tuple(route for route, _ in routes_of[key])
        streams = _streams(r, intrinsics, key)
        if not routes and not streams and (authorizer is None or authorizer.function != key):
            kinds = sorted(
                {
                    str(next(iter(e)))
                    for e in r.items(f"functions.{key}.events")
                    if isinstance(e, dict) and e
                }
            )
            not_run.append((key, f"{', '.join(kinds)} events" if kinds else "no events"))
            continue
        for route in routes:
            if route.key in owners:
                raise r.error(
                    f"functions.{key}.events",
                    f"route {route.key!r} is already handled by function {owners[route.key]!r}",
                )
            owners[route.key] = key
        functions.append(
            _function(
                r, intrinsics, key, routes, provider_env, f"{service}-{stage_name}-{key}", streams
            )
        )
    if not owners:
        raise ConfigError(f"{path.name}: no function has a websocket event")

    tables: list[TableSpec] = []
    for name in r.keys("resources.Resources"):
        node = resource(name)
        if (
            node is not None
            and r.shallow(node.get("Type"), f"resources.Resources.{name}.Type") == DYNAMODB_TABLE
        ):
            tables.append(table_spec(name, node, intrinsics))

    return AppSpec(
        name=str(r.get("provider.websocketsApiName") or f"{stage_name}-{service}-websockets"),
        source=path,
        route_selection=str(
            r.get("provider.websocketsApiRouteSelectionExpression", DEFAULT_ROUTE_SELECTION)
        ),
        stage=stage_name,
        region=region,
        functions=tuple(functions),
        tables=tuple(tables),
        authorizer=authorizer,
        not_run=tuple(not_run),
    )


#: Serverless's identity source for a websocket authorizer that names none.
DEFAULT_IDENTITY_SOURCE = "route.request.header.Auth"


def _authorizer(
    r: VariableResolver,
    keys: list[str],
    synthetic: Mapping[str, Mapping[str, Any]],
    routes_of: Mapping[str, tuple[tuple[RouteSpec, Any], ...]],
) -> AuthorizerSpec | None:
    """The `$connect` event's `authorizer`, resolved to a function of this service."""
    found: AuthorizerSpec | None = None
    for key in keys:
        for index, (route, config) in enumerate(routes_of[key]):
            if not config:
                continue
            at = f"functions.{key}.events[{index}].websocket.authorizer"
            if route.key != CONNECT:
                raise r.error(at, f"only $connect can have an authorizer, not {route.key!r}")
            if isinstance(config, str):
                config = {"arn": config} if config.startswith("arn:") else {"name": config}
            if not isinstance(config, dict):
                raise r.error(at, "expected a function name or {name|arn, identitySource}")
            sources = config.get("identitySource", [DEFAULT_IDENTITY_SOURCE])
            sources = [sources] if isinstance(sources, str) else sources
            if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
                raise r.error(f"{at}.identitySource", "expected a list of identity sources")
            found = AuthorizerSpec(
                _authorizer_function(r, at, config, keys, synthetic), tuple(sources)
            )
    return found


def _authorizer_function(
    r: VariableResolver,
    at: str,
    config: Mapping[str, Any],
    keys: list[str],
    synthetic: Mapping[str, Mapping[str, Any]],
) -> str:
    name, arn = config.get("name"), config.get("arn")
    if isinstance(name, str):
        if name not in keys:
            raise r.error(f"{at}.name", f"no function {name!r} in this service")
        return name
    if not isinstance(arn, str):
        raise r.error(at, "an authorizer needs 'name' (a function of this service) or 'arn'")
    deployed_name = arn.rpartition(":function:")[2].split(":")[0]
    for key in keys:
        function_name = synthetic[_logical_function_id(key)]["Properties"]["FunctionName"]
        if deployed_name in (key, function_name):
            return key
    raise r.error(
        f"{at}.arn",
        f"{arn!r} is not a function of this service: wsgate runs the service's own "
        "functions only (define the authorizer under functions)",
    )


def _websocket_routes(r: VariableResolver, key: str) -> tuple[tuple[RouteSpec, Any], ...]:
    """The function's websocket routes, each with its `authorizer` setting (or None)."""
    where = f"functions.{key}.events"
    routes: list[tuple[RouteSpec, Any]] = []
    for index, event in enumerate(r.items(where)):
        if not isinstance(event, dict) or "websocket" not in event:
            continue
        config = r.get(f"{where}.{index}.websocket")
        at = f"{where}[{index}].websocket"
        if isinstance(config, str):
            routes.append((RouteSpec(config), None))
            continue
        if not isinstance(config, dict) or not isinstance(config.get("route"), str):
            raise r.error(at, "expected a route key or a mapping with 'route'")
        route = config["route"]
        two_way = bool(config.get("routeResponseSelectionExpression"))
        spec = RouteSpec(route, two_way and route not in (CONNECT, DISCONNECT))
        routes.append((spec, config.get("authorizer")))
    return tuple(routes)


def _environment(r: VariableResolver, intrinsics: Intrinsics, path: str) -> dict[str, str]:
    raw = r.get(path, {})
    if not isinstance(raw, dict):
        raise r.error(path, f"environment must be a mapping, got {type(raw).__name__}")
    return intrinsics.environment(raw, path)


def _number(r: VariableResolver, path: str, fallback_path: str, default: float) -> float:
    value = r.get(path)
    where = path
    if value is None:
        value, where = r.get(fallback_path), fallback_path
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise r.error(where, f"expected a number, got {value!r}") from None
    if number <= 0:
        raise r.error(where, f"must be positive, got {value!r}")
    return int(number) if number.is_integer() else number


def _function(
    r: VariableResolver,
    intrinsics: Intrinsics,
    key: str,
    routes: tuple[RouteSpec, ...],
    provider_env: Mapping[str, str],
    default_name: str,
    streams: tuple[StreamSpec, ...] = (),
) -> FunctionSpec:
    base = f"functions.{key}"
    runtime = r.get(f"{base}.runtime") or r.get("provider.runtime")
    if runtime is None:
        raise r.error(
            base, f"function {key!r} has no runtime: set provider.runtime (e.g. python3.12)"
        )
    if not is_python_runtime(runtime):
        raise r.error(
            f"{base}.runtime",
            f"function {key!r} uses runtime {runtime!r}; wsgate runs Python functions "
            "(python3.x) only",
        )
    handler = r.get(f"{base}.handler")
    if not isinstance(handler, str) or "." not in handler:
        raise r.error(f"{base}.handler", f"function {key!r} needs a handler 'module.function'")
    reserved = r.get(f"{base}.reservedConcurrency")
    layers, remote_layers = _layers(r, base)
    return FunctionSpec(
        name=key,
        function_name=str(r.get(f"{base}.name") or default_name),
        handler=handler,
        code_dir=r.path.parent.resolve(),
        runtime=str(runtime),
        environment={**provider_env, **_environment(r, intrinsics, f"{base}.environment")},
        memory_size=int(
            _number(r, f"{base}.memorySize", "provider.memorySize", SERVERLESS_MEMORY_MB)
        ),
        timeout=_number(r, f"{base}.timeout", "provider.timeout", SERVERLESS_TIMEOUT_S),
        routes=routes,
        reserved_concurrency=int(reserved) if reserved else None,
        layers=layers,
        remote_layers=remote_layers,
        streams=streams,
    )


def _streams(r: VariableResolver, intrinsics: Intrinsics, key: str) -> tuple[StreamSpec, ...]:
    """The function's `stream` events of type dynamodb (`arn` its table's StreamArn)."""
    where = f"functions.{key}.events"
    streams: list[StreamSpec] = []
    for index, event in enumerate(r.items(where)):
        if not isinstance(event, dict) or "stream" not in event:
            continue
        at = f"{where}[{index}].stream"
        config = r.get(f"{where}.{index}.stream")
        config = {"arn": config} if not isinstance(config, dict) else config
        arn = intrinsics.evaluate(config.get("arn"), f"{at}.arn")
        kind = config.get("type") or ("dynamodb" if ":dynamodb:" in str(arn) else "kinesis")
        if kind != "dynamodb" or config.get("enabled") in (False, "false"):
            continue
        try:
            streams.append(
                stream_spec(
                    arn,
                    config.get("batchSize"),
                    config.get("startingPosition"),
                    config.get("maximumRetryAttempts"),
                )
            )
        except ValueError as exc:
            raise r.error(at, str(exc)) from None
    return tuple(streams)


def _layers(r: VariableResolver, base: str) -> tuple[tuple[Path, ...], tuple[str, ...]]:
    """The function's `layers` (else provider.layers): the folders of the service's own
    (`{Ref: <Name>LambdaLayer}` to one under the top-level `layers`, with its `path`), and
    the ARNs of the others (nothing local to run)."""
    where = f"{base}.layers"
    items = r.get(where)
    if items is None:
        where = "provider.layers"
        items = r.get(where, [])
    if not isinstance(items, list):
        raise r.error(where, "expected a list of layer ARNs or {Ref: <Name>LambdaLayer}")
    local = {_logical_layer_id(name): name for name in r.keys("layers")}
    folders: list[Path] = []
    remote: list[str] = []
    for index, item in enumerate(items):
        ref = item.get("Ref") if isinstance(item, dict) and len(item) == 1 else None
        if ref not in local:
            if not isinstance(item, str):
                raise r.error(
                    f"{where}[{index}]",
                    f"expected a layer ARN or a Ref to a layer of this service, got {item!r}",
                )
            remote.append(item)
            continue
        name = local[ref]
        content = r.get(f"layers.{name}.path")
        if not isinstance(content, str):
            raise r.error(f"layers.{name}.path", f"layer {name} needs a path (its folder)")
        folder = (r.path.parent / content).resolve()
        if not folder.is_dir():
            raise r.error(f"layers.{name}.path", f"layer {name}: no folder {folder}")
        folders.append(layer_folder(folder))
    return tuple(folders), tuple(remote)
