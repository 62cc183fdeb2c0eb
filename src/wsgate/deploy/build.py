"""App -> deployment model: what `wsgate template` and `wsgate deploy` will declare.

One Function per route, in a fixed order (`$connect`, `$disconnect`, `$default`, then
custom keys sorted), each with the permissions `deploy.permissions` found its handler
needs and a logical id that depends on its route key alone; and one more for the
`$connect` authorizer when the app has one (`ConnectAuthorizer`). `deploy.template` turns the
model into CloudFormation.
"""

from __future__ import annotations

import hashlib
import re

from wsgate.app import App, Route
from wsgate.core.routing import CONNECT, DEFAULT, DISCONNECT
from wsgate.deploy.model import Analysis, Api, Authorizer, Function
from wsgate.deploy.permissions import FULL_ANALYSIS, analyse, grant_for
from wsgate.exceptions import ConfigError

_PREDEFINED_IDS = {CONNECT: "Connect", DISCONNECT: "Disconnect", DEFAULT: "Default"}
#: The authorizer's resources: `ConnectAuthorizer` (the API Gateway authorizer),
#: `ConnectAuthorizerFunction`, ...; no route key maps to it (custom keys start with `On`).
AUTHORIZER_ID = "ConnectAuthorizer"
_ORDER = {CONNECT: 0, DISCONNECT: 1, DEFAULT: 2}
_STAGE_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")


def build(
    app: App,
    *,
    app_target: str,
    stage: str = "dev",
    name: str | None = None,
    full_permissions: bool = False,
) -> Api:
    """The deployment model of `app`: one Function per route, permissions analysed.

    `app_target` is WSGATE_APP, the TARGET relative to the code zip's root.
    """
    if not app.routes:
        raise ConfigError(f"{app.name} has no routes: there is nothing to deploy")
    if not _STAGE_NAME.fullmatch(stage):
        raise ConfigError(
            f"bad stage name {stage!r}: 1 to 128 letters, digits, '-' or '_' (API Gateway's rule)"
        )
    api_name = name or app.name
    if not 1 <= len(api_name) <= 128:
        raise ConfigError(f"bad API name {api_name!r}: 1 to 128 characters")
    warnings: list[str] = []
    if app.binary == "base64":
        warnings.append(
            "App(binary='base64') only applies locally: API Gateway closes a connection "
            "that sends a binary frame with 1003"
        )
    functions = []
    authorizer = None
    if app.connect_authorizer is not None:
        guard = app.connect_authorizer.route
        analysis = _analysis(guard, full_permissions, warnings)
        authorizer = Authorizer(
            function=_function(guard, analysis, key=CONNECT, resource_id=AUTHORIZER_ID),
            identity_sources=tuple(str(s) for s in app.connect_authorizer.identity_sources),
        )
    # $connect and $disconnect always get a function, handler or not: the adapter writes
    # and removes the connection's store item there, which broadcast and publish read.
    for key in sorted({*app.routes, CONNECT, DISCONNECT}, key=_route_order):
        route = app.routes.get(key)
        if route is None:
            functions.append(_store_only_function(key))
            continue
        functions.append(_function(route, _analysis(route, full_permissions, warnings)))
    ids = [function.logical_id for function in functions]
    if len(set(ids)) != len(ids):  # pragma: no cover - needs a sha1 collision
        raise ConfigError(f"route keys map to clashing resource names: {ids}")
    return Api(
        name=api_name,
        route_selection=app.route_selection,
        stage=stage,
        app_target=app_target,
        functions=tuple(functions),
        warnings=tuple(warnings),
        authorizer=authorizer,
        connect_authorization=app.authorization,
    )


def _analysis(route: Route, full_permissions: bool, warnings: list[str]) -> Analysis:
    analysis = FULL_ANALYSIS if full_permissions else analyse(route.handler)
    for problem in analysis.warnings:
        warnings.append(
            f"route {route.key!r}: {problem}; granting it every wsgate.connections permission"
        )
    return analysis


def _route_order(key: str) -> tuple[int, str]:
    return (_ORDER.get(key, len(_ORDER)), key)


def _store_only_function(key: str) -> Function:
    """$connect / $disconnect of an app without that handler: the adapter's store work."""
    return Function(
        route_key=key,
        logical_id=logical_id(key),
        handler="(no handler: the adapter keeps the connections table current)",
        return_response=False,
        analysis=Analysis(ops=frozenset(), complete=True),
        grant=grant_for(key, ()),
    )


def _function(
    route: Route, analysis: Analysis, *, key: str | None = None, resource_id: str | None = None
) -> Function:
    """A route's function, or (given the route `key` it guards) the authorizer's."""
    handler = route.handler
    module = getattr(handler, "__module__", None) or "?"
    return Function(
        route_key=key or route.key,
        logical_id=resource_id or logical_id(route.key),
        handler=f"{module}.{route.name}",
        return_response=route.return_response,
        analysis=analysis,
        # the authorizer's key names no route: the adapter writes nothing for it
        grant=grant_for(route.key, analysis.ops),
        authorizes=key is not None,
    )


def logical_id(route_key: str) -> str:
    """The stable CloudFormation name prefix for a route's resources.

    `$connect` -> `Connect`; custom keys -> `On` + CamelCase (`sendMessage` ->
    `OnSendMessage`). Keys that do not map back unambiguously (other characters, an
    upper-case first letter, very long) get 8 hex digits of their hash, so two keys never
    share a name and a key's name never depends on the other routes.
    """
    if route_key in _PREDEFINED_IDS:
        return _PREDEFINED_IDS[route_key]
    words = re.findall(r"[A-Za-z0-9]+", route_key)
    camel = "On" + "".join(word[:1].upper() + word[1:] for word in words)
    if re.fullmatch(r"[a-z0-9][A-Za-z0-9]{0,150}", route_key):
        return camel
    return camel[:150] + hashlib.sha1(route_key.encode()).hexdigest()[:8]
