"""Model -> CloudFormation: the stack `wsgate template` prints and `wsgate deploy` creates.

Plain CloudFormation (no SAM transform), so the template is what gets deployed, cfn-lint
checks it as is, and moto can run it. One Lambda function per route, each with its own
role holding only what `deploy.permissions` found its handler needs, its own log group,
and its invoke permission; one DynamoDB table as `store/keys.py` defines it; the
WebSocket API, its routes, integrations, a deployment and a stage; with an authorizer,
its function (same kind of role, log group and permission) and an
`AWS::ApiGatewayV2::Authorizer` the `$connect` route names. `deploy.build` makes the model
from an App.

The output is a pure function of the model: same app, same template, byte for byte, so
`wsgate deploy` of an unchanged app is a no-op. Resources follow the model's route order,
and each resource kind has one `_emit_*` function.

Parameters: `StageName` (defaults to `--stage`), and `CodeBucket` / `CodeKey`, where the
code zip lives (`wsgate deploy` uploads it and fills them in).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from wsgate.app import App
from wsgate.core.routing import CONNECT
from wsgate.deploy.build import build
from wsgate.deploy.model import DELETE, GET, POST, Api, Authorizer, Function, Grant
from wsgate.exceptions import ConfigError
from wsgate.store import keys

Template = dict[str, Any]

RUNTIME = "python3.12"
HANDLER = "wsgate.aws.lambda_handler.handler"
#: API Gateway's integration timeout; a longer-running function could not answer anyway.
FUNCTION_TIMEOUT = 29
LOG_RETENTION_DAYS = 30
#: CloudFormation's limit on resources per stack.
MAX_RESOURCES = 500

_VERB_ORDER = (POST, GET, DELETE)


def render(api: Api) -> Template:
    """The CloudFormation template for `api`, as a dict in a fixed order."""
    resources: dict[str, Any] = {}
    resources["Api"] = _emit_api(api)
    resources["Table"] = _emit_table()
    route_ids: list[str] = []
    for function in api.functions:
        base = function.logical_id
        resources[f"{base}LogGroup"] = _emit_log_group()
        resources[f"{base}Role"] = _emit_role(function)
        resources[f"{base}Function"] = _emit_function(api, function)
        resources[f"{base}Permission"] = _emit_permission(function)
        resources[f"{base}Integration"] = _emit_integration(function)
        resources[f"{base}Route"] = _emit_route(function, api)
        route_ids.append(f"{base}Route")
        if function.return_response:
            resources[f"{base}RouteResponse"] = _emit_route_response(function)
            route_ids.append(f"{base}RouteResponse")
    if api.authorizer is not None:
        function = api.authorizer.function
        base = function.logical_id
        resources[f"{base}LogGroup"] = _emit_log_group()
        resources[f"{base}Role"] = _emit_role(function)
        resources[f"{base}Function"] = _emit_function(api, function)
        resources[f"{base}Permission"] = _emit_permission(function)
        resources[base] = _emit_authorizer(api.authorizer)
    # A new deployment whenever the routing changes: CloudFormation only deploys an API
    # when the Deployment resource is new, so its name carries a hash of what it deploys.
    deployment_id = "Deployment" + _digest(
        {key: value for key, value in resources.items() if key == "Api" or _is_routing(value)}
    )
    resources[deployment_id] = _emit_deployment(api, route_ids)
    resources["Stage"] = _emit_stage(api, deployment_id)
    if len(resources) > MAX_RESOURCES:
        raise ConfigError(
            f"{len(api.functions)} routes need {len(resources)} resources, over "
            f"CloudFormation's {MAX_RESOURCES} per stack"
        )
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"wsgate app {api.name}: a WebSocket API with {len(api.functions)} "
        "route(s), one Lambda function per route, a DynamoDB connections table",
        "Parameters": _emit_parameters(api),
        "Resources": resources,
        "Outputs": _emit_outputs(),
    }


def generate(
    app: App,
    *,
    app_target: str,
    stage: str = "dev",
    name: str | None = None,
    full_permissions: bool = False,
) -> tuple[Template, tuple[str, ...]]:
    """`build` then `render`: the template and the warnings to show the user."""
    api = build(
        app, app_target=app_target, stage=stage, name=name, full_permissions=full_permissions
    )
    return render(api), api.warnings


def dumps(template: Template, fmt: str = "yaml") -> str:
    """The template as YAML (the default, for people) or JSON; order preserved."""
    if fmt == "json":
        return json.dumps(template, indent=2) + "\n"
    if fmt != "yaml":
        raise ConfigError(f"unknown template format {fmt!r}: yaml or json")
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml comes with wsgate[aws]
        raise ConfigError("YAML output needs PyYAML: pip install 'wsgate[aws]'") from None
    return yaml.safe_dump(template, sort_keys=False, default_flow_style=False, width=100)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


def _is_routing(resource: Any) -> bool:
    return str(resource.get("Type", "")).startswith("AWS::ApiGatewayV2::")


def _sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def _ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def _get_att(name: str, attribute: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [name, attribute]}


def _sub_literal(text: str) -> str:
    """Text placed inside an Fn::Sub string verbatim (`${` would start a variable)."""
    return text.replace("${", "${!")


def _execute_api_arn(rest: str) -> dict[str, str]:
    return _sub("arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/" + rest)


# -- one _emit_* per resource kind -------------------------------------------------------


def _emit_parameters(api: Api) -> dict[str, Any]:
    return {
        "StageName": {
            "Type": "String",
            "Default": api.stage,
            "AllowedPattern": "^[A-Za-z0-9_-]{1,128}$",
            "Description": "The API's stage: the last part of its URLs",
        },
        "CodeBucket": {
            "Type": "String",
            "MinLength": 3,
            "Description": "S3 bucket holding the code zip (wsgate deploy uploads it)",
        },
        "CodeKey": {
            "Type": "String",
            "MinLength": 1,
            "Description": "S3 key of the code zip in CodeBucket",
        },
    }


def _emit_api(api: Api) -> dict[str, Any]:
    return {
        "Type": "AWS::ApiGatewayV2::Api",
        "Properties": {
            "Name": api.name,
            "ProtocolType": "WEBSOCKET",
            "RouteSelectionExpression": api.route_selection,
            "Description": f"wsgate app {api.name}",
        },
    }


def _emit_table() -> dict[str, Any]:
    """The connections table, as `store/keys.py` defines it for the store too.

    Deleted with the stack: it holds live connections only, meaningless without the API.
    """
    return {
        "Type": "AWS::DynamoDB::Table",
        "DeletionPolicy": "Delete",
        "UpdateReplacePolicy": "Delete",
        "Properties": {**keys.table_schema(), "TimeToLiveSpecification": keys.time_to_live()},
    }


def _emit_log_group() -> dict[str, Any]:
    """A log group per function, so its role can be limited to writing there.

    Deleted with the stack, like the function it belongs to; retention bounds its cost.
    """
    return {
        "Type": "AWS::Logs::LogGroup",
        "DeletionPolicy": "Delete",
        "UpdateReplacePolicy": "Delete",
        "Properties": {"RetentionInDays": LOG_RETENTION_DAYS},
    }


def _emit_role(function: Function) -> dict[str, Any]:
    base = function.logical_id
    statements: list[dict[str, Any]] = [
        {
            "Sid": "Logs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": _get_att(f"{base}LogGroup", "Arn"),
        }
    ]
    statements.extend(policy_statements(function.grant))
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": f"wsgate {_purpose(function)}: {function.handler}",
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
            "Policies": [
                {
                    "PolicyName": "wsgate-route",
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
                }
            ],
        },
    }


def policy_statements(grant: Grant) -> list[dict[str, Any]]:
    """IAM statements for a grant, every one scoped to this stack's table or API."""
    statements: list[dict[str, Any]] = []
    if grant.table:
        statements.append(
            {
                "Sid": "ConnectionsTable",
                "Effect": "Allow",
                "Action": sorted(grant.table),
                "Resource": _get_att("Table", "Arn"),
            }
        )
    if grant.index:
        statements.append(
            {
                "Sid": "ConnectionsTableIndex",
                "Effect": "Allow",
                "Action": sorted(grant.index),
                "Resource": _sub("${Table.Arn}/index/*"),
            }
        )
    if grant.manage:
        statements.append(
            {
                "Sid": "ManageConnections",
                "Effect": "Allow",
                "Action": "execute-api:ManageConnections",
                "Resource": [
                    _execute_api_arn("${StageName}/" + verb + "/@connections/*")
                    for verb in _VERB_ORDER
                    if verb in grant.manage
                ],
            }
        )
    return statements


