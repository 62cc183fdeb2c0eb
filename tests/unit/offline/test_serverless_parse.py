"""serverless.yml and SAM templates -> AppSpec: variables, events, the SAM graph, errors.

Pure parsing: files in tmp_path, no processes, no network.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from wsgate.exceptions import ConfigError, TargetError
from wsgate.offline.app import OfflineApp, load_app_spec
from wsgate.offline.cloudformation import load_document
from wsgate.offline.environment import gateway_origins, has_credentials
from wsgate.offline.spec import AppSpec, FunctionSpec, RouteSpec, StreamSpec, stream_spec

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "serverless_chat"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def serverless(tmp_path: Path, text: str, stage: str | None = None) -> AppSpec:
    return load_app_spec(write(tmp_path, "serverless.yml", text), stage=stage)


def function(spec: AppSpec, name: str) -> FunctionSpec:
    (found,) = [fn for fn in spec.functions if fn.name == name]
    return found


CHAT = """
service: chat
provider:
  name: aws
  runtime: python3.12
  stage: ${opt:stage, 'dev'}
  region: ${opt:region, "eu-west-1"}
  environment:
    CONNECTIONS_TABLE: ${self:service}-${opt:stage, self:provider.stage}-connections
    STAGE_NAME: ${sls:stage}
functions:
  connect:
    handler: src/handler.connect
    events:
      - websocket: $connect
      - websocket:
          route: $disconnect
  message:
    handler: src/handler.message
    memorySize: 256
    timeout: 10
    environment:
      STAGE_NAME: overridden
      EXTRA: ${env:WSGATE_TEST_EXTRA, 'fallback'}
    events:
      - websocket:
          route: sendMessage
          routeResponseSelectionExpression: $default
  web:
    handler: web.handler
    runtime: nodejs18.x
    events:
      - http: GET /
resources:
  Resources:
    ConnectionsTable:
      Type: AWS::DynamoDB::Table
      Properties:
        TableName: ${self:provider.environment.CONNECTIONS_TABLE}
        AttributeDefinitions: [{AttributeName: connectionId, AttributeType: S}]
        KeySchema: [{AttributeName: connectionId, KeyType: HASH}]
        BillingMode: PAY_PER_REQUEST
