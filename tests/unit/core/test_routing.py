"""Route selection: expressions, stringification, dispatch, route keys.

See docs/compatibility.md §2.
"""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import given, strategies as st

from wsgate.core.routing import (
    NOT_JSON,
    RouteSelector,
    parse_body,
    validate_route_key,
)
from wsgate.exceptions import ConfigError

#: The message of the documented examples in docs/compatibility.md §2.2.
DOC_BODY = {"service": "chat", "action": "join", "data": {"room": "room1234"}}

ALL_ROUTES = {"$connect", "$disconnect", "$default", "join", "leave", "chat/join"}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("$request.body.action", "join"),
        ("${request.body.action}", "join"),
        ("${request.body.service}/${request.body.action}", "chat/join"),
        ("${request.body.action}-${request.body.invalidPath}", "join-"),
        ("action", "action"),
        ("\\$default", "$default"),
    ],
)
def test_documented_examples(expression: str, expected: str) -> None:
    """Every example of the table in docs/compatibility.md §2.2 evaluates as documented."""
    assert RouteSelector(expression).route_key(DOC_BODY) == expected


def test_expression_is_kept() -> None:
    """The selector remembers the expression it was built from."""
    assert RouteSelector("${request.body.service}").expression == "${request.body.service}"


def test_nested_path() -> None:
    """A dotted path walks into nested objects."""
    selector = RouteSelector("$request.body.a.b")
    assert selector.route_key({"a": {"b": "deep"}}) == "deep"
    assert selector.route_key({"a": {"c": "other"}}) == ""
    assert selector.route_key({"a": "not an object"}) == ""


def test_nested_documented_path() -> None:
    """`$request.body.data.room` resolves inside the documented message."""
    assert RouteSelector("$request.body.data.room").route_key(DOC_BODY) == "room1234"


def test_other_top_level_key() -> None:
    """`$request.body.type` selects on the `type` key, ignoring `action`."""
    selector = RouteSelector("$request.body.type")
    assert selector.route_key({"type": "subscribe", "action": "join"}) == "subscribe"
    assert selector.route_key({"action": "join"}) == ""


def test_array_index() -> None:
    """`[n]` steps index into arrays; an index past the end resolves to ''."""
    assert RouteSelector("$request.body.items[1]").route_key({"items": ["a", "b"]}) == "b"
    assert (
        RouteSelector("${request.body.items[1].name}").route_key(
            {"items": [{"name": "x"}, {"name": "y"}]}
        )
        == "y"
    )
    assert RouteSelector("$request.body.items[2]").route_key({"items": ["a", "b"]}) == ""
    assert RouteSelector("$request.body.items[0]").route_key({"items": {"0": "a"}}) == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, "1"),
        (1.5, "1.5"),
        (-3, "-3"),
        (True, "true"),
        (False, "false"),
        (None, ""),
        ("", ""),
        (["a", "b"], "[a, b]"),
        ([1, True], "[1, true]"),
        ([], "[]"),
        ({"k": "v", "n": 1}, '{"k":"v","n":1}'),
    ],
)
def test_stringification(value: Any, expected: str) -> None:
    """Non-string values are stringified: JSON scalars, `[a, b]` arrays, compact objects."""
    assert RouteSelector("$request.body.action").route_key({"action": value}) == expected
    # The general (multi-part) evaluation path stringifies the same way.
    assert RouteSelector("<${request.body.action}>").route_key({"action": value}) == (
        f"<{expected}>"
    )


@pytest.mark.parametrize("body", [42, [1, 2], "x", None, True, 1.5])
def test_non_object_json_body_resolves_to_empty(body: Any) -> None:
    """A JSON body that is not an object leaves every `$request.body.<key>` unresolved."""
    assert RouteSelector("$request.body.action").route_key(body) == ""
    assert RouteSelector("${request.body.action}-x").route_key(body) == "-x"


def test_not_json_resolves_to_empty() -> None:
    """A NOT_JSON body evaluates every variable to '' and keeps static text."""
    assert RouteSelector("$request.body.action").route_key(NOT_JSON) == ""
    assert RouteSelector("${request.body.a}/${request.body.b}").route_key(NOT_JSON) == "/"


def test_whole_body_variable() -> None:
    """`$request.body` alone is the whole parsed body, stringified."""
    assert RouteSelector("$request.body").route_key("join") == "join"
    assert RouteSelector("${request.body}").route_key(7) == "7"


def test_escaped_dollar_before_variable_is_literal() -> None:
    """`\\$` makes the following text static, even when it looks like a variable."""
    selector = RouteSelector("\\$request.body.action")
    assert selector.route_key({"action": "join"}) == "$request.body.action"


def test_select_matching_route() -> None:
    """select() returns the evaluated key when a route with that key exists."""
    selector = RouteSelector("$request.body.action")
    assert selector.select({"action": "join"}, ALL_ROUTES) == "join"


def test_select_composite_route() -> None:
    """select() matches composite expressions exactly, e.g. `chat/join`."""
    selector = RouteSelector("${request.body.service}/${request.body.action}")
    assert selector.select(DOC_BODY, ALL_ROUTES) == "chat/join"