def _purpose(function: Function) -> str:
    if function.authorizes:
        return f"{function.route_key} authorizer"
    return f"route {function.route_key}"


def _emit_function(api: Api, function: Function) -> dict[str, Any]:
    base = function.logical_id
    return {
        "Type": "AWS::Lambda::Function",
        "Metadata": {
            "wsgate": {
                "authorizer" if function.authorizes else "route": function.route_key,
                "handler": function.handler,
                "connections": sorted(function.analysis.ops),
                "analysed": function.analysis.complete,
            }
        },
        "Properties": {
            "Description": f"wsgate {_purpose(function)}: {function.handler}"[:256],
            "Runtime": RUNTIME,
            "Handler": HANDLER,
            "Code": {"S3Bucket": _ref("CodeBucket"), "S3Key": _ref("CodeKey")},
            "Role": _get_att(f"{base}Role", "Arn"),
            "Timeout": FUNCTION_TIMEOUT,
            "LoggingConfig": {"LogGroup": _ref(f"{base}LogGroup")},
            "Environment": {
                "Variables": {"WSGATE_APP": api.app_target, "WSGATE_TABLE": _ref("Table")}
            },
        },
    }


def _emit_permission(function: Function) -> dict[str, Any]:
    """API Gateway may invoke this function, from this API's stage and route only (an
    authorizer: from this API's authorizer only)."""
    if function.authorizes:
        source = _execute_api_arn(f"authorizers/${{{function.logical_id}}}")
    else:
        source = _execute_api_arn("${StageName}/" + _sub_literal(function.route_key))
    return {
        "Type": "AWS::Lambda::Permission",
        "Properties": {
            "Action": "lambda:InvokeFunction",
            "FunctionName": _get_att(f"{function.logical_id}Function", "Arn"),
            "Principal": "apigateway.amazonaws.com",
            "SourceArn": source,
        },
    }


