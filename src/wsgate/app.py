"""The app: a route table of handlers, written the way API Gateway + Lambda apps are.

Two ways to fill the table, one table:

    app = App(route_selection="$request.body.type")

    @app.route("subscribe")
    async def subscribe(event, context): ...

    app = App(routes={"$connect": "handlers.connect", "$default": "handlers.default"})

Every handler is `handler(event, context)`, sync or async, with an API-Gateway-shaped
`event` (a dict, so Lambda code runs unchanged) and a Lambda-like `context`. So is the
optional Lambda authorizer of `$connect` (`@app.authorizer(identity_sources=[...])`).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from wsgate.core.authorizer import IdentitySource
from wsgate.core.routing import (
    CONNECT,
    DEFAULT,
    DISCONNECT,
    RouteSelector,
    validate_route_key,
)
from wsgate.exceptions import ConfigError

Handler = Callable[[Any, Any], Any] | Callable[[Any, Any], Awaitable[Any]]
H = TypeVar("H", bound=Handler)
BinaryMode = Literal["reject", "base64"]
Authorization = Literal["NONE", "AWS_IAM"]


@dataclass(frozen=True, slots=True)
class Route:
    """One entry of the route table."""

    key: str
    handler: Handler
    is_async: bool
    #: Send the handler's result back to the caller (API Gateway's two-way route).
    return_response: bool = False

    @property
    def name(self) -> str:
        return getattr(self.handler, "__qualname__", repr(self.handler))


@dataclass(frozen=True, slots=True)
class Authorizer:
    """The Lambda REQUEST authorizer of `$connect` (docs/compatibility.md §7).

    `route.handler` gets the `REQUEST` event and returns an IAM policy (`principalId`,
    `policyDocument`, optional `context`) or, when `simple`, `True`/`False` or
    `{"isAuthorized": bool, "context": {...}}`.
    """

    route: Route
    identity_sources: tuple[IdentitySource, ...]
    simple: bool = False


#: The key an authorizer's invocations carry in logs ("$connect authorizer ... failed").
AUTHORIZER_KEY = f"{CONNECT} authorizer"


def _route(key: str, handler: Handler | str, return_response: bool = False) -> Route:
    resolved = import_handler(handler) if isinstance(handler, str) else handler
    if not callable(resolved):
        raise ConfigError(f"handler for {key!r} is not callable: {resolved!r}")
    # An object whose __call__ is `async def` is an async handler too.
    call = type(resolved).__call__ if not inspect.isfunction(resolved) else None
    is_async = inspect.iscoroutinefunction(resolved) or inspect.iscoroutinefunction(call)
    return Route(key, resolved, is_async, return_response)


def import_handler(path: str) -> Handler:
    """Resolve `module.function` the way the Lambda runtime does (split on the last dot)."""
    module_name, dot, attr = path.replace("/", ".").rpartition(".")
    if not dot or not module_name or not attr:
        raise ConfigError(f"bad handler {path!r}: expected 'module.function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"unable to import module {module_name!r} for handler {path!r}: {exc}"
        ) from exc
    try:
        handler = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"handler {attr!r} missing on module {module_name!r}") from None
    if not callable(handler):
        raise ConfigError(f"handler {path!r} is not callable")
    return handler  # type: ignore[no-any-return]


class App:
    """A WebSocket API: a route selection expression and a table of routes.

    Args:
        route_selection: API Gateway's route selection expression.
        routes: initial table, route key -> handler or `"module.function"`.
        binary: `"reject"` closes a connection that sends a binary frame with 1003, as
            API Gateway does; `"base64"` accepts it and hands it to `$default` with the
            bytes base64-encoded in `body` and `isBase64Encoded: true`.
        name: shown in logs and used as the Lambda function name locally.
        authorization: `"AWS_IAM"` accepts only clients whose upgrade request is
            SigV4-signed (service `execute-api`) by one of the gateway's access keys, as
            API Gateway's `AWS_IAM` authorization of `$connect` (docs/compatibility.md
            §7.7); `"NONE"` (the default) accepts everyone. A Lambda authorizer
            (`@app.authorizer`) is the other way, and excludes this one.
    """

    def __init__(
        self,
        *,
        route_selection: str = "$request.body.action",
        routes: Mapping[str, Handler | str] | None = None,
        binary: BinaryMode = "reject",
        name: str = "wsgate-app",
        authorization: Authorization = "NONE",
    ) -> None:
        if binary not in ("reject", "base64"):
            raise ConfigError(f"binary must be 'reject' or 'base64', got {binary!r}")
        if authorization not in ("NONE", "AWS_IAM"):
            raise ConfigError(f"authorization must be 'NONE' or 'AWS_IAM', got {authorization!r}")
        self.authorization: Authorization = authorization
        self.selector = RouteSelector(route_selection)
        self.binary: BinaryMode = binary
        self.name = name
        self.routes: dict[str, Route] = {}
        self.connect_authorizer: Authorizer | None = None
        for key, handler in (routes or {}).items():
            self.add_route(key, handler)

    @property
    def route_selection(self) -> str:
        return self.selector.expression

    def add_route(
        self, key: str, handler: Handler | str, *, return_response: bool = False
    ) -> Route:
        """Register `handler` for route `key`; the one registration path behind everything."""
        validate_route_key(key)
        if key in self.routes:
            raise ConfigError(f"route {key!r} is already handled by {self.routes[key].name}")
        if return_response and key in (CONNECT, DISCONNECT):
            raise ConfigError(f"{key} cannot return a response to the client")
        route = _route(key, handler, return_response)
        self.routes[key] = route
        return route

    def add_authorizer(
        self, handler: Handler | str, *, identity_sources: Sequence[str], simple: bool = False
    ) -> Authorizer:
        """Make `handler` the Lambda authorizer of `$connect`; the one registration path.

        `identity_sources`: `route.request.header.NAME`, `route.request.querystring.NAME`,
        `stageVariables.NAME` or `context.NAME`; a client missing any of them gets 401
        without the authorizer running. An empty list runs it for every client.
        """
        if self.connect_authorizer is not None:
            raise ConfigError(
                f"$connect already has the authorizer {self.connect_authorizer.route.name}"
            )
        if self.authorization == "AWS_IAM":
            raise ConfigError("$connect is authorized by AWS_IAM: it cannot have an authorizer too")
        if isinstance(identity_sources, str):
            raise ConfigError("identity_sources must be a list of strings, not one string")
        sources = tuple(IdentitySource.parse(source) for source in identity_sources)
        authorizer = Authorizer(_route(AUTHORIZER_KEY, handler), sources, simple)
        self.connect_authorizer = authorizer
        return authorizer

    def authorizer(
        self, *, identity_sources: Sequence[str], simple: bool = False
    ) -> Callable[[H], H]:
        """Decorator: authorize clients before `$connect`, as API Gateway's Lambda REQUEST
        authorizers do; `simple=True` for handlers that return `True`/`False` or
        `{"isAuthorized": bool, "context": {...}}` instead of an IAM policy."""

        def register(handler: H) -> H:
            self.add_authorizer(handler, identity_sources=identity_sources, simple=simple)
            return handler

        return register

    def route(self, key: str, *, return_response: bool = False) -> Callable[[H], H]:
        """Decorator: handle messages whose route selection evaluates to `key`."""

        def register(handler: H) -> H:
            self.add_route(key, handler, return_response=return_response)
            return handler

        return register

    def on_connect(self, handler: H) -> H:
        """Decorator: handle `$connect`; return a non-2xx `statusCode` to refuse the client."""
        self.add_route(CONNECT, handler)
        return handler

    def on_disconnect(self, handler: H) -> H:
        """Decorator: handle `$disconnect` (best effort, after the socket is closed)."""
        self.add_route(DISCONNECT, handler)
        return handler

    def default(self, handler: H) -> H:
        """Decorator: handle messages no other route takes (`$default`)."""
        self.add_route(DEFAULT, handler)
        return handler
