"""The least-privilege analyser: which wsgate.connections operations a handler uses.

The handlers below are module-level functions of this file, so `inspect.getsource` reads
them as it reads an app's handlers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import wsgate
from wsgate import connections, connections as conns
from wsgate.connection_api import Connections
from wsgate.deploy.model import Grant
from wsgate.deploy.permissions import (
    BASE_GRANT,
    OPERATION_GRANTS,
    OPERATIONS,
    analyse,
    grant_for,
)
from wsgate.importer import load_app

ROOT = Path(__file__).resolve().parents[3]

# -- handlers to analyse ------------------------------------------------------------------


async def direct_call(event: Any, context: Any) -> None:
    await connections.send(event.connection_id, "hi")


def helper_publishes(topic: str) -> None:
    connections.publish(topic, "news")


def calls_helper(event: Any, context: Any) -> None:
    helper_publishes(event.json["topic"])


def shadows_a_global(event: Any, helper_publishes: Any) -> None:
    """A parameter named like a module-level function is not that function."""
    helper_publishes(event)
    connections.unsubscribe(event.connection_id, "t")


def comprehension_shadows(event: Any, context: Any) -> None:
    [helper_publishes for helper_publishes in (1, 2)]


def through_getattr(event: Any, context: Any) -> None:
    operation = event.json["op"]
    getattr(connections, operation)(event.connection_id, "x")


def passes_it_along(event: Any, context: Any) -> None:
    takes_api(connections)


def takes_api(api: Any) -> None:
    api.send("id", "x")


def unknown_operation(event: Any, context: Any) -> None:
    connections.frobnicate("x")  # type: ignore[attr-defined]


def aliases(event: Any, context: Any) -> None:
    conns.disconnect(event.connection_id)
    wsgate.connections.info(event.connection_id)


push = connections.broadcast


def bound_method_alias(event: Any, context: Any) -> None:
    push("everyone")


def imports_inside(event: Any, context: Any) -> None:
    from wsgate import connections as inner

    inner.subscribe(event.connection_id, "t")


def through_the_class(event: Any, context: Any) -> None:
    Connections.publish(connections, "t", "x")  # passes `connections` around: opaque


class Room:
    def shout(self, text: str) -> None:
        connections.broadcast(text)


room = Room()


def uses_an_instance(event: Any, context: Any) -> None:
    room.shout("hello")


def on_a(event: Any) -> None:
    connections.send(event.connection_id, "a")


DISPATCH = {"a": on_a}


def dispatches_by_table(event: Any, context: Any) -> None:
    DISPATCH[event.json["kind"]](event)


def logged(handler: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(handler)
    def wrapper(event: Any, context: Any) -> Any:
        connections.disconnect("audit")
        return handler(event, context)

    return wrapper


@logged
def decorated(event: Any, context: Any) -> None:
    connections.send(event.connection_id, "x")


def make_handler() -> Callable[[Any, Any], None]:
    def closure_handler(event: Any, context: Any) -> None:
        notify(event)

    notify = helper_publishes
    return closure_handler


def uses_the_library(event: Any, context: Any) -> None:
    import json

    json.dumps({"ok": functools.reduce(max, [1, 2])})


class CallableHandler:
    def __call__(self, event: Any, context: Any) -> None:
        connections.send(event.connection_id, "x")


def ops(handler: Callable[..., Any]) -> set[str]:
    analysis = analyse(handler)
    assert analysis.complete, analysis.warnings
    return set(analysis.ops)


# -- what the analyser sees ---------------------------------------------------------------


def test_direct_call() -> None:
    """`await connections.send(...)` is a send."""
    assert ops(direct_call) == {"send"}


def test_follows_module_level_helpers() -> None:
    """Operations in a helper the handler calls belong to the handler."""
    assert ops(calls_helper) == {"publish"}


def test_local_names_hide_globals() -> None:
    """Parameters and comprehension variables shadow module-level functions."""
    assert ops(shadows_a_global) == {"unsubscribe"}
    assert ops(comprehension_shadows) == set()


def test_aliases_imports_and_the_module_path() -> None:
    """`connections as conns`, `wsgate.connections.X`, bound methods, function-level imports."""
    assert ops(aliases) == {"disconnect", "info"}
    assert ops(bound_method_alias) == {"broadcast"}
    assert ops(imports_inside) == {"subscribe"}


def test_follows_instances_tables_decorators_and_closures() -> None:
    """App classes, dispatch tables, a decorator's wrapper and closure cells are read too."""
    assert ops(uses_an_instance) == {"broadcast"}
    assert ops(dispatches_by_table) == {"send"}
    assert ops(decorated) == {"send", "disconnect"}
    assert ops(make_handler()) == {"publish"}
    assert ops(functools.partial(calls_helper)) == {"publish"}


