"""The app: a route table of handlers, written the way API Gateway + Lambda apps are.

Two ways to fill the table, one table:

    app = App(route_selection="$request.body.type")

    @app.route("subscribe")
    async def subscribe(event, context): ...

    app = App(routes={"$connect": "handlers.connect", "$default": "handlers.default"})

Every handler is `handler(event, context)`, sync or async, with an API-Gateway-shaped
`event` (a dict, so Lambda code runs unchanged) and a Lambda-like `context`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

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
    """

    def __init__(
        self,
        *,
        route_selection: str = "$request.body.action",
        routes: Mapping[str, Handler | str] | None = None,
        binary: BinaryMode = "reject",
        name: str = "wsgate-app",
    ) -> None:
        if binary not in ("reject", "base64"):
            raise ConfigError(f"binary must be 'reject' or 'base64', got {binary!r}")
        self.selector = RouteSelector(route_selection)
        self.binary: BinaryMode = binary
        self.name = name
        self.routes: dict[str, Route] = {}
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
        resolved = import_handler(handler) if isinstance(handler, str) else handler
        if not callable(resolved):
            raise ConfigError(f"handler for {key!r} is not callable: {resolved!r}")
        # An object whose __call__ is `async def` is an async handler too.
        call = type(resolved).__call__ if not inspect.isfunction(resolved) else None
        is_async = inspect.iscoroutinefunction(resolved) or inspect.iscoroutinefunction(call)
        route = Route(key, resolved, is_async, return_response)
        self.routes[key] = route
        return route

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