"""


# -- serverless.yml ----------------------------------------------------------------------


def test_variables_resolve_with_the_files_own_stage(tmp_path: Path) -> None:
    """`${opt:stage, ...}` falls back without --stage; `${sls:stage}` is provider.stage."""
    spec = serverless(tmp_path, CHAT)
    assert (spec.stage, spec.region, spec.name) == ("dev", "eu-west-1", "dev-chat-websockets")
    connect = function(spec, "connect")
    assert connect.environment == {
        "CONNECTIONS_TABLE": "chat-dev-connections",
        "STAGE_NAME": "dev",
    }
    assert connect.function_name == "chat-dev-connect"
    assert connect.handler == "src/handler.connect"
    assert connect.code_dir == tmp_path.resolve()
    assert spec.tables[0].name == "chat-dev-connections"


def test_the_stage_option_wins_everywhere(tmp_path: Path) -> None:
    spec = serverless(tmp_path, CHAT, stage="prod")
    assert spec.stage == "prod"
    assert function(spec, "connect").environment["CONNECTIONS_TABLE"] == "chat-prod-connections"
    assert function(spec, "connect").environment["STAGE_NAME"] == "prod"
    assert function(spec, "message").function_name == "chat-prod-message"


def test_function_environment_is_merged_over_the_providers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = serverless(tmp_path, CHAT)
    assert function(spec, "message").environment == {
        "CONNECTIONS_TABLE": "chat-dev-connections",
        "STAGE_NAME": "overridden",
        "EXTRA": "fallback",
    }
    monkeypatch.setenv("WSGATE_TEST_EXTRA", "from the environment")
    spec = serverless(tmp_path, CHAT)
    assert function(spec, "message").environment["EXTRA"] == "from the environment"


def test_short_and_long_websocket_events(tmp_path: Path) -> None:
    """Functions without websocket events (here a Node.js http one) are not served."""
    spec = serverless(tmp_path, CHAT)
    assert [fn.name for fn in spec.functions] == ["connect", "message"]
    assert function(spec, "connect").routes == (RouteSpec("$connect"), RouteSpec("$disconnect"))
    assert function(spec, "message").routes == (RouteSpec("sendMessage", two_way=True),)
    assert spec.route_selection == "$request.body.action"


def test_defaults_are_the_serverless_frameworks(tmp_path: Path) -> None:
    """memorySize 1024 and timeout 6 unless the function or the provider says otherwise."""
    spec = serverless(tmp_path, CHAT)
    connect, message = function(spec, "connect"), function(spec, "message")
    assert (connect.memory_size, connect.timeout) == (1024, 6)
    assert (message.memory_size, message.timeout) == (256, 10)
    provider_level = CHAT.replace("  runtime: python3.12", "  runtime: python3.12\n  timeout: 3")
    spec = serverless(tmp_path, provider_level)
    assert (function(spec, "connect").timeout, function(spec, "message").timeout) == (3, 10)


def test_route_selection_expression_and_api_name(tmp_path: Path) -> None:
    text = CHAT.replace(
        "  runtime: python3.12",
        "  runtime: python3.12\n"
        "  websocketsApiName: my-api\n"
        "  websocketsApiRouteSelectionExpression: $request.body.type",
    )
    spec = serverless(tmp_path, text)
    assert (spec.name, spec.route_selection) == ("my-api", "$request.body.type")


def test_nested_variables_files_and_cloudformation(tmp_path: Path) -> None:
    """${file(...)} with a nested variable and a sub-path, Ref/GetAtt/Sub in environment."""
    write(tmp_path, "config/dev.yml", "TABLE: from-file-dev\n")
    write(
        tmp_path,
        "functions/connect.yml",
        """
        handler: handler.connect
        events:
          - websocket: $connect
        """,
    )
    spec = serverless(
        tmp_path,
        """
        service: files
        custom:
          tables:
            dev: ${file(./config/${opt:stage, self:provider.stage}.yml):TABLE}
        provider:
          name: aws
          runtime: python3.12
          stage: dev
          environment:
            TABLE: ${self:custom.tables.${sls:stage}}
            TABLE_REF: !Ref Table
            TABLE_ARN: !GetAtt Table.Arn
            JOINED: !Join [":", [!Ref AWS::Region, "${aws:accountId}", !Ref Table]]
            SUBBED: !Sub "${AWS::Region}/${Table}"
            FUNCTION_ARN: {"Fn::GetAtt": [ConnectLambdaFunction, Arn]}
            FLAG: true
            NUMBER: 5
        functions:
          connect: ${file(./functions/connect.yml)}
        resources:
          Resources:
            Table:
              Type: AWS::DynamoDB::Table
              Properties:
                TableName: ${self:provider.environment.TABLE}
                AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
                KeySchema: [{AttributeName: id, KeyType: HASH}]
        """,
    )
    assert function(spec, "connect").environment == {
        "TABLE": "from-file-dev",
        "TABLE_REF": "from-file-dev",
        "TABLE_ARN": "arn:aws:dynamodb:us-east-1:000000000000:table/from-file-dev",
        "JOINED": "us-east-1:000000000000:from-file-dev",
        "SUBBED": "us-east-1/from-file-dev",
        "FUNCTION_ARN": "arn:aws:lambda:us-east-1:000000000000:function:files-dev-connect",
        "FLAG": "true",
        "NUMBER": "5",
    }
    # No BillingMode and no throughput: on demand.
    assert spec.tables[0].create_params["BillingMode"] == "PAY_PER_REQUEST"


def test_provider_stage_and_region_have_defaults_for_variables(tmp_path: Path) -> None:
    """`${self:provider.stage}` works without provider.stage, as the framework fills it in."""
    spec = serverless(
        tmp_path,
        """
        service: s
        provider: {name: aws, runtime: python3.12}
        functions:
          f:
            handler: h.f
            environment:
              WHERE: ${opt:stage, self:provider.stage}/${self:provider.region}
            events: [{websocket: $default}]
        """,
    )
    assert (spec.stage, spec.region) == ("dev", "us-east-1")
    assert function(spec, "f").environment == {"WHERE": "dev/us-east-1"}


def test_remote_sources_use_their_fallback(tmp_path: Path) -> None:
    spec = serverless(
        tmp_path,
        """
        service: s
        provider: {name: aws, runtime: python3.12}
        functions:
          f:
            handler: h.f
            environment:
              SECRET: ${ssm:/app/secret, 'local-secret'}
            events: [{websocket: $default}]
        """,
    )
    assert function(spec, "f").environment == {"SECRET": "local-secret"}


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        (
            "X: ${self:custom.missing}",
            "functions.f.environment.X: cannot resolve ${self:custom.missing}",
        ),
        ("X: ${env:WSGATE_TEST_UNSET}", "environment variable WSGATE_TEST_UNSET is not set"),
        ("X: ${ssm:/secret}", "ssm:/secret needs AWS and is not available offline"),
        ("X: ${file(./nope.yml)}", "file(./nope.yml) does not exist"),
        ("X: !Ref Nothing", "functions.f.environment.X: cannot resolve {Ref: Nothing}"),
        ("X: ${self:custom.a}", "circular variable reference"),
    ],
)
def test_unresolvable_values_name_the_key_and_the_variable(
    tmp_path: Path, environment: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=r"^serverless\.yml: ") as caught:
        serverless(
            tmp_path,
            f"""
            service: s
            custom:
              a: ${{self:custom.b}}
              b: ${{self:custom.a}}
            provider: {{name: aws, runtime: python3.12}}
            functions:
              f:
                handler: h.f
                environment:
                  {environment}
                events: [{{websocket: $default}}]
            """,
        )
    assert expected in str(caught.value)


def test_a_non_python_runtime_names_the_function(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="function 'connect' uses runtime 'nodejs18.x'"):
        serverless(tmp_path, CHAT.replace("runtime: python3.12", "runtime: nodejs18.x"))
    with pytest.raises(ConfigError, match="function 'connect' has no runtime"):
        serverless(tmp_path, CHAT.replace("  runtime: python3.12\n", ""))


def test_a_route_handled_twice_is_an_error(tmp_path: Path) -> None:
    text = CHAT.replace("route: sendMessage", "route: $disconnect")
    with pytest.raises(
        ConfigError, match="route '\\$disconnect' is already handled by function 'connect'"
    ):
        serverless(tmp_path, text)


def test_no_websocket_function_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no function has a websocket event"):
        serverless(
            tmp_path,
            """
            service: s
            provider: {name: aws, runtime: python3.12}
            functions:
              f: {handler: h.f, events: [{http: GET /}]}
            """,
        )


# -- YAML with CloudFormation tags -------------------------------------------------------


def test_short_tags_load_as_their_long_forms(tmp_path: Path) -> None:
    doc = load_document(
        write(
            tmp_path,
            "t.yaml",
            """
            a: !Ref Thing
            b: !GetAtt Thing.Arn
            c: !Sub "x-${Thing}"
            d: !Join ["/", [a, !Ref B]]
            e: !GetAtt [Thing, StreamArn]
            f: !If [Cond, 1, 2]
            """,
        )
    )
    assert doc == {
        "a": {"Ref": "Thing"},
        "b": {"Fn::GetAtt": ["Thing", "Arn"]},
        "c": {"Fn::Sub": "x-${Thing}"},
        "d": {"Fn::Join": ["/", ["a", {"Ref": "B"}]]},
        "e": {"Fn::GetAtt": ["Thing", "StreamArn"]},
        "f": {"Fn::If": ["Cond", 1, 2]},
    }


# -- SAM / CloudFormation ----------------------------------------------------------------


def test_the_example_template_graph() -> None:
    """Routes -> integrations -> functions; RouteResponse = two-way; Globals under Properties."""
    spec = load_app_spec(EXAMPLE / "template.yaml")
    assert (spec.name, spec.stage, spec.route_selection) == (
        "serverless-chat",
        "dev",
        "$request.body.action",
    )
    routes = {route.key: (fn.name, route.two_way) for fn in spec.functions for route in fn.routes}
    assert routes == {
        "$connect": ("ConnectFunction", False),
        "$disconnect": ("DisconnectFunction", False),
        "onMessage": ("OnMessageFunction", False),
        "$default": ("DefaultFunction", True),
    }
    for fn in spec.functions:
        assert fn.code_dir == EXAMPLE
        assert (fn.runtime, fn.memory_size, fn.timeout) == ("python3.12", 256, 10)
        assert fn.environment == {"CONNECTIONS_TABLE": "serverless-chat-dev-connections"}
    assert [table.name for table in spec.tables] == ["serverless-chat-dev-connections"]


def test_the_example_serverless_yml_matches_the_template() -> None:
    """Both files describe one app: same routes, same handlers, same table."""
    sls = load_app_spec(EXAMPLE / "serverless.yml")
    sam = load_app_spec(EXAMPLE / "template.yaml")

    def shape(spec: AppSpec) -> set[tuple[str, str, bool]]:
        return {(r.key, fn.handler, r.two_way) for fn in spec.functions for r in fn.routes}

    assert shape(sls) == shape(sam)
    assert [t.create_params for t in sls.tables] == [t.create_params for t in sam.tables]
    assert function(sls, "onMessage").timeout == 10
    assert function(sls, "connect").memory_size == 1024


TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  Prefix: {Type: String, Default: app}
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {Name: plain, ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.type}
  Route:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: ping
      Target: !Sub integrations/${Integration}
  Integration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Join
        - ""
        - - "arn:aws:apigateway:"
          - !Ref AWS::Region
          - ":lambda:path/2015-03-31/functions/"
          - !GetAtt Function.Arn
          - /invocations
  Function:
    Type: AWS::Lambda::Function
    Properties:
      FunctionName: !Sub "${Prefix}-ping"
      Handler: pkg/mod.handler
      Runtime: python3.11
      Code: src
      Environment:
        Variables:
          PREFIX: !Ref Prefix
          REGION: !Ref AWS::Region
"""


