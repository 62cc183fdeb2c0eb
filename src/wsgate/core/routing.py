"""Route selection: which route key an inbound message goes to.

Rules of this module: it never calls a handler and never looks at the network. It turns a
route selection expression and a message into a route key, following API Gateway:

- The expression mixes static text and variables: `$request.body.action`,
  `${request.body.service}/${request.body.action}`, `\\$default` (a literal `$`).
  The only variable family for WebSocket APIs is `$request.body.<path>`, a JSONPath into
  the JSON-parsed message (`a.b`, `a[0]`).
- A typo is refused when the app is built, not turned into static text that sends every
  message to `$default`: `request.body.action` (no `$`), `$request.body.` (an empty path
  segment), whitespace at either end or inside a variable, `$request.body.a[x]`. Text right
  after a variable goes after a braced one: `${request.body.service}.${request.body.action}`.
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

#: A bare variable runs over every character a path could be typed with, so that a typo
#: inside it (`$request.body.`, `$request.body.a[x]`, `$request.body.a}`) is refused
#: instead of ending the variable early and turning the rest into static text.
_BARE = re.compile(r"[A-Za-z0-9_.\-\[\]{}]*")
_STEP = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]")
#: `request.body` in static text, unless an escaped `\$` (or `\${`) comes right before it.
_MISSING_DOLLAR = re.compile(r"(?<!\$)(?<!\$\{)request\.body")
_BODY = "request.body"
_EXAMPLE = "a valid one is $request.body.action, or ${request.body.service}/${request.body.action}"

Step = str | int


@dataclass(frozen=True, slots=True)
class _Path:
    steps: tuple[Step, ...]


def validate_route_key(key: object) -> None:
    """Raise ConfigError unless `key` may name a route (custom keys must not start with `$`)."""
    if not isinstance(key, str) or not key:
        raise ConfigError(f"a route key must be a non-empty string, got {key!r}")
    if key.startswith("$") and key not in PREDEFINED_ROUTES:
        raise ConfigError(
            f"route key {key!r} starts with '$', which is reserved for "
            f"{', '.join(sorted(PREDEFINED_ROUTES))}"
        )


def _malformed(expression: str, problem: str) -> ConfigError:
    return ConfigError(
        f"cannot parse route selection expression {expression!r}: {problem}; {_EXAMPLE}"
    )


def _step_problem(rest: str) -> str:
    """Why `rest`, the unparsed end of a path, is not a `.name` or `[index]` step."""
    if rest[0] in " \t\r\n":
        return "whitespace inside a variable"
    if rest[0] == ".":
        return "empty path segment after '.' (use ${...} to put text right after a variable)"
    if rest[0] == "[":
        end = rest.find("]")
        return f"{rest[: end + 1] if end != -1 else rest!r} is not an array index ([0], [1], ...)"
    return f"{rest!r} is not a path step (.name or [index])"


def _parse_variable(text: str, expression: str) -> _Path:
    if text == _BODY:
        return _Path(())
    if not text.startswith(_BODY) or text[len(_BODY)] not in ".[":
        if text.strip() != text:
            raise _malformed(expression, "whitespace inside a variable")
        raise ConfigError(
            f"unsupported variable ${text} in route selection expression {expression!r}: "
            f"WebSocket APIs only support $request.body.<path>; {_EXAMPLE}"
        )
    rest = text[len(_BODY) :]
    steps: list[Step] = []
    pos = 0
    while pos < len(rest):
        match = _STEP.match(rest, pos)
        if match is None:
            raise _malformed(expression, _step_problem(rest[pos:]))
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


def _static(characters: list[str], expression: str) -> str:
    """Static text of an expression; `request.body` in it is a variable missing its `$`."""
    text = "".join(characters)
    if _MISSING_DOLLAR.search(text):
        raise _malformed(expression, "'request.body' without the '$' that makes it a variable")
    return text


class RouteSelector:
    """Evaluates one route selection expression against messages.

    >>> RouteSelector("$request.body.action").route_key({"action": "join"})
    'join'
    """

    __slots__ = ("_parts", "_single_key", "expression")

    def __init__(self, expression: object) -> None:
        # `object`, not `str`: the check below must run (and raise ConfigError) in the
        # compiled build too, where a `str` annotation would raise TypeError first.
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
        if expression.strip() != expression:
            raise _malformed(expression, "whitespace at its start or end")
        parts: list[str | _Path] = []
        literal: list[str] = []
        pos = 0
        while pos < len(expression):
            if expression.startswith("\\$", pos):
                literal.append("$")
                pos += 2
                continue
            if expression[pos] != "$":
                literal.append(expression[pos])
                pos += 1
                continue
            if expression.startswith("{", pos + 1):
                end = expression.find("}", pos + 2)
                if end == -1:
                    raise _malformed(expression, "'${' is never closed by '}'")
                text, pos = expression[pos + 2 : end], end + 1
            else:
                # Never None: the pattern matches the empty string.
                end = _BARE.match(expression, pos + 1).end()  # type: ignore[union-attr]
                text, pos = expression[pos + 1 : end], end
                if not text:
                    raise _malformed(expression, "'$' starts no variable (write \\$ for a '$')")
            if literal:
                parts.append(_static(literal, expression))
                literal = []
            parts.append(_parse_variable(text, expression))
        if literal:
            parts.append(_static(literal, expression))
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
