"""An app with a `$connect` authorizer: its function, role, permission and the
`AWS::ApiGatewayV2::Authorizer` the `$connect` route names (docs/compatibility.md §7)."""

from __future__ import annotations

from typing import Any

from wsgate import App, connections
from wsgate.deploy.permissions import BASE_GRANT
from wsgate.deploy.template import HANDLER, Template, generate


def authorized_app(*sources: str) -> App:
    app = App(name="guarded")

    @app.authorizer(identity_sources=list(sources), simple=True)
    def authorize(event: Any, context: Any) -> bool:
        return True

    @app.route("hello")
    async def hello(event: Any, context: Any) -> None:
        await connections.send(event.connection_id, "hi")

    return app


def template_of(app: App) -> Template:
    template, warnings = generate(app, app_target="app.py")
    assert warnings == ()
    return template


def test_the_connect_route_names_a_request_authorizer() -> None:
    """$connect: CUSTOM with the authorizer; the other routes stay NONE."""
    resources = template_of(authorized_app("route.request.querystring.token"))["Resources"]
    assert resources["ConnectAuthorizer"] == {
        "Type": "AWS::ApiGatewayV2::Authorizer",
        "Properties": {
            "ApiId": {"Ref": "Api"},
            "Name": "ConnectAuthorizer",
            "AuthorizerType": "REQUEST",
            "AuthorizerUri": {
                "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/"
                "2015-03-31/functions/${ConnectAuthorizerFunction.Arn}/invocations"
            },
            "IdentitySource": ["route.request.querystring.token"],
        },
    }
    connect = resources["ConnectRoute"]["Properties"]
    assert connect["AuthorizationType"] == "CUSTOM"
    assert connect["AuthorizerId"] == {"Ref": "ConnectAuthorizer"}
    for name in ("DisconnectRoute", "OnHelloRoute"):
        assert resources[name]["Properties"]["AuthorizationType"] == "NONE"
        assert "AuthorizerId" not in resources[name]["Properties"]


def test_the_authorizer_function_runs_the_adapter_with_its_own_role() -> None:
    """Same handler as every function; invocable from this API's authorizers only; its role
    holds what opening the store needs and nothing of `$connect`'s."""
    resources = template_of(authorized_app())["Resources"]
    function = resources["ConnectAuthorizerFunction"]
    assert function["Properties"]["Handler"] == HANDLER
    assert function["Metadata"]["wsgate"]["authorizer"] == "$connect"
    assert "route" not in function["Metadata"]["wsgate"]
    assert function["Properties"]["Role"] == {"Fn::GetAtt": ["ConnectAuthorizerRole", "Arn"]}
    permission = resources["ConnectAuthorizerPermission"]["Properties"]
    assert permission["SourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
        "${Api}/authorizers/${ConnectAuthorizer}"
    }
    role = resources["ConnectAuthorizerRole"]["Properties"]
    assert role["Description"].startswith("wsgate $connect authorizer: ")
    actions = {
        action
        for statement in role["Policies"][0]["PolicyDocument"]["Statement"]
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
    }
    assert actions == {"logs:CreateLogStream", "logs:PutLogEvents", *BASE_GRANT.table}
    # no identity source: API Gateway invokes it for every client
    assert "IdentitySource" not in resources["ConnectAuthorizer"]["Properties"]


def test_the_deployment_changes_with_the_identity_sources() -> None:
    """The authorizer is part of the routing: a change makes a new Deployment."""

    def deployment(app: App) -> str:
        (name,) = [n for n in template_of(app)["Resources"] if n.startswith("Deployment")]
        return name

    assert deployment(authorized_app("route.request.header.Auth")) != deployment(
        authorized_app("route.request.querystring.token")
    )