def test_a_plain_cloudformation_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS::Lambda::Function, Code as a folder, CloudFormation's 128 MB / 3 s, AWS_REGION."""
    (tmp_path / "src").mkdir()
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    spec = load_app_spec(write(tmp_path, "template.yaml", TEMPLATE), stage="live")
    (fn,) = spec.functions
    assert (spec.stage, spec.region, spec.route_selection) == (
        "live",
        "ap-south-1",
        "$request.body.type",
    )
    assert (fn.name, fn.function_name, fn.handler) == ("Function", "app-ping", "pkg/mod.handler")
    assert fn.code_dir == (tmp_path / "src").resolve()
    assert (fn.memory_size, fn.timeout) == (128, 3)
    assert fn.environment == {"PREFIX": "app", "REGION": "ap-south-1"}
    assert fn.routes == (RouteSpec("ping"),)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("ProtocolType: WEBSOCKET", "ProtocolType: HTTP"),
            "no AWS::ApiGatewayV2::Api with ProtocolType WEBSOCKET",
        ),
        (
            ("IntegrationType: AWS_PROXY", "IntegrationType: HTTP_PROXY"),
            "wsgate runs AWS_PROXY Lambda integrations only",
        ),
        (
            ("!GetAtt Function.Arn", '"arn:aws:lambda:us-east-1:1:function:elsewhere"'),
            "does not name a function of this template",
        ),
        (
            ("Runtime: python3.11", "Runtime: nodejs20.x"),
            "function Function uses runtime 'nodejs20.x'",
        ),
        (("Code: src", "Code: {S3Bucket: b, S3Key: k}"), "the code must be a local folder"),
        (
            ("${Integration}", "${Nope}"),
            "Resources.Route.Properties.Target: cannot resolve {Ref: Nope}",
        ),
        (
            ("PREFIX: !Ref Prefix", "PREFIX: !Ref Missing"),
            "Environment.Variables.PREFIX: cannot resolve {Ref: Missing}",
        ),
    ],
)
def test_template_errors_say_what_to_fix(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    (tmp_path / "src").mkdir()
    path = write(tmp_path, "template.yaml", TEMPLATE.replace(*change))
    with pytest.raises(ConfigError, match=r"^template\.yaml: ") as caught:
        load_app_spec(path)
    assert expected in str(caught.value)


def test_neither_kind_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a serverless.yml"):
        load_app_spec(write(tmp_path, "other.yaml", "just: data\n"))
    with pytest.raises(TargetError, match="no such file"):
        load_app_spec(tmp_path / "missing.yml")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_app_spec(write(tmp_path, "bad.yml", "a: [unclosed\n"))


# -- the environment a worker gets (no worker started) -----------------------------------


def test_worker_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lambda's variables; dummy credentials unless `aws` and the user has some; the endpoint."""
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.setenv(name, str(tmp_path / "no-such-file"))
    spec = serverless(tmp_path, CHAT)
    message = function(spec, "message")
    assert not has_credentials()
    with OfflineApp(spec, dynamodb_endpoint="http://127.0.0.1:9") as offline_app:
        offline_app.attach("127.0.0.1", 8123)
        env = offline_app.environment(message)
    assert {key: env[key] for key in env if key in EXPECTED_LAMBDA_ENV} == EXPECTED_LAMBDA_ENV
    assert env["LAMBDA_TASK_ROOT"] == str(tmp_path.resolve())
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"].endswith(
        f"[$LATEST]{env['AWS_LAMBDA_LOG_STREAM_NAME'][-32:]}"
    )
    assert env["WSGATE_GATEWAY_ORIGINS"] == "127.0.0.1:8123,[::1]:8123,localhost:8123"
    assert env["EXTRA"] == "fallback"

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "mine")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "my-secret")
    assert has_credentials()
    with OfflineApp(spec) as offline_app:
        env = offline_app.environment(message)
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == EXPECTED_DUMMY
    with OfflineApp(spec, aws=True) as offline_app:
        env = offline_app.environment(message)
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("mine", "my-secret")
    assert "AWS_ENDPOINT_URL_DYNAMODB" not in env


