"""The authorizer's rules without a gateway: identity sources, the event, the verdict
(docs/compatibility.md §7)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from wsgate.core.authorizer import (
    MAX_RESULT_BYTES,
    AuthorizerDecision,
    IdentitySource,
    authorizer_event,
    decide,
    failure_decision,
    identity_values,
    method_arn,
    simple_policy,
)
from wsgate.core.events import ConnectionContext
from wsgate.exceptions import ConfigError

ARN = "arn:aws:execute-api:us-east-1:000000000000:abcdef1234/dev/$connect"


def policy(*statements: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "principalId": "ann",
        "policyDocument": {"Version": "2012-10-17", "Statement": list(statements)},
        **extra,
    }


def statement(
    effect: str = "Allow", action: Any = "execute-api:Invoke", resource: Any = ARN
) -> Any:
    return {"Effect": effect, "Action": action, "Resource": resource}


def info() -> ConnectionContext:
    return ConnectionContext(
        connection_id="c0nnection1d0A=",
        connected_at=1_700_000_000_000,
        source_ip="127.0.0.1",
        user_agent="ua",
        domain_name="localhost:8080",
        stage="dev",
        api_id="abcdef1234",
    )


# -- identity sources ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "name"),
    [
        ("route.request.header.Auth", "header", "Auth"),
        ("route.request.querystring.token", "querystring", "token"),
        ("stageVariables.secret", "stageVariables", "secret"),
        ("context.identity.sourceIp", "context", "identity.sourceIp"),
    ],
)
def test_identity_sources_parse_and_print_back(text: str, kind: str, name: str) -> None:
    source = IdentitySource.parse(text)
    assert (source.kind, source.name) == (kind, name)
    assert str(source) == text


@pytest.mark.parametrize(
    "text", ["route.request.header.", "$request.header.Auth", "method.request.header.A", ""]
)
def test_bad_identity_sources_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="identity source"):
        IdentitySource.parse(text)


def values(*sources: str, **where: Any) -> list[str] | None:
    return identity_values(
        [IdentitySource.parse(s) for s in sources],
        headers=where.get("headers", []),
        query=where.get("query", []),
        stage_variables=where.get("stage_variables"),
        request_context=where.get("request_context", {}),
    )


def test_identity_values_from_each_kind() -> None:
    assert values(
        "route.request.header.x-auth",
        "route.request.querystring.token",
        "stageVariables.env",
        "context.identity.sourceIp",
        headers=[("X-Auth", "h")],
        query=[("token", "a"), ("token", "b")],
        stage_variables={"env": "test"},
        request_context={"identity": {"sourceIp": "1.2.3.4"}},
    ) == ["h", "b"] + ["test", "1.2.3.4"]


@pytest.mark.parametrize(
    ("source", "where"),
    [
        ("route.request.header.Auth", {"headers": [("Other", "x")]}),
        ("route.request.header.Auth", {"headers": [("Auth", "")]}),
        ("route.request.querystring.token", {"query": [("Token", "x")]}),  # names are exact
        ("route.request.querystring.token", {"query": [("token", "")]}),
        ("stageVariables.env", {}),
        ("context.identity.nothing", {"request_context": {"identity": {}}}),
        ("context.identity", {"request_context": {"identity": {"sourceIp": "x"}}}),
    ],
)
def test_a_missing_or_empty_identity_value_is_none(source: str, where: dict[str, Any]) -> None:
    assert values(source, **where) is None


def test_no_identity_sources_is_no_values() -> None:
    assert values() == []


# -- the event -----------------------------------------------------------------------------


def test_method_arn_names_the_connect_route() -> None:
    assert method_arn("us-east-1", "000000000000", "abcdef1234", "dev") == ARN


def test_authorizer_event_keeps_every_header_and_always_has_the_maps() -> None:
    event = authorizer_event(
        info(),
        method_arn=ARN,
        headers=[("Host", "localhost:8080"), ("Connection", "Upgrade"), ("Upgrade", "websocket")],
        query=[],
        gateway_headers={"X-Forwarded-Proto": "http", "Host": "ignored"},
        stage_variables=None,
        request_id="r",
        now_ms=1_700_000_000_001,
    )
    assert event["type"] == "REQUEST" and event["methodArn"] == ARN
    assert event["headers"] == {
        "Host": "localhost:8080",
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "content-length": "0",
        "X-Forwarded-Proto": "http",
    }
    assert event["multiValueHeaders"]["Connection"] == ["Upgrade"]
    assert event["queryStringParameters"] == {}
    assert event["multiValueQueryStringParameters"] == {}
    assert event["stageVariables"] == {}
    assert "isBase64Encoded" not in event
    assert event["requestContext"]["routeKey"] == "$connect"
    assert event["requestContext"]["eventType"] == "CONNECT"
    assert event.connection_id == "c0nnection1d0A="


# -- the verdict -----------------------------------------------------------------------------


def test_allow_gives_principal_and_stringified_context() -> None:
    decision = decide(
        policy(statement(), context={"user": "ann", "n": 1, "ok": False, "f": 1.5}), ARN
    )
    assert decision == AuthorizerDecision(
        200, {"principalId": "ann", "user": "ann", "n": "1", "ok": "false", "f": "1.5"}
    )
    assert decision.allowed


@pytest.mark.parametrize(
    "statements",
    [
        [statement("Deny")],
        [statement(), statement("Deny", "execute-api:*", "arn:aws:execute-api:*")],
        [statement(resource="arn:aws:execute-api:us-east-1:000000000000:abcdef1234/prod/*")],
        [statement(action="execute-api:ManageConnections")],
        [],
    ],
)
def test_deny_or_nothing_covering_is_403(statements: list[Any]) -> None:
    decision = decide(policy(*statements), ARN)
    assert (decision.status, decision.message) == (403, "Forbidden")


@pytest.mark.parametrize(
    ("action", "resource"),
    [
        ("*", "*"),
        ("execute-api:*", ARN),
        ("EXECUTE-API:invoke", ARN),  # actions ignore case
        ("execute-api:Invoke", "arn:aws:execute-api:*:*:abcdef1234/*/$connect"),
        ("execute-api:Invoke", "arn:aws:execute-api:us-east-?:*"),
        (["sqs:SendMessage", "execute-api:Invoke"], ["arn:aws:s3:::x", ARN]),
    ],
)
def test_wildcards_and_lists_cover_the_arn(action: Any, resource: Any) -> None:
    assert decide(policy(statement(action=action, resource=resource)), ARN).allowed


def test_resources_are_case_sensitive() -> None:
    assert decide(policy(statement(resource=ARN.replace("dev", "DEV"))), ARN).status == 403


def test_a_single_statement_object_is_accepted() -> None:
    result = {"principalId": "p", "policyDocument": {"Statement": statement()}}
    assert decide(result, ARN).allowed


@pytest.mark.parametrize(
    "result",
    [
        None,
        "Allow",
        {"statusCode": 401},
        {"principalId": "p"},
        {"policyDocument": {"Statement": [statement()]}},
        {"principalId": 7, "policyDocument": {"Statement": [statement()]}},
        {"principalId": "p", "policyDocument": {"Statement": "x"}},
        policy({"Effect": "allow", "Action": "*", "Resource": "*"}),
        policy({"Effect": "Allow", "Resource": "*"}),
        policy(statement(resource=[])),
        policy(statement(resource="arn:" + "x" * 600)),
        policy(statement(), context="user=ann"),
        policy(statement(), context={"user": {"name": "ann"}}),
        policy(statement(), context={"tags": ["a"]}),
        policy(statement(), context={"none": None}),
        policy(statement(), context={"nan": float("nan")}),
        policy(statement(), context={"big": "x" * MAX_RESULT_BYTES}),
    ],
)
def test_malformed_results_are_500(result: Any) -> None:
    decision = decide(result, ARN)
    assert (decision.status, decision.message) == (500, "Internal server error")
    assert decision.problem


def test_the_size_limit_counts_the_whole_result() -> None:
    base = policy(statement(), context={"big": ""})
    room = MAX_RESULT_BYTES - len(json.dumps(base, separators=(",", ":")))
    assert decide(policy(statement(), context={"big": "x" * room}), ARN).allowed
    assert decide(policy(statement(), context={"big": "x" * (room + 1)}), ARN).status == 500


def test_unauthorized_error_is_401_other_errors_500() -> None:
    assert failure_decision(Exception("Unauthorized")).status == 401
    assert failure_decision(Exception("Unauthorized")).message == "Unauthorized"
    assert failure_decision(Exception("unauthorized")).status == 500
    assert failure_decision(KeyError("token")).status == 500


# -- the simple form -----------------------------------------------------------------------


def test_simple_results_become_policies() -> None:
    assert decide(simple_policy(True, ARN), ARN) == AuthorizerDecision(200, {"principalId": "user"})
    assert decide(simple_policy(False, ARN), ARN).status == 403
    allowed = simple_policy({"isAuthorized": True, "principalId": "ann", "context": {"a": 1}}, ARN)
    assert allowed["policyDocument"]["Statement"] == [statement()]
    assert decide(allowed, ARN) == AuthorizerDecision(200, {"principalId": "ann", "a": "1"})
    denied = simple_policy({"isAuthorized": False, "context": {"a": {}}}, ARN)
    assert decide(denied, ARN).status == 403  # a refusal's context is never read


@pytest.mark.parametrize("result", [None, "yes", {"isAuthorized": 1}, {"statusCode": 200}])
def test_other_simple_results_stay_malformed(result: Any) -> None:
    assert simple_policy(result, ARN) == result
    assert decide(simple_policy(result, ARN), ARN).status == 500
