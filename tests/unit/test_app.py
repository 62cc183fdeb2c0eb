"""The App route table, handler import, Route and Event."""

from __future__ import annotations

import copy
import functools
import pickle
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wsgate import App, ConfigError, Event, Route
from wsgate.core.events import ConnectionContext, disconnect_event, message_event
from wsgate.core.routing import NOT_JSON, parse_body

HANDLERS_SOURCE = """
def connect(event, context):
    return {"statusCode": 200}

async def default(event, context):
    return "async"

NOT_CALLABLE = 42
"""


def sync_handler(event: Any, context: Any) -> None:
    return None


async def async_handler(event: Any, context: Any) -> None:
    return None


@pytest.fixture
def handler_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh importable module of handlers, removed from sys.modules afterwards."""
    name = f"wsgate_test_handlers_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(HANDLERS_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_decorators_register_and_return_the_function() -> None:
    """Each decorator registers its route and returns the function unchanged."""
    app = App()

    def connect(event: Any, context: Any) -> None: ...
    def disconnect(event: Any, context: Any) -> None: ...
    def default(event: Any, context: Any) -> None: ...
    def join(event: Any, context: Any) -> None: ...

    assert app.on_connect(connect) is connect
    assert app.on_disconnect(disconnect) is disconnect
    assert app.default(default) is default
    assert app.route("join")(join) is join
    assert {key: route.handler for key, route in app.routes.items()} == {
        "$connect": connect,
        "$disconnect": disconnect,
        "$default": default,
        "join": join,
    }
    assert app.routes["join"].key == "join"
    assert app.routes["join"].return_response is False


def test_route_with_return_response() -> None:
    """`return_response=True` marks a two-way route."""
    app = App()

    @app.route("whoami", return_response=True)
    def whoami(event: Any, context: Any) -> str:
        return "me"

    assert app.routes["whoami"].return_response is True
    assert whoami(None, None) == "me"


def test_default_route_may_return_response() -> None:
    """`$default` may be a two-way route."""
    app = App()
    route = app.add_route("$default", sync_handler, return_response=True)
    assert route.return_response is True
    assert app.routes["$default"] is route


def test_duplicate_route_raises() -> None:
    """Registering a second handler for a route key raises ConfigError naming the first."""
    app = App()
    app.route("join")(sync_handler)
    with pytest.raises(ConfigError, match=r"'join' is already handled by sync_handler"):
        app.route("join")(async_handler)
    assert app.routes["join"].handler is sync_handler


def test_duplicate_predefined_route_raises() -> None:
    """A second $connect handler raises ConfigError."""
    app = App()
    app.on_connect(sync_handler)
    with pytest.raises(ConfigError, match="already handled"):
        app.on_connect(async_handler)


def test_reserved_prefix_raises() -> None:
    """A custom route key starting with `$` raises ConfigError."""
    app = App()
    with pytest.raises(ConfigError, match="reserved"):
        app.route("$foo")(sync_handler)
    assert app.routes == {}


def test_empty_route_key_raises() -> None:
    """An empty route key raises ConfigError."""
    with pytest.raises(ConfigError):
        App().route("")(sync_handler)


@pytest.mark.parametrize("key", ["$connect", "$disconnect"])
def test_return_response_on_lifecycle_route_raises(key: str) -> None:
    """`$connect` and `$disconnect` cannot be two-way routes."""
    app = App()
    with pytest.raises(ConfigError, match="cannot return a response"):
        app.add_route(key, sync_handler, return_response=True)
    with pytest.raises(ConfigError, match="cannot return a response"):
        app.route(key, return_response=True)(sync_handler)
    assert app.routes == {}


def test_non_callable_handler_raises() -> None:
    """A handler that is not callable raises ConfigError."""
    with pytest.raises(ConfigError, match="not callable"):
        App().add_route("join", 42)  # type: ignore[arg-type]


def test_routes_mapping_with_callables() -> None:
    """The `routes` argument fills the same table as the decorators."""
    app = App(routes={"$default": sync_handler, "join": async_handler})
    assert app.routes["$default"].handler is sync_handler
    assert app.routes["join"].handler is async_handler


def test_routes_as_import_strings(handler_module: str) -> None:
    """Routes given as 'module.function' strings are imported."""
    app = App(
        routes={"$connect": f"{handler_module}.connect", "$default": f"{handler_module}.default"}
    )
    module = sys.modules[handler_module]
    assert app.routes["$connect"].handler is module.connect
    assert app.routes["$default"].handler is module.default
    assert app.routes["$connect"].is_async is False
    assert app.routes["$default"].is_async is True


def test_route_string_with_slashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Lambda-style 'package/module.function' string is imported like package.module."""
    package = f"wsgate_test_pkg_{uuid.uuid4().hex}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "handlers.py").write_text(HANDLERS_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        app = App(routes={"$connect": f"{package}/handlers.connect"})
        assert app.routes["$connect"].handler is sys.modules[f"{package}.handlers"].connect
    finally:
        sys.modules.pop(f"{package}.handlers", None)
        sys.modules.pop(package, None)


