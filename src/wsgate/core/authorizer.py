"""Lambda REQUEST authorizers on `$connect`: identity sources, the event, the verdict.

Rules of this module (docs/compatibility.md §7): it never calls the authorizer and never
looks at the network; the gateway (and the Lambda adapter) hand it what the client sent
and what the authorizer returned, and act on its answer.

Theory of operation, as API Gateway runs a `$connect` authorizer:

1. `identity_values`: every configured identity source must be present and non-empty,
   else the client gets 401 and the authorizer is not invoked.
2. `authorizer_event`: the `REQUEST` event, with `methodArn` and the client's headers
   *including* `Connection` and `Upgrade` (which the `$connect` event drops).
3. The authorizer runs. `raise Exception("Unauthorized")` is a 401 (`UNAUTHORIZED`);
   any other error, or a timeout, is a 500.
4. `decide`: its result is an IAM policy. An explicit `Deny` covering the `$connect` ARN
   wins (403); else an `Allow` covering it lets the client through to `$connect`; else
   403. A malformed result, a `context` value that is not a string, number or boolean,
   or a result over 8 KB is a 500.
5. On Allow, `principalId` and the `context` values (as strings) become
   `requestContext.authorizer` of every event of the connection.

`simple_policy` turns wsgate's simple form (`True`/`False`, or `{"isAuthorized": bool,
"context": {...}}`, the shape of HTTP APIs' simple responses) into that policy: API
Gateway's WebSocket authorizers only understand policies, so simple authorizers return
one on AWS too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from wsgate.core.events import ConnectionContext, Event, single_and_multi_value
from wsgate.core.routing import CONNECT
from wsgate.exceptions import ConfigError

#: The error message that makes an authorizer's failure a 401 rather than a 500.
UNAUTHORIZED = "Unauthorized"
#: API Gateway's limit on an authorizer's result (serialized as JSON, in bytes).
MAX_RESULT_BYTES = 8 * 1024
#: API Gateway's limit on a policy's `Resource` ARN.
MAX_RESOURCE_ARN_CHARS = 512
#: The `principalId` simple authorizers get unless they name one.
SIMPLE_PRINCIPAL_ID = "user"

#: The four kinds of identity source API Gateway accepts on a WebSocket authorizer.
_SOURCE_PREFIXES = {
    "route.request.header.": "header",
    "route.request.querystring.": "querystring",
    "stageVariables.": "stageVariables",
    "context.": "context",
}


@dataclass(frozen=True, slots=True)
class IdentitySource:
    """One identity source: where to look (`kind`) and the name to look up."""

    kind: str  # "header", "querystring", "stageVariables" or "context"
    name: str

    @classmethod
    def parse(cls, text: str) -> IdentitySource:
        """`route.request.header.Auth`, `route.request.querystring.token`,
        `stageVariables.name` or `context.name` (`context.identity.sourceIp`: a path)."""
        for prefix, kind in _SOURCE_PREFIXES.items():
            if text.startswith(prefix) and len(text) > len(prefix):
                return cls(kind, text[len(prefix) :])
        raise ConfigError(
            f"bad identity source {text!r}: expected route.request.header.NAME, "
            "route.request.querystring.NAME, stageVariables.NAME or context.NAME"
        )

    def __str__(self) -> str:
        prefix = next(p for p, kind in _SOURCE_PREFIXES.items() if kind == self.kind)
        return prefix + self.name


def identity_values(
    sources: Iterable[IdentitySource],
    *,
    headers: Iterable[tuple[str, str]],
    query: Iterable[tuple[str, str]],
    stage_variables: Mapping[str, str] | None,
    request_context: Mapping[str, Any],
) -> list[str] | None:
    """Each source's value, or None when any is missing or empty (the client gets 401).

    Header names match case-insensitively; query string names, stage variables and context
    paths exactly. A repeated header or query parameter counts by its last value.
    """
    by_header = {name.lower(): value for name, value in headers}
    by_query = dict(query)
    values: list[str] = []
    for source in sources:
        value: Any
        if source.kind == "header":
            value = by_header.get(source.name.lower())
        elif source.kind == "querystring":
            value = by_query.get(source.name)
        elif source.kind == "stageVariables":
            value = (stage_variables or {}).get(source.name)
        else:
            value = request_context
            for part in source.name.split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
        if value is None or value == "" or isinstance(value, Mapping | list):
            return None
        values.append(value if isinstance(value, str) else json.dumps(value))
    return values


def method_arn(region: str, account_id: str, api_id: str, stage: str) -> str:
    """The ARN a policy must allow (no HTTP verb in a route ARN):
    `arn:aws:execute-api:{region}:{account}:{api}/{stage}/$connect`."""
    return f"arn:aws:execute-api:{region}:{account_id}:{api_id}/{stage}/{CONNECT}"


def authorizer_event(
    info: ConnectionContext,
    *,
    method_arn: str,
    headers: Iterable[tuple[str, str]],
    query: Iterable[tuple[str, str]],
    gateway_headers: Mapping[str, str],
    stage_variables: Mapping[str, str] | None,
    request_id: str,
    now_ms: int,
) -> Event:
    """The `REQUEST` event: every client header (casing kept) plus the gateway's own.

    Unlike `$connect`'s event it keeps `Connection`, `Upgrade` and `content-length` (`0`
    when the client sent none, as API Gateway shows it), and always has the query string
    maps and `stageVariables` (empty when there are none). No `isBase64Encoded`.
    """
    pairs = list(headers)
    present = {name.lower() for name, _ in pairs}
    extra = {"content-length": "0", **gateway_headers}
    pairs.extend((name, value) for name, value in extra.items() if name.lower() not in present)
    single, multi = single_and_multi_value(pairs)
    query_single, query_multi = single_and_multi_value(query)
    return Event(
        type="REQUEST",
        methodArn=method_arn,
        headers=single,
        multiValueHeaders=multi,
        queryStringParameters=query_single,
        multiValueQueryStringParameters=query_multi,
        stageVariables=dict(stage_variables or {}),
        requestContext=info.request_context(CONNECT, "CONNECT", request_id, now_ms),
    )


@dataclass(frozen=True, slots=True)
class AuthorizerDecision:
    """What the gateway does with the client: 200 lets it through to `$connect`; 401,
    403 and 500 are the handshake's answer. `problem` says why a result was a 500."""

    status: int
    #: `requestContext.authorizer` for the connection's events, when allowed.
    authorizer: dict[str, Any] | None = None
    problem: str | None = None

    @property
    def allowed(self) -> bool:
        return self.status == 200

    @property
    def message(self) -> str:
        """The `message` of API Gateway's JSON body for a refusal."""
        return _MESSAGES.get(self.status, "Internal server error")


