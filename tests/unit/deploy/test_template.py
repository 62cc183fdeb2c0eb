"""App -> CloudFormation: the resources, their wiring, least privilege, determinism.

tests/golden/topics.yaml is `wsgate template examples/topics.py`; after an intended
change, regenerate it with that command (`-o tests/golden/topics.yaml`) and review the diff.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from wsgate import App, ConfigError, connections
from wsgate.deploy.build import logical_id
from wsgate.deploy.package import app_target, build_package
from wsgate.deploy.permissions import BASE_GRANT, grant_for
from wsgate.deploy.template import (
    HANDLER,
    MAX_RESOURCES,
    RUNTIME,
    Template,
    dumps,
    generate,
)
from wsgate.importer import load_app
from wsgate.store import keys

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "tests" / "golden" / "topics.yaml"


def template_of(app: App, **options: Any) -> Template:
    options.setdefault("app_target", "app.py")
    template, _ = generate(app, **options)
    return template


def of_type(template: Template, kind: str) -> dict[str, Any]:
    return {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == f"AWS::{kind}"
    }


def statements(template: Template, role: str) -> list[dict[str, Any]]:
    policy = template["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]
    return list(policy["Statement"])


def two_way_app() -> App:
    app = App(name="chat", route_selection="${request.body.service}/${request.body.action}")

    @app.on_connect
    def connect(event: Any, context: Any) -> None:
        return None

    @app.route("chat/join", return_response=True)
    async def join(event: Any, context: Any) -> str:
        await connections.subscribe(event.connection_id, "room")
        return "joined"

    @app.route("who")
    async def who(event: Any, context: Any) -> None:
        await connections.info(event.connection_id)

    @app.route("kick")
    async def kick(event: Any, context: Any) -> None:
        await connections.disconnect(event.json["id"])

    return app


# -- the golden template ------------------------------------------------------------------


def test_topics_matches_the_golden_file() -> None:
    """`wsgate template examples/topics.py` is exactly tests/golden/topics.yaml."""
    template, warnings = generate(
        load_app(str(ROOT / "examples" / "topics.py")), app_target="topics.py"
    )
    assert warnings == ()
    assert dumps(template) == GOLDEN.read_text()


def test_output_is_deterministic() -> None:
    """Same app, same bytes: an unchanged app never triggers a stack update."""
    first = dumps(template_of(two_way_app()), "json")
    second = dumps(template_of(two_way_app()), "json")
    assert first == second
    assert json.loads(first) == yaml.safe_load(dumps(template_of(two_way_app())))


# -- the resources ------------------------------------------------------------------------


def test_api_routes_and_integrations() -> None:
    """The WebSocket API with its selection expression; a route, integration, function,
    role, log group and invoke permission per route, in a fixed order."""
    template = template_of(two_way_app())
    api = template["Resources"]["Api"]["Properties"]
    assert api["ProtocolType"] == "WEBSOCKET"
    assert api["RouteSelectionExpression"] == "${request.body.service}/${request.body.action}"
    assert api["Name"] == "chat"
    routes = of_type(template, "ApiGatewayV2::Route")
    assert [route["Properties"]["RouteKey"] for route in routes.values()] == [
        "$connect",
        "$disconnect",
        "chat/join",
        "kick",
        "who",
    ]
    for name, route in routes.items():
        base = name.removesuffix("Route")
        assert route["Properties"]["Target"] == {"Fn::Sub": f"integrations/${{{base}Integration}}"}
        integration = template["Resources"][f"{base}Integration"]["Properties"]
        assert integration["IntegrationType"] == "AWS_PROXY"
        assert f"${{{base}Function.Arn}}" in integration["IntegrationUri"]["Fn::Sub"]
        for suffix in ("Function", "Role", "LogGroup", "Permission"):
            assert f"{base}{suffix}" in template["Resources"]
    assert len(of_type(template, "Lambda::Function")) == 5
    assert len(of_type(template, "IAM::Role")) == 5


def test_aws_iam_apps_deploy_with_iam_on_connect_only() -> None:
    """App(authorization="AWS_IAM") deploys $connect with AuthorizationType AWS_IAM (signed
    upgrades only, as the local gateway checks them); the other routes stay NONE."""
    app = App(name="signed", authorization="AWS_IAM")
    app.add_route("$default", lambda event, context: None)
    routes = of_type(template_of(app), "ApiGatewayV2::Route").values()
    kinds = {r["Properties"]["RouteKey"]: r["Properties"]["AuthorizationType"] for r in routes}
    assert kinds == {"$connect": "AWS_IAM", "$disconnect": "NONE", "$default": "NONE"}


def test_connect_and_disconnect_always_exist() -> None:
    """Without handlers for them, $connect and $disconnect still get functions: the
    adapter writes and removes the connection item there, which broadcast reads."""
    app = App(name="bare")
    app.add_route("$default", lambda event, context: None)
    template = template_of(app)
    keys = [r["Properties"]["RouteKey"] for r in of_type(template, "ApiGatewayV2::Route").values()]
    assert keys == ["$connect", "$disconnect", "$default"]
    connect = {s["Sid"]: s for s in statements(template, "ConnectRole")}
    assert "dynamodb:PutItem" in connect["ConnectionsTable"]["Action"]
    disconnect = {s["Sid"]: s for s in statements(template, "DisconnectRole")}
    assert disconnect["ConnectionsTableIndex"]["Action"] == ["dynamodb:Query"]
    assert "no handler" in template["Resources"]["ConnectFunction"]["Metadata"]["wsgate"]["handler"]


def test_two_way_routes_get_a_route_response() -> None:
    """return_response=True: RouteResponseSelectionExpression $default plus a $default
    route response (docs/compatibility.md §4.2); other routes have neither."""
    template = template_of(two_way_app())
    responses = of_type(template, "ApiGatewayV2::RouteResponse")
    assert list(responses) == [f"{logical_id('chat/join')}RouteResponse"]
    (response,) = responses.values()
    assert response["Properties"]["RouteResponseKey"] == "$default"
    assert response["Properties"]["RouteId"] == {"Ref": f"{logical_id('chat/join')}Route"}
    for route in of_type(template, "ApiGatewayV2::Route").values():
        two_way = route["Properties"]["RouteKey"] == "chat/join"
        assert ("RouteResponseSelectionExpression" in route["Properties"]) == two_way
        if two_way:
            assert route["Properties"]["RouteResponseSelectionExpression"] == "$default"


def test_functions_follow_the_adapter_contract() -> None:
    """Handler, runtime, WSGATE_APP and WSGATE_TABLE, the code zip from the parameters."""
    template = template_of(two_way_app(), app_target="chat.py:app")
    for name, function in of_type(template, "Lambda::Function").items():
        properties = function["Properties"]
        assert properties["Handler"] == HANDLER == "wsgate.aws.lambda_handler.handler"
        assert properties["Runtime"] == RUNTIME == "python3.12"
        assert properties["Environment"]["Variables"] == {
            "WSGATE_APP": "chat.py:app",
            "WSGATE_TABLE": {"Ref": "Table"},
        }
        assert properties["Code"] == {
            "S3Bucket": {"Ref": "CodeBucket"},
            "S3Key": {"Ref": "CodeKey"},
        }
        base = name.removesuffix("Function")
        assert properties["Role"] == {"Fn::GetAtt": [f"{base}Role", "Arn"]}
        assert properties["LoggingConfig"] == {"LogGroup": {"Ref": f"{base}LogGroup"}}
        permission = template["Resources"][f"{base}Permission"]["Properties"]
        assert permission["Principal"] == "apigateway.amazonaws.com"
        route_key = function["Metadata"]["wsgate"]["route"]
        assert permission["SourceArn"]["Fn::Sub"].endswith(f":${{Api}}/${{StageName}}/{route_key}")


def test_table_layout_matches_the_store() -> None:
    """store/keys.py's layout, on-demand billing, TTL on `ttl`."""
    table = template_of(two_way_app())["Resources"]["Table"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == {
        "AttributeName": keys.TTL_ATTRIBUTE,
        "Enabled": True,
    }
    assert table["KeySchema"] == [
        {"AttributeName": keys.PARTITION_KEY, "KeyType": "HASH"},
        {"AttributeName": keys.SORT_KEY, "KeyType": "RANGE"},
    ]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == keys.GSI_NAME
    assert index["KeySchema"] == [
        {"AttributeName": keys.GSI_PARTITION_KEY, "KeyType": "HASH"},
        {"AttributeName": keys.GSI_SORT_KEY, "KeyType": "RANGE"},
    ]
    assert "ProvisionedThroughput" not in table


def test_stage_deployment_and_outputs() -> None:
    """A deployment after every route, the stage on it, the two URLs as outputs."""
    template = template_of(two_way_app(), stage="prod")
    assert template["Parameters"]["StageName"]["Default"] == "prod"
    (deployment_id, deployment), *_ = of_type(template, "ApiGatewayV2::Deployment").items()
    routes = [
        *of_type(template, "ApiGatewayV2::Route"),
        *of_type(template, "ApiGatewayV2::RouteResponse"),
    ]
    assert deployment["DependsOn"] == sorted(routes)
    stage = template["Resources"]["Stage"]["Properties"]
    assert stage["DeploymentId"] == {"Ref": deployment_id}
    assert stage["StageName"] == {"Ref": "StageName"}
    outputs = template["Outputs"]
    assert outputs["WebSocketUrl"]["Value"]["Fn::Sub"].startswith("wss://${Api}.execute-api.")
    assert outputs["WebSocketUrl"]["Value"]["Fn::Sub"].endswith("/${StageName}")
    assert outputs["ConnectionsUrl"]["Value"]["Fn::Sub"].startswith("https://${Api}.")
    assert outputs["ConnectionsUrl"]["Value"]["Fn::Sub"].endswith("/${StageName}/@connections")


def test_a_new_deployment_only_when_routing_changes() -> None:
    """The Deployment's name hashes the routing: handlers' code and the stage do not
    change it, a new route does."""

    def deployment(template: Template) -> str:
        (name,) = of_type(template, "ApiGatewayV2::Deployment")
        return name

    base = deployment(template_of(two_way_app()))
    assert deployment(template_of(two_way_app(), stage="prod")) == base
    app = two_way_app()
    app.add_route("$default", lambda event, context: None)
    assert deployment(template_of(app)) != base


# -- least privilege ----------------------------------------------------------------------


def test_each_role_holds_what_its_handler_uses() -> None:
    """$connect: the base and PutItem; info: GET; disconnect: DELETE; subscribe: no
    @connections at all."""
    template = template_of(two_way_app())

    def grant(route_key: str) -> dict[str, Any]:
        found = {
            statement["Sid"]: statement
            for statement in statements(template, f"{logical_id(route_key)}Role")
        }
        return found

    connect = grant("$connect")
    assert set(connect) == {"Logs", "ConnectionsTable"}
    assert connect["ConnectionsTable"]["Action"] == sorted(grant_for("$connect", ()).table)
    join = grant("chat/join")
    assert "ManageConnections" not in join
    assert "dynamodb:ConditionCheckItem" in join["ConnectionsTable"]["Action"]
    (who,) = grant("who")["ManageConnections"]["Resource"]
    assert who["Fn::Sub"].endswith("${Api}/${StageName}/GET/@connections/*")
    (kick,) = grant("kick")["ManageConnections"]["Resource"]
    assert kick["Fn::Sub"].endswith("${Api}/${StageName}/DELETE/@connections/*")


def test_no_statement_allows_everything() -> None:
    """Every resource is this stack's table, its index, its API's stage or a log group."""
    template = template_of(two_way_app(), full_permissions=True)
    for role in of_type(template, "IAM::Role"):
        for statement in statements(template, role):
            assert statement["Effect"] == "Allow"
            resources = statement["Resource"]
            for resource in resources if isinstance(resources, list) else [resources]:
                text = json.dumps(resource)
                assert text != '"*"'
                assert any(
                    anchor in text
                    for anchor in (
                        '["Table", "Arn"]',
                        "${Table.Arn}/index/*",
                        "${Api}/${StageName}/",
                        "LogGroup",
                    )
                ), text
            actions = statement["Action"]
            for action in actions if isinstance(actions, list) else [actions]:
                assert "*" not in action


def test_full_permissions_and_warnings() -> None:
    """--full-permissions grants every operation; opaque handlers warn; binary warns."""
    app = App(name="opaque", binary="base64")

    @app.default
    def default(event: Any, context: Any) -> None:
        getattr(connections, event.json["op"])(event.connection_id, "x")

    template, warnings = generate(app, app_target="app.py")
    assert any("route '$default'" in warning and "getattr" in warning for warning in warnings)
    assert any("binary" in warning for warning in warnings)
    metadata = template["Resources"]["DefaultFunction"]["Metadata"]["wsgate"]
    assert metadata["analysed"] is False
    assert len(metadata["connections"]) == 7
    everything = template_of(two_way_app(), full_permissions=True)
    for name, function in of_type(everything, "Lambda::Function").items():
        if function["Metadata"]["wsgate"]["route"] == "$disconnect":
            continue  # no handler in this app: nothing could call wsgate.connections
        assert function["Metadata"]["wsgate"]["analysed"] is False
        sids = {s["Sid"] for s in statements(everything, name.replace("Function", "Role"))}
        assert sids == {"Logs", "ConnectionsTable", "ConnectionsTableIndex", "ManageConnections"}
    assert BASE_GRANT.table <= set(statements(everything, "ConnectRole")[1]["Action"])


# -- names and limits ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("$connect", "Connect"),
        ("$disconnect", "Disconnect"),
        ("$default", "Default"),
        ("sendMessage", "OnSendMessage"),
        ("whoAmI", "OnWhoAmI"),
        ("connect", "OnConnect"),
        ("message2", "OnMessage2"),
    ],
)
def test_logical_ids(key: str, expected: str) -> None:
    """Readable, stable names: the route key in CamelCase."""
    assert logical_id(key) == expected