def test_route_string_missing_module() -> None:
    """An unknown module gives ConfigError naming the module and the handler string."""
    name = f"wsgate_no_such_module_{uuid.uuid4().hex}"
    with pytest.raises(ConfigError, match=f"unable to import module '{name}'") as info:
        App(routes={"$default": f"{name}.handler"})
    assert f"{name}.handler" in str(info.value)


def test_route_string_module_with_broken_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module whose own import fails gives ConfigError carrying the underlying error."""
    name = f"wsgate_test_broken_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("import wsgate_surely_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(ConfigError, match=name) as info:
            App(routes={"$default": f"{name}.handler"})
        assert "wsgate_surely_missing_dependency" in str(info.value)
    finally:
        sys.modules.pop(name, None)


def test_route_string_missing_function(handler_module: str) -> None:
    """A missing function gives ConfigError naming the function and the module."""
    with pytest.raises(ConfigError, match=f"handler 'nope' missing on module '{handler_module}'"):
        App(routes={"$default": f"{handler_module}.nope"})


def test_route_string_not_callable(handler_module: str) -> None:
    """An attribute that is not callable gives ConfigError naming it."""
    with pytest.raises(ConfigError, match=f"{handler_module}.NOT_CALLABLE.*not callable"):
        App(routes={"$default": f"{handler_module}.NOT_CALLABLE"})


@pytest.mark.parametrize("path", ["handler", ".handler", "module."])
def test_route_string_malformed(path: str) -> None:
    """A string that is not 'module.function' gives ConfigError explaining the format."""
    with pytest.raises(ConfigError, match="expected 'module.function'"):
        App(routes={"$default": path})


def test_is_async_detection() -> None:
    """Route.is_async is True for coroutine functions and False for plain ones."""
    app = App()
    app.route("a")(async_handler)
    app.route("s")(sync_handler)
    app.route("p")(functools.partial(async_handler))
    assert app.routes["a"].is_async is True
    assert app.routes["s"].is_async is False
    assert app.routes["p"].is_async is True


def test_is_async_for_async_callable_object() -> None:
    """An object whose __call__ is a coroutine function is an async handler."""

    class Handler:
        async def __call__(self, event: Any, context: Any) -> None:
            return None

    app = App()
    app.route("obj")(Handler())
    assert app.routes["obj"].is_async is True


def test_route_name() -> None:
    """Route.name is the handler's qualified name."""
    route = Route("k", sync_handler, is_async=False)
    assert route.name == "sync_handler"
    assert App().add_route("x", async_handler).name == "async_handler"


def test_app_options() -> None:
    """App keeps its route selection expression, name and binary mode."""
    app = App(route_selection="$request.body.type", name="chat", binary="base64")
    assert app.route_selection == "$request.body.type"
    assert app.selector.route_key({"type": "hello"}) == "hello"
    assert app.name == "chat"
    assert app.binary == "base64"
    assert App().binary == "reject"
    assert App().route_selection == "$request.body.action"