def test_select_is_case_sensitive() -> None:
    """Route-key matching is an exact, case-sensitive comparison."""
    selector = RouteSelector("$request.body.action")
    assert selector.select({"action": "JOIN"}, ALL_ROUTES) == "$default"


def test_select_falls_back_to_default() -> None:
    """An unknown or missing key goes to `$default`."""
    selector = RouteSelector("$request.body.action")
    assert selector.select({"action": "nope"}, ALL_ROUTES) == "$default"
    assert selector.select({}, ALL_ROUTES) == "$default"
    assert selector.select([1, 2], ALL_ROUTES) == "$default"


def test_select_none_without_default() -> None:
    """With no matching route and no `$default`, select() returns None."""
    selector = RouteSelector("$request.body.action")
    routes = {"join"}
    assert selector.select({"action": "nope"}, routes) is None
    assert selector.select({}, routes) is None
    assert selector.select(NOT_JSON, routes) is None


@pytest.mark.parametrize("key", ["$connect", "$disconnect"])
def test_message_never_selects_lifecycle_routes(key: str) -> None:
    """A message evaluating to `$connect`/`$disconnect` is treated as no match."""
    selector = RouteSelector("$request.body.action")
    assert selector.select({"action": key}, ALL_ROUTES) == "$default"
    assert selector.select({"action": key}, {"$connect", "$disconnect"}) is None


def test_message_can_select_default_explicitly() -> None:
    """A message evaluating to `$default` selects `$default` like any route."""
    selector = RouteSelector("$request.body.action")
    assert selector.select({"action": "$default"}, {"$default", "join"}) == "$default"


def test_static_expression_selects_its_route() -> None:
    """A static expression selects the same route for every JSON message."""
    selector = RouteSelector("action")
    assert selector.select({"whatever": 1}, {"action", "$default"}) == "action"


def test_non_json_goes_to_default() -> None:
    """A message that is not JSON goes to `$default`, whatever the expression."""
    body = parse_body("hi there")
    assert body is NOT_JSON
    # Even a static expression naming an existing route does not apply to non-JSON.
    assert RouteSelector("join").select(body, {"join", "$default"}) == "$default"
    assert RouteSelector("$request.body.action").select(body, ALL_ROUTES) == "$default"


def test_parse_body() -> None:
    """parse_body returns the JSON value, or NOT_JSON for invalid JSON."""
    assert parse_body('{"action": "join"}') == {"action": "join"}
    assert parse_body("42") == 42
    assert parse_body("null") is None
    assert parse_body("") is NOT_JSON
    assert parse_body("{bad json") is NOT_JSON


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (' \t{"action": "join"}\r\n', {"action": "join"}),
        ("42 ", 42),
        ('{"a": [1, 2]}\n\t ', {"a": [1, 2]}),
        ("[1] 2", NOT_JSON),
        ("\n[1]", [1]),
        ('{"a": 1} {"a": 2}', NOT_JSON),  # two values are not one message
        ('{"a": 1} x', NOT_JSON),
        ("\u00a042", NOT_JSON),  # only JSON's four whitespace characters, as json.loads
        ("NaN", json.loads("NaN")),
        ("   ", NOT_JSON),
    ],
)
def test_parse_body_accepts_what_json_loads_accepts(text: str, value: object) -> None:
    """Whitespace around the value is JSON's; anything else after it makes the body not JSON."""
    parsed = parse_body(text)
    if value is NOT_JSON:
        assert parsed is NOT_JSON
        with pytest.raises(ValueError):
            json.loads(text)
    elif isinstance(value, float):  # NaN is not equal to itself
        assert isinstance(parsed, float) and parsed != parsed
    else:
        assert parsed == value == json.loads(text)


@pytest.mark.parametrize(
    "expression",
    ["$request.header.x", "$context.routeKey", "${request.querystring.q}", "$stageVariables.a"],
)
def test_unsupported_variable_raises(expression: str) -> None:
    """A variable outside `$request.body` raises ConfigError naming it and the fix."""
    with pytest.raises(ConfigError) as info:
        RouteSelector(expression)
    message = str(info.value)
    assert expression in message
    assert "$request.body" in message


@pytest.mark.parametrize(
    "expression", ["$", "x$", "${request.body.a", "${request.body.a[x]}", "${request.body.}"]
)
def test_unparsable_expression_raises(expression: str) -> None:
    """A malformed expression raises ConfigError quoting the expression."""
    with pytest.raises(ConfigError, match="cannot parse"):
        RouteSelector(expression)


@pytest.mark.parametrize("expression", ["", None, 42])
def test_empty_or_non_string_expression_raises(expression: Any) -> None:
    """The expression must be a non-empty string."""
    with pytest.raises(ConfigError, match="non-empty string"):
        RouteSelector(expression)


@pytest.mark.parametrize("key", ["$connect", "$disconnect", "$default", "join", "a$b", "chat/join"])
def test_validate_route_key_accepts(key: str) -> None:
    """Predefined keys and custom keys not starting with `$` are valid."""
    validate_route_key(key)