def _invocation_uri(function: Function) -> dict[str, str]:
    return _sub(
        "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/"
        f"functions/${{{function.logical_id}Function.Arn}}/invocations"
    )


def _emit_integration(function: Function) -> dict[str, Any]:
    return {
        "Type": "AWS::ApiGatewayV2::Integration",
        "Properties": {
            "ApiId": _ref("Api"),
            "IntegrationType": "AWS_PROXY",
            "IntegrationUri": _invocation_uri(function),
        },
    }


def _emit_authorizer(authorizer: Authorizer) -> dict[str, Any]:
    """The Lambda REQUEST authorizer; API Gateway checks the identity sources first."""
    properties: dict[str, Any] = {
        "ApiId": _ref("Api"),
        "Name": authorizer.function.logical_id,
        "AuthorizerType": "REQUEST",
        "AuthorizerUri": _invocation_uri(authorizer.function),
    }
    if authorizer.identity_sources:
        properties["IdentitySource"] = list(authorizer.identity_sources)
    return {"Type": "AWS::ApiGatewayV2::Authorizer", "Properties": properties}


def _emit_route(function: Function, api: Api) -> dict[str, Any]:
    """A route; `$connect` carries the API's authorization (AWS_IAM or the authorizer)."""
    is_connect = function.route_key == CONNECT
    properties: dict[str, Any] = {
        "ApiId": _ref("Api"),
        "RouteKey": function.route_key,
        "AuthorizationType": api.connect_authorization if is_connect else "NONE",
        "Target": _sub(f"integrations/${{{function.logical_id}Integration}}"),
    }
    authorizer = api.authorizer
    if authorizer is not None and is_connect:
        properties["AuthorizationType"] = "CUSTOM"
        properties["AuthorizerId"] = _ref(authorizer.function.logical_id)
    if function.return_response:
        # two-way: the handler's result goes back to the caller (docs/compatibility.md §4.2)
        properties["RouteResponseSelectionExpression"] = "$default"
    return {"Type": "AWS::ApiGatewayV2::Route", "Properties": properties}


def _emit_route_response(function: Function) -> dict[str, Any]:
    return {
        "Type": "AWS::ApiGatewayV2::RouteResponse",
        "Properties": {
            "ApiId": _ref("Api"),
            "RouteId": _ref(f"{function.logical_id}Route"),
            "RouteResponseKey": "$default",
        },
    }


def _emit_deployment(api: Api, route_ids: Iterable[str]) -> dict[str, Any]:
    return {
        "Type": "AWS::ApiGatewayV2::Deployment",
        # a deployment of an API without its routes fails: wait for every one
        "DependsOn": sorted(route_ids),
        "Properties": {"ApiId": _ref("Api"), "Description": f"wsgate app {api.name}"},
    }


def _emit_stage(api: Api, deployment_id: str) -> dict[str, Any]:
    return {
        "Type": "AWS::ApiGatewayV2::Stage",
        "Properties": {
            "ApiId": _ref("Api"),
            "StageName": _ref("StageName"),
            "DeploymentId": _ref(deployment_id),
            "Description": f"wsgate app {api.name}",
        },
    }


def _emit_outputs() -> dict[str, Any]:
    host = "${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${StageName}"
    return {
        "WebSocketUrl": {
            "Description": "What clients connect to",
            "Value": _sub(f"wss://{host}"),
        },
        "ConnectionsUrl": {
            "Description": "The @connections management API (boto3's endpoint_url is "
            "this URL without /@connections)",
            "Value": _sub(f"https://{host}/@connections"),
        },
        "ApiId": {"Description": "The WebSocket API's id", "Value": _ref("Api")},
        "TableName": {"Description": "The connections table", "Value": _ref("Table")},
    }