@pytest.mark.parametrize("binary", ["text", "", None, "REJECT"])
def test_bad_binary_option(binary: Any) -> None:
    """`binary` must be 'reject' or 'base64'."""
    with pytest.raises(ConfigError, match="binary must be 'reject' or 'base64'"):
        App(binary=binary)


def test_bad_route_selection_raises() -> None:
    """An unsupported route selection expression fails when the App is created."""
    with pytest.raises(ConfigError, match=r"\$request\.header\.x"):
        App(route_selection="$request.header.x")


INFO = ConnectionContext(
    connection_id="R1kmxc2VNjMCFIA=",
    connected_at=1,
    source_ip="127.0.0.1",
    user_agent=None,
    domain_name="localhost",
    stage="dev",
    api_id="abcdefghij",
)


def make_message_event(body: str, parsed: Any = None) -> Event:
    data = message_event(
        INFO,
        route_key="join",
        body=body,
        is_base64=False,
        stage_variables=None,
        message_id="m",
        request_id="r",
        now_ms=1000,
        body_json=NOT_JSON if parsed is None else parsed,
    )
    return data


def test_event_is_a_dict_with_shortcuts() -> None:
    """Event is the plain event dict plus connection_id, route_key and body shortcuts."""
    event = make_message_event('{"action": "join"}')
    assert isinstance(event, dict)
    assert event["body"] == '{"action": "join"}'
    assert event.connection_id == "R1kmxc2VNjMCFIA="
    assert event.route_key == "join"
    assert event.body == '{"action": "join"}'


def test_event_json_parsed_lazily_and_cached() -> None:
    """`json` parses the body on first use and returns the same object afterwards."""
    event = make_message_event('{"action": "join", "n": [1]}')
    first = event.json
    assert first == {"action": "join", "n": [1]}
    assert event.json is first


def test_event_json_not_parsed_until_used() -> None:
    """A non-JSON body only raises when `json` is read."""
    event = make_message_event("not json")
    assert event.body == "not json"
    with pytest.raises(ValueError):
        _ = event.json


def test_event_json_uses_the_gateway_parse() -> None:
    """A body parsed by the gateway is handed over as is, not parsed again."""
    parsed = {"already": "parsed"}
    event = make_message_event('{"action": "join"}', parsed)
    assert event.json is parsed


@pytest.mark.parametrize(
    "duplicate", [copy.copy, copy.deepcopy, lambda e: pickle.loads(pickle.dumps(e))]
)
def test_event_copies_keep_what_json_knows(duplicate: Callable[[Event], Event]) -> None:
    """A copied or pickled event (a test fixture, a queue) answers `json` as the original."""
    not_json = make_message_event("not json", NOT_JSON)
    with pytest.raises(ValueError):
        _ = duplicate(not_json).json
    parsed = make_message_event('{"action": "join"}', parse_body('{"action": "join"}'))
    assert duplicate(parsed).json == {"action": "join"}
    assert duplicate(parsed) == parsed


def test_event_parsed_wraps_any_event_dict() -> None:
    """`Event.parsed` is how a front end hands over the body it already parsed."""
    raw = {"requestContext": {"routeKey": "$default", "connectionId": "c"}, "body": "[1]"}
    event = Event.parsed(raw, [1])
    assert event == raw and event is not raw and event.json == [1]
    assert Event(raw).json == [1]  # any event dict works; the body is parsed on first use


def test_event_json_on_disconnect_raises() -> None:
    """`json` on a $disconnect event raises ValueError: it has no body."""
    event = Event(
        disconnect_event(
            INFO, status_code=1000, reason="", stage_variables=None, request_id="r", now_ms=1
        )
    )
    assert event.body is None
    assert event.route_key == "$disconnect"
    with pytest.raises(ValueError, match=r"\$disconnect events have no body"):
        _ = event.json


def test_event_json_null_body() -> None:
    """A JSON `null` body parses to None (not an error)."""
    assert make_message_event("null").json is None