EXPECTED_DUMMY = ("wsgate-local", "wsgate-local")
EXPECTED_LAMBDA_ENV = {
    "AWS_LAMBDA_FUNCTION_NAME": "chat-dev-message",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/chat-dev-message",
    "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
    "AWS_REGION": "eu-west-1",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
    "_HANDLER": "src/handler.message",
    "TZ": "UTC",
    "AWS_ACCESS_KEY_ID": "wsgate-local",
    "AWS_SECRET_ACCESS_KEY": "wsgate-local",
    "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:9",
    "CONNECTIONS_TABLE": "chat-dev-connections",
    "STAGE_NAME": "overridden",
}


def test_gateway_origins() -> None:
    assert gateway_origins("localhost", 80) == (
        "127.0.0.1",
        "127.0.0.1:80",
        "[::1]",
        "[::1]:80",
        "localhost",
        "localhost:80",
    )
    assert "10.1.2.3:9000" in gateway_origins("10.1.2.3", 9000)
    assert "127.0.0.1:9000" not in gateway_origins("10.1.2.3", 9000)
    assert {"127.0.0.1:9000", "localhost:9000"} <= set(gateway_origins("0.0.0.0", 9000))


STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/messages/stream/2026-12-03T00:00:00.000"


def test_a_stream_source_retries_until_it_succeeds_unless_told() -> None:
    """MaximumRetryAttempts: absent means -1 (Lambda's default: retry until the records
    expire); 0 to 10000 are taken; anything else is an error naming the setting."""
    assert stream_spec(STREAM_ARN, None, None) == StreamSpec("messages", 100, "TRIM_HORIZON", -1)
    assert stream_spec(STREAM_ARN, 10, "LATEST", 3).maximum_retry_attempts == 3
    assert stream_spec(STREAM_ARN, 10, "LATEST", "0").maximum_retry_attempts == 0
    for bad in (-2, 10001, "often", 1.5):
        with pytest.raises(ValueError, match="MaximumRetryAttempts"):
            stream_spec(STREAM_ARN, 10, "LATEST", bad)