_MESSAGES = {401: "Unauthorized", 403: "Forbidden"}
UNAUTHORIZED_DECISION = AuthorizerDecision(401)


def failure_decision(error: BaseException) -> AuthorizerDecision:
    """The authorizer raised: `Unauthorized` is a 401, anything else a 500."""
    if str(error) == UNAUTHORIZED:
        return UNAUTHORIZED_DECISION
    return AuthorizerDecision(500, problem=f"the authorizer raised {error!r}")


def decide(result: Any, arn: str) -> AuthorizerDecision:
    """Judge an authorizer's result (an IAM policy) for the `$connect` route at `arn`."""
    try:
        principal_id, statements, context = _read_result(result)
    except _Malformed as exc:
        return AuthorizerDecision(500, problem=f"malformed authorizer result: {exc}")
    denied = allowed = False
    for effect, actions, resources in statements:
        covers = any(_matches(a, "execute-api:Invoke", ignore_case=True) for a in actions) and any(
            _matches(r, arn, ignore_case=False) for r in resources
        )
        if covers and effect == "Deny":
            denied = True
        elif covers:
            allowed = True
    if denied or not allowed:
        return AuthorizerDecision(403)
    authorizer: dict[str, Any] = {"principalId": principal_id}
    for key, value in context.items():
        if key != "principalId":
            authorizer[key] = value if isinstance(value, str) else json.dumps(value)
    return AuthorizerDecision(200, authorizer=authorizer)