def test_library_code_is_not_read() -> None:
    """Standard-library calls are neither followed nor a reason to give up."""
    assert ops(uses_the_library) == set()


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (through_getattr, "getattr(connections, operation)"),
        (passes_it_along, "takes_api(connections)"),
        (through_the_class, "Connections.publish(connections"),
        (unknown_operation, "wsgate.connections.frobnicate"),
        (CallableHandler(), "is not a plain function"),
    ],
)
def test_opaque_uses_fall_back_to_everything(handler: Any, reason: str) -> None:
    """What the analyser cannot follow grants every operation, with a warning saying why."""
    analysis = analyse(handler)
    assert not analysis.complete
    assert analysis.ops == frozenset(OPERATIONS)
    assert any(reason in warning for warning in analysis.warnings), analysis.warnings


def test_unreadable_source_falls_back_to_everything() -> None:
    """A handler without source (made by exec) gets the full set."""
    namespace: dict[str, Any] = {}
    exec("def handler(event, context):\n    return None\n", namespace)
    analysis = analyse(namespace["handler"])
    assert not analysis.complete
    assert analysis.ops == frozenset(OPERATIONS)
    assert "cannot read the source" in analysis.warnings[0]


EXAMPLE_OPS = {
    "examples/echo.py": {"$default": {"send"}},
    "examples/broadcast.py": {"onMessage": {"broadcast"}, "$default": {"broadcast"}},
    "examples/topics.py": {
        "subscribe": {"subscribe", "send"},
        "unsubscribe": {"unsubscribe", "send"},
        "message": {"publish", "send"},
        "$default": {"send"},
    },
    "examples/direct.py": {"whoAmI": {"send"}, "sendMessage": {"send"}},
    "examples/lambda_chat/app.py": {
        "$connect": set(),
        "$disconnect": set(),
        "onMessage": {"broadcast", "send"},
        "$default": {"send"},
    },
}


@pytest.mark.parametrize("target", sorted(EXAMPLE_OPS))
def test_examples(target: str) -> None:
    """Every example's handlers, helpers included (topics' reply_error, chat's reply_error)."""
    app = load_app(str(ROOT / target))
    found = {key: ops(route.handler) for key, route in app.routes.items()}
    assert found == EXAMPLE_OPS[target]


# -- from operations to actions -----------------------------------------------------------

TABLE_READS = {"dynamodb:DescribeTable", "dynamodb:DescribeTimeToLive"}
GONE = {"dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}


def test_route_kinds() -> None:
    """$connect writes the connection, $disconnect removes it and its subscriptions."""
    assert grant_for("$connect", ()) == Grant(table=frozenset(TABLE_READS | {"dynamodb:PutItem"}))
    assert grant_for("$disconnect", ()) == Grant(
        table=frozenset(TABLE_READS | {"dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}),
        index=frozenset({"dynamodb:Query"}),
    )
    assert grant_for("$default", ()) == BASE_GRANT == Grant(table=frozenset(TABLE_READS))


@pytest.mark.parametrize(
    ("op", "table", "index", "verbs"),
    [
        ("send", GONE, {"dynamodb:Query"}, {"POST"}),
        ("broadcast", GONE, {"dynamodb:Query"}, {"POST"}),
        ("publish", GONE | {"dynamodb:Query"}, {"dynamodb:Query"}, {"POST"}),
        (
            "subscribe",
            {"dynamodb:GetItem", "dynamodb:ConditionCheckItem", "dynamodb:PutItem"},
            set(),
            set(),
        ),
        ("unsubscribe", {"dynamodb:DeleteItem"}, set(), set()),
        ("info", GONE, {"dynamodb:Query"}, {"GET"}),
        ("disconnect", GONE, {"dynamodb:Query"}, {"DELETE"}),
    ],
)
def test_operations(op: str, table: set[str], index: set[str], verbs: set[str]) -> None:
    """Each operation's DynamoDB actions (table / index) and @connections verbs."""
    assert OPERATION_GRANTS[op] == Grant(
        table=frozenset(table), index=frozenset(index), manage=frozenset(verbs)
    )
    assert grant_for("custom", [op]) == BASE_GRANT | OPERATION_GRANTS[op]


def test_nothing_is_granted_twice_or_scanned() -> None:
    """No Scan anywhere (the layout never needs one), and grants only ever add up."""
    everything = grant_for("$disconnect", OPERATIONS) | grant_for("$connect", ())
    assert "dynamodb:Scan" not in everything.table | everything.index
    assert everything.manage == {"POST", "GET", "DELETE"}
    assert everything.index == {"dynamodb:Query"}
