"""Route selection: which route key an inbound message goes to.

Rules of this module: it never calls a handler and never looks at the network. It turns a
route selection expression and a message into a route key, following API Gateway:

- The expression mixes static text and variables: `$request.body.action`,
  `${request.body.service}/${request.body.action}`, `\\$default` (a literal `$`).
  The only variable family for WebSocket APIs is `$request.body.<path>`, a JSONPath into
  the JSON-parsed message (`a.b`, `a[0]`).
- A path that does not resolve becomes `""`. Non-string values are stringified (AWS only
  documents arrays, as `[a, b]`; numbers, booleans and objects follow the spec's
  recommendation: JSON forms; `null` counts as unresolved).
- A message that is not JSON, or whose key matches no route, goes to `$default`.
- `$connect` and `$disconnect` are picked by event type, never by a message: a message
  whose key evaluates to either is treated as no match (AWS's behaviour here is unknown).
- No match and no `$default`: `None`; the gateway then sends the `Forbidden` error frame.
"""

from __future__ import annotations

import json
import json.scanner
import re
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any, cast

from wsgate.exceptions import ConfigError

CONNECT = "$connect"
DISCONNECT = "$disconnect"
DEFAULT = "$default"
PREDEFINED_ROUTES = frozenset({CONNECT, DISCONNECT, DEFAULT})


class _NotJson:
    """The type of `NOT_JSON`: one instance, which copies and pickles keep (by name)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_JSON"

    def __reduce__(self) -> str:
        return "NOT_JSON"


#: A value `json.loads` could not produce: the message was not JSON.
NOT_JSON: Any = _NotJson()

_BRACED = re.compile(r"\$\{([^}]*)\}")
_BARE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_\-]+|\[\d+\])*)")
_STEP = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]")

Step = str | int


@dataclass(frozen=True, slots=True)
class _Path:
    steps: tuple[Step, ...]


def validate_route_key(key: str) -> None:
    """Raise ConfigError unless `key` may name a route (custom keys must not start with `$`)."""
    if not isinstance(key, str) or not key:
        raise ConfigError(f"a route key must be a non-empty string, got {key!r}")
    if key.startswith("$") and key not in PREDEFINED_ROUTES:
        raise ConfigError(
            f"route key {key!r} starts with '$', which is reserved for "
            f"{', '.join(sorted(PREDEFINED_ROUTES))}"
        )


def _parse_variable(text: str, expression: str) -> _Path:
    prefix = "request.body"
    if text == prefix:
        return _Path(())
    if not text.startswith(prefix) or text[len(prefix)] not in ".[":
        raise ConfigError(
            f"unsupported variable ${text} in route selection expression {expression!r}: "
            "WebSocket APIs only support $request.body.<path>"
        )
    rest = text[len(prefix) :]
    steps: list[Step] = []
    pos = 0
    while pos < len(rest):
        match = _STEP.match(rest, pos)
        if match is None:
            raise ConfigError(f"cannot parse {rest[pos:]!r} in route selection {expression!r}")
        steps.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    return _Path(tuple(steps))


def _stringify(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_stringify(item) for item in value) + "]"
    return json.dumps(value, separators=(",", ":"))


def _resolve(body: Any, steps: tuple[Step, ...]) -> Any:
    value = body
    for step in steps:
        if isinstance(step, str):
            if not isinstance(value, dict) or step not in value:
                return None
            value = value[step]
        else:
            if not isinstance(value, list) or step >= len(value):
                return None
            value = value[step]
    return value


class RouteSelector:
    """Evaluates one route selection expression against messages.

    >>> RouteSelector("$request.body.action").route_key({"action": "join"})
    'join'
    """

    __slots__ = ("_parts", "_single_key", "expression")

    def __init__(self, expression: str) -> None:
        if not isinstance(expression, str) or not expression:
            raise ConfigError("the route selection expression must be a non-empty string")
        self.expression = expression
        self._parts = self._parse(expression)
        # Fast path for the common `$request.body.<key>`: one dict lookup per message.
        single = self._parts[0] if len(self._parts) == 1 else None
        self._single_key = (
            single.steps[0]
            if isinstance(single, _Path)
            and len(single.steps) == 1
            and isinstance(single.steps[0], str)
            else None
        )

    @staticmethod
    def _parse(expression: str) -> tuple[str | _Path, ...]:
        parts: list[str | _Path] = []
        literal: list[str] = []
        pos = 0
        while pos < len(expression):
            if expression.startswith("\\$", pos):
                literal.append("$")
                pos += 2
                continue
            if expression[pos] == "$":
                match = _BRACED.match(expression, pos) or _BARE.match(expression, pos)
                if match is None:
                    raise ConfigError(f"cannot parse route selection expression {expression!r}")
                if literal:
                    parts.append("".join(literal))
                    literal = []
                parts.append(_parse_variable(match.group(1), expression))
                pos = match.end()
                continue
            literal.append(expression[pos])
            pos += 1
        if literal:
            parts.append("".join(literal))
        return tuple(parts)

    def route_key(self, body: Any) -> str:
        """Evaluate the expression against a parsed JSON body (`NOT_JSON` if it was not JSON)."""
        if self._single_key is not None:
            if type(body) is dict:
                return _stringify(body.get(self._single_key))
            return ""
        if body is NOT_JSON:
            body = None
        return "".join(
            part if isinstance(part, str) else _stringify(_resolve(body, part.steps))
            for part in self._parts
        )

    def select(self, body: Any, routes: Container[str]) -> str | None:
        """The route key a message with this parsed body goes to, or None if nothing takes it."""
        if body is not NOT_JSON:
            key = self.route_key(body)
            if key in routes and key != CONNECT and key != DISCONNECT:
                return key
        return DEFAULT if DEFAULT in routes else None


#: The C scanner under `json.loads`, called without json's two Python layers around it.
#: (typeshed has the scanner's context as a scanner; it is the decoder whose settings it uses)
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    cast(Any, json.JSONDecoder())
)
_JSON_SPACE = " \t\n\r"


def parse_body(text: str) -> Any:
    """The JSON value of a message, or `NOT_JSON`: parsed once, shared with the handler.

    What `json.loads` accepts (a value between JSON whitespace), for a sixth of a
    message's cost less: the C scanner, called directly, from where the value starts.
    """
    try:
        try:
            value, end = _scan(text, 0)
        except StopIteration:  # no value where the text starts: JSON whitespace first?
            value, end = _scan(text, len(text) - len(text.lstrip(_JSON_SPACE)))
    except (StopIteration, ValueError, RecursionError):  # Recursion: nested beyond Python
        return NOT_JSON
    if end == len(text) or not text[end:].strip(_JSON_SPACE):
        return value
    return NOT_JSON