def test_ambiguous_keys_get_a_hash() -> None:
    """Keys that would collide once cleaned up get distinct, alphanumeric names."""
    keys_ = [
        "sendMessage",
        "SendMessage",
        "send-message",
        "send message",
        "send_message",
        "x" * 300,
    ]
    names = [logical_id(key) for key in keys_]
    assert len(set(names)) == len(names)
    assert all(name.isalnum() and len(name) <= 200 for name in names)
    assert names[1].startswith("OnSendMessage") and len(names[1]) == len("OnSendMessage") + 8


def test_route_keys_are_literal_in_fn_sub() -> None:
    """A route key containing `${` stays literal in the invoke permission's ARN."""
    app = App(name="odd")
    app.add_route("a${weird}", lambda event, context: None)
    permission = template_of(app)["Resources"][f"{logical_id('a${weird}')}Permission"]
    assert permission["Properties"]["SourceArn"]["Fn::Sub"].endswith("/a${!weird}")


def test_errors() -> None:
    """No routes, a bad stage name, or more resources than a stack holds."""
    with pytest.raises(ConfigError, match="no routes"):
        template_of(App(name="empty"))
    app = App(name="one")
    app.add_route("$default", lambda event, context: None)
    with pytest.raises(ConfigError, match="stage"):
        template_of(app, stage="not a stage")
    with pytest.raises(ConfigError, match="format"):
        dumps(template_of(app), "toml")
    many = App(name="many")
    for number in range(MAX_RESOURCES // 6 + 1):
        many.add_route(f"r{number}", lambda event, context: None)
    with pytest.raises(ConfigError, match="resources"):
        template_of(many)


# -- the code zip the template's CodeBucket / CodeKey point at -----------------------------

APP_SOURCE = """
from wsgate import App, connections

app = App(name="zipped")


@app.default
async def default(event, context):
    await connections.send(event.connection_id, event["body"])
"""


def test_zip_is_deterministic_and_holds_only_the_runtime(tmp_path: Path) -> None:
    """The app's folder without caches, virtualenvs or hidden folders, plus wsgate's
    runtime modules (not server/, cli/, deploy/); fixed timestamps and modes, same bytes."""
    (tmp_path / "app.py").write_text(APP_SOURCE)
    (tmp_path / "data.json").write_text("{}")
    for junk in ("__pycache__/app.cpython-311.pyc", ".git/config", "venv/pyvenv.cfg"):
        (tmp_path / junk).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / junk).write_text("junk")
    target = str(tmp_path / "app.py")
    app = load_app(target)
    package = build_package(target, app)
    assert package == build_package(target, app)
    assert package.warnings == ()
    app_files = [name for name in package.files if not name.startswith("wsgate/")]
    assert app_files == ["app.py", "data.json"]
    runtime = {name for name in package.files if name.startswith("wsgate/")}
    for needed in (
        "wsgate/__init__.py",
        "wsgate/app.py",
        "wsgate/connection_api.py",
        "wsgate/context.py",
        "wsgate/exceptions.py",
        "wsgate/core/routing.py",
        "wsgate/store/__init__.py",
        "wsgate/store/base.py",
        "wsgate/store/keys.py",
        "wsgate/store/dynamodb.py",
        "wsgate/aws/lambda_handler.py",
    ):
        assert needed in runtime
    for absent in ("wsgate/server/", "wsgate/cli/", "wsgate/deploy/", "wsgate/store/sqlite.py"):
        assert not any(name.startswith(absent) for name in runtime)
    with zipfile.ZipFile(io.BytesIO(package.data)) as archive:
        infos = archive.infolist()
    assert [info.filename for info in infos] == list(package.files)
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {info.external_attr >> 16 for info in infos} == {0o100644}
    assert app_target(target) == "app.py" and app_target(f"{target}:app") == "app.py:app"


def test_module_targets_bring_their_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pkg.module:app`: the top-level package at the zip's root, WSGATE_APP unchanged."""
    name = f"wsgate_zip_{uuid.uuid4().hex[:8]}"
    (tmp_path / name / "sub").mkdir(parents=True)
    (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / name / "sub" / "__init__.py").write_text("")
    (tmp_path / name / "sub" / "chat.py").write_text(APP_SOURCE)
    (tmp_path / "unrelated.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    target = f"{name}.sub.chat:app"
    package = build_package(target, load_app(target))
    app_files = [file for file in package.files if not file.startswith("wsgate/")]
    assert app_files == [f"{name}/__init__.py", f"{name}/sub/__init__.py", f"{name}/sub/chat.py"]
    assert app_target(target) == target


def test_an_app_folder_with_its_own_wsgate_is_refused(tmp_path: Path) -> None:
    """A `wsgate/` next to the app would shadow the runtime in the zip."""
    (tmp_path / "app.py").write_text(APP_SOURCE)
    (tmp_path / "wsgate").mkdir()
    (tmp_path / "wsgate" / "__init__.py").write_text("")
    target = str(tmp_path / "app.py")
    with pytest.raises(ConfigError, match="shadow"):
        build_package(target, load_app(target))