def test_validate_route_key_rejects_reserved_prefix() -> None:
    """A custom key starting with `$` is refused, naming the reserved keys."""
    with pytest.raises(ConfigError, match=r"'\$foo'.*reserved") as info:
        validate_route_key("$foo")
    assert "$default" in str(info.value)


@pytest.mark.parametrize("key", ["", None, 7])
def test_validate_route_key_rejects_empty(key: Any) -> None:
    """A route key must be a non-empty string."""
    with pytest.raises(ConfigError, match="non-empty string"):
        validate_route_key(key)


def test_json_nested_deeper_than_python_goes_is_not_json() -> None:
    """100,000 '[' fit in a message; they route as non-JSON instead of crashing."""
    from wsgate.core.routing import NOT_JSON, parse_body

    assert parse_body("[" * 100_000) is NOT_JSON


# Typos that used to be accepted and sent every message to `$default`: each one is refused
# when the app is built, with a message saying what is wrong and what a valid one looks like.
@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("request.body.action", "'$'"),
        ("{request.body.action}", "'$'"),
        ("x-request.body.action", "'$'"),
        ("$request.body.", "empty path segment"),
        ("$request.body..action", "empty path segment"),
        ("${request.body.a.}", "empty path segment"),
        ("$request.body.action ", "whitespace"),
        (" $request.body.action", "whitespace"),
        ("$request.body.action\n", "whitespace"),
        ("${request.body.action }", "whitespace"),
        ("${ request.body.action}", "whitespace"),
        ("$request.body. action", "empty path segment"),
        ("$ request.body.action", "'$'"),
        ("$request.body.action}", "'}'"),
        ("$request.body.a[", "'['"),
        ("$request.body.a[x]", "'[x]'"),
        ("$request.body.a[-1]", "'[-1]'"),
        ("${request.body.action", "'${'"),
        ("$request.body.service.$request.body.action", "empty path segment"),
    ],
)
def test_malformed_expression_is_refused(expression: str, problem: str) -> None:
    """A malformed expression raises ConfigError naming the problem and a valid example."""
    with pytest.raises(ConfigError) as info:
        RouteSelector(expression)
    message = str(info.value)
    assert repr(expression) in message
    assert problem in message
    assert "$request.body.action" in message


def test_app_refuses_malformed_expression() -> None:
    """The App refuses a typo in its route selection expression when it is built."""
    from wsgate import App

    with pytest.raises(ConfigError, match=r"'request\.body\.action'.*\$request\.body\.action"):
        App(route_selection="request.body.action")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("\\${request.body.action}", "${request.body.action}"),
        ("${request.body.service}.${request.body.action}", "chat.join"),
        ("${request.body.action} now", "join now"),
        ("$request.body.action/x", "join/x"),
        ("$request.body.service-x", ""),  # `-` belongs to a key, as in JSON keys like `a-b`
        ("$request.body.data[0]", ""),
        ("$request.body[0]", ""),
        ("a b", "a b"),
    ],
)
def test_valid_forms_still_evaluate(expression: str, expected: str) -> None:
    """Escapes, braces followed by text, indexes and static text with spaces stay valid."""
    assert RouteSelector(expression).route_key(DOC_BODY) == expected


_KEY = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=8)


@given(st.lists(_KEY, min_size=1, max_size=5), st.text(max_size=10))
def test_any_dotted_path_resolves(steps: list[str], value: str) -> None:
    """`$request.body.a.b...` and `${request.body.a.b...}` reach a value nested that deep."""
    body: Any = value
    for step in reversed(steps):
        body = {step: body}
    path = "request.body." + ".".join(steps)
    assert RouteSelector("$" + path).route_key(body) == value
    assert RouteSelector("${" + path + "}").route_key(body) == value


@given(st.lists(_KEY, min_size=1, max_size=4), st.sampled_from([" ", ".", "\t", "["]))
def test_typo_at_the_end_is_refused(steps: list[str], typo: str) -> None:
    """A valid `$request.body.<path>` with a stray space, dot or bracket after it is refused."""
    expression = "$request.body." + ".".join(steps) + typo
    with pytest.raises(ConfigError, match=r"\$request\.body\.action"):
        RouteSelector(expression)


@given(st.lists(_KEY, min_size=1, max_size=4))
def test_missing_dollar_is_refused(steps: list[str]) -> None:
    """`request.body.<path>` without its `$` is refused, not taken as a static route key."""
    with pytest.raises(ConfigError, match=r"'\$'"):
        RouteSelector("request.body." + ".".join(steps))


@given(st.text(alphabet="$\\{}[]._- abc019\t", max_size=30) | st.text(max_size=30))
def test_parsing_raises_only_config_error(expression: str) -> None:
    """Whatever the text, building a selector either works or raises ConfigError."""
    try:
        selector = RouteSelector(expression)
    except ConfigError:
        return
    selector.route_key(DOC_BODY)
    selector.route_key(NOT_JSON)