def simple_policy(result: Any, arn: str) -> Any:
    """The IAM policy equivalent to a simple authorizer's result.

    `True`/`False`, or `{"isAuthorized": bool, "context": {...}}` with an optional
    `principalId` (else `"user"`). A refusal is a bare Deny: its context is never used.
    Anything else is returned unchanged, so `decide` calls it malformed.
    """
    if isinstance(result, bool):
        result = {"isAuthorized": result}
    if not isinstance(result, Mapping) or not isinstance(result.get("isAuthorized"), bool):
        return result
    if not result["isAuthorized"]:
        result = {"isAuthorized": False}
    policy: dict[str, Any] = {
        "principalId": result.get("principalId", SIMPLE_PRINCIPAL_ID),
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow" if result["isAuthorized"] else "Deny",
                    "Resource": arn,
                }
            ],
        },
    }
    if "context" in result:
        policy["context"] = result["context"]
    return policy


class _Malformed(ValueError):
    pass


_Statement = tuple[str, list[str], list[str]]


def _read_result(result: Any) -> tuple[str, list[_Statement], Mapping[str, Any]]:
    if not isinstance(result, Mapping):
        raise _Malformed(f"expected an object with principalId and policyDocument, got {result!r}")
    try:
        size = len(json.dumps(result, separators=(",", ":"), allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise _Malformed(f"not JSON: {exc}") from None
    if size > MAX_RESULT_BYTES:
        raise _Malformed(f"{size} bytes, over API Gateway's {MAX_RESULT_BYTES}")
    principal_id = result.get("principalId")
    if not isinstance(principal_id, str):
        raise _Malformed(f"principalId must be a string, got {principal_id!r}")
    document = result.get("policyDocument")
    if not isinstance(document, Mapping):
        raise _Malformed(f"policyDocument must be an object, got {document!r}")
    raw = document.get("Statement")
    raw_statements = [raw] if isinstance(raw, Mapping) else raw
    if not isinstance(raw_statements, list):
        raise _Malformed(f"policyDocument.Statement must be a list, got {raw!r}")
    statements = [_read_statement(statement) for statement in raw_statements]
    context = result.get("context")
    if context is None:
        context = {}
    if not isinstance(context, Mapping):
        raise _Malformed(f"context must be an object, got {context!r}")
    for key, value in context.items():
        if not isinstance(value, str | int | float):  # bool is an int
            raise _Malformed(
                f"context[{key!r}] is {type(value).__name__}: only strings, numbers and "
                "booleans are allowed"
            )
    return principal_id, statements, context


def _read_statement(statement: Any) -> _Statement:
    if not isinstance(statement, Mapping):
        raise _Malformed(f"a statement must be an object, got {statement!r}")
    effect = statement.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise _Malformed(f"Effect must be Allow or Deny, got {effect!r}")
    actions = _strings(statement.get("Action"), "Action")
    resources = _strings(statement.get("Resource"), "Resource")
    for resource in resources:
        if len(resource) > MAX_RESOURCE_ARN_CHARS:
            raise _Malformed(f"a Resource ARN over {MAX_RESOURCE_ARN_CHARS} characters")
    return effect, actions, resources


def _strings(value: Any, name: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
        raise _Malformed(f"{name} must be a string or a list of strings, got {value!r}")
    return items


def _matches(pattern: str, value: str, *, ignore_case: bool) -> bool:
    """IAM wildcards: `*` any run of characters, `?` any one character."""
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return (
        re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)
        is not None
    )
