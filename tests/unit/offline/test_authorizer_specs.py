"""serverless.yml `authorizer:` and SAM `AWS::ApiGatewayV2::Authorizer` -> AppSpec.authorizer
(docs/compatibility.md §7). Pure parsing: files in tmp_path, no processes."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from wsgate.exceptions import ConfigError
from wsgate.offline.app import load_app_spec
from wsgate.offline.spec import AppSpec, AuthorizerSpec


def load(tmp_path: Path, name: str, text: str) -> AppSpec:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return load_app_spec(path)


def serverless(authorizer: str, route: str = "$connect") -> str:
    return f"""
    service: guarded
    provider:
      name: aws
      runtime: python3.12
    functions:
      auth:
        handler: handler.authorize
      connect:
        handler: handler.connect
        events:
          - websocket:
              route: {route}
              authorizer: {authorizer}
    """


@pytest.mark.parametrize(
    ("authorizer", "sources"),
    [
        ("auth", ("route.request.header.Auth",)),  # Serverless's default identity source
        (
            "{name: auth, identitySource: [route.request.querystring.token]}",
            ("route.request.querystring.token",),
        ),
        (
            "{arn: 'arn:aws:lambda:us-east-1:123:function:guarded-dev-auth', identitySource: []}",
            (),
        ),
        ("'arn:aws:lambda:us-east-1:123:function:auth'", ("route.request.header.Auth",)),
    ],
)
def test_serverless_authorizer_forms(
    tmp_path: Path, authorizer: str, sources: tuple[str, ...]
) -> None:
    """A function name, {name|arn, identitySource}, or an ARN naming a function of the service;
    the authorizer's function is served though it has no websocket event."""
    spec = load(tmp_path, "serverless.yml", serverless(authorizer))
    assert spec.authorizer == AuthorizerSpec("auth", sources)
    assert {fn.name: fn.routes for fn in spec.functions}["auth"] == ()


@pytest.mark.parametrize(
    ("authorizer", "route", "match"),
    [
        ("nothing", "$connect", "no function 'nothing'"),
        ("'arn:aws:lambda:us-east-1:123:function:elsewhere'", "$connect", "not a function of this"),
        ("auth", "$default", "only \\$connect can have an authorizer"),
        ("{name: auth, identitySource: 3}", "$connect", "identity sources"),
    ],
)
def test_serverless_authorizer_errors(
    tmp_path: Path, authorizer: str, route: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        load(tmp_path, "serverless.yml", serverless(authorizer, route))


def sam(authorization: dict[str, Any], authorizer_type: str = "REQUEST") -> str:
    """A SAM template (as JSON) whose $connect route has `authorization`."""

    def uri(function: str) -> dict[str, str]:
        return {
            "Fn::Sub": "arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/"
            f"functions/${{{function}.Arn}}/invocations"
        }

    properties = {"Name": "guarded", "ProtocolType": "WEBSOCKET"}
    template = {
        "Transform": "AWS::Serverless-2016-10-31",
        "Globals": {"Function": {"Runtime": "python3.12", "CodeUri": "."}},
        "Resources": {
            "Api": {"Type": "AWS::ApiGatewayV2::Api", "Properties": properties},
            "ConnectRoute": {
                "Type": "AWS::ApiGatewayV2::Route",
                "Properties": {
                    "ApiId": {"Ref": "Api"},
                    "RouteKey": "$connect",
                    "Target": {"Fn::Sub": "integrations/${ConnectIntegration}"},
                    **authorization,
                },
            },
            "ConnectIntegration": {
                "Type": "AWS::ApiGatewayV2::Integration",
                "Properties": {
                    "ApiId": {"Ref": "Api"},
                    "IntegrationType": "AWS_PROXY",
                    "IntegrationUri": uri("ConnectFunction"),
                },
            },
            "Auth": {
                "Type": "AWS::ApiGatewayV2::Authorizer",
                "Properties": {
                    "ApiId": {"Ref": "Api"},
                    "Name": "auth",
                    "AuthorizerType": authorizer_type,
                    "IdentitySource": ["route.request.querystring.token"],
                    "AuthorizerUri": uri("AuthFunction"),
                },
            },
            "ConnectFunction": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"Handler": "handler.connect"},
            },
            "AuthFunction": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"Handler": "handler.authorize"},
            },
        },
    }
    return json.dumps(template)


CUSTOM = {"AuthorizationType": "CUSTOM", "AuthorizerId": {"Ref": "Auth"}}


def test_sam_custom_authorization_names_the_authorizer(tmp_path: Path) -> None:
    spec = load(tmp_path, "template.yaml", sam(CUSTOM))
    assert spec.authorizer == AuthorizerSpec("AuthFunction", ("route.request.querystring.token",))
    assert {fn.name for fn in spec.functions} == {"ConnectFunction", "AuthFunction"}


def test_sam_without_authorization_has_no_authorizer(tmp_path: Path) -> None:
    """An Authorizer no route names does not run (as on AWS)."""
    spec = load(tmp_path, "template.yaml", sam({"AuthorizationType": "NONE"}))
    assert spec.authorizer is None
    assert {fn.name for fn in spec.functions} == {"ConnectFunction"}


def test_sam_aws_iam_authorization_signs_connect(tmp_path: Path) -> None:
    """`AuthorizationType: AWS_IAM` on `$connect` is the App's AWS_IAM (§7.7)."""
    spec = load(tmp_path, "template.yaml", sam({"AuthorizationType": "AWS_IAM"}))
    assert spec.authorization == "AWS_IAM"
    assert spec.authorizer is None


@pytest.mark.parametrize(
    ("authorization", "authorizer_type", "match"),
    [
        ({"AuthorizationType": "CUSTOM"}, "REQUEST", "AuthorizerId"),
        (CUSTOM, "JWT", "JWT: WebSocket APIs"),
        ({"AuthorizationType": "JWT"}, "REQUEST", "expected NONE, CUSTOM or AWS_IAM"),
    ],
)
def test_sam_authorization_errors(
    tmp_path: Path, authorization: dict[str, Any], authorizer_type: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        load(tmp_path, "template.yaml", sam(authorization, authorizer_type))
