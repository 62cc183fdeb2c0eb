"""`wsgate serve serverless.yml|template.yaml` runs apps as people already wrote them.

Each test writes a small serverless.yml or SAM app, serves it on a real gateway with its
functions in function processes, and drives it with the websockets client and boto3.
DynamoDB is a moto server over HTTP: the one wsgate starts by default, or the session's.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from websockets.exceptions import InvalidStatus

from tests.conftest import TIMEOUT, recv, run_gateway, ws_connect
from tests.moto_server import isolate_aws_config
from wsgate.exceptions import ConfigError
from wsgate.offline.app import OfflineApp, open_offline_app
from wsgate.offline.spec import StreamSpec
from wsgate.server import Server

RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def serve_functions(path: Path, **options: Any) -> Iterator[tuple[OfflineApp, Server]]:
    """The functions of `path` on a gateway, as `wsgate serve` runs them."""
    with open_offline_app(path, **options) as offline_app:
        with run_gateway(
            offline_app.app, stage=offline_app.stage, api_id=offline_app.api_id
        ) as server:
            offline_app.attach(server.host, server.port)
            yield offline_app, server


def write_app(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip())


def ask(ws: Any, action: str, **fields: Any) -> Any:
    ws.send(json.dumps({"action": action, **fields}))
    reply = recv(ws)
    assert isinstance(reply, str)
    return json.loads(reply)


@pytest.fixture(autouse=True)
def _no_developer_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_aws_config(monkeypatch, tmp_path)


# -- 0. local by default ---------------------------------------------------------------------

TABLE_YML = f"""
service: notes
provider:
  name: aws
  runtime: {RUNTIME}
  environment:
    TABLE: ${{self:service}}-${{sls:stage}}-notes
functions:
  connect:
    handler: handler.connect
    events: [{{websocket: $connect}}]
  note:
    handler: handler.note
    events:
      - websocket: {{route: note, routeResponseSelectionExpression: $default}}
resources:
  Resources:
    NotesTable:
      Type: AWS::DynamoDB::Table
      Properties:
        TableName: ${{self:provider.environment.TABLE}}
        BillingMode: PAY_PER_REQUEST
        AttributeDefinitions: [{{AttributeName: id, AttributeType: S}}]
        KeySchema: [{{AttributeName: id, KeyType: HASH}}]
"""

TABLE_PY = """
import json
import os

import boto3

table = boto3.resource("dynamodb").Table(os.environ["TABLE"])  # no endpoint, as on AWS


def connect(event, context):
    return {"statusCode": 200}


def note(event, context):
    table.put_item(Item={"id": json.loads(event["body"])["id"]})
    return {"statusCode": 200, "body": json.dumps({
        "endpoint": os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"),
        "key": os.environ.get("AWS_ACCESS_KEY_ID"),
        "token": os.environ.get("AWS_SESSION_TOKEN"),
        "is_offline": os.environ.get("IS_OFFLINE"),
    })}
"""


def test_handlers_get_a_local_dynamodb_and_placeholder_credentials_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --dynamodb-endpoint: a moto server with the declared table; the user's own
    credentials never reach the handlers; the server stops with the app."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALLOOKINGKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "real-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "real-token")
    write_app(tmp_path, {"serverless.yml": TABLE_YML, "handler.py": TABLE_PY})
    with serve_functions(tmp_path / "serverless.yml") as (offline_app, server):
        local = offline_app.local_dynamodb
        assert local is not None
        with ws_connect(server.url) as ws:
            seen = ask(ws, "note", id="n1")
        assert seen == {
            "endpoint": local.endpoint,
            "key": "wsgate-local",
            "token": None,
            "is_offline": "true",
        }
        client = boto3.client(
            "dynamodb",
            endpoint_url=local.endpoint,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        items = client.scan(TableName="notes-dev-notes")["Items"]
        assert items == [{"id": {"S": "n1"}}]
        pid = local.pid()
        assert pid is not None
    assert not pid_alive(pid)


def test_dynamodb_endpoint_is_used_instead_of_a_local_one(
    tmp_path: Path, moto_endpoint: str
) -> None:
    write_app(tmp_path, {"serverless.yml": TABLE_YML, "handler.py": TABLE_PY})
    with serve_functions(tmp_path / "serverless.yml", dynamodb_endpoint=moto_endpoint) as (
        offline_app,
        server,
    ):
        assert offline_app.local_dynamodb is None
        with ws_connect(server.url) as ws:
            assert ask(ws, "note", id="n2")["endpoint"] == moto_endpoint


def test_aws_gives_the_handlers_the_users_account_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """--aws: no local DynamoDB, the user's credentials (no AWS call is made here)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUSERKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "user-secret")
    write_app(tmp_path, {"serverless.yml": TABLE_YML, "handler.py": TABLE_PY})
    caplog.set_level(logging.INFO, "wsgate.offline")
    with open_offline_app(tmp_path / "serverless.yml", aws=True) as offline_app:
        assert offline_app.local_dynamodb is None
        env = offline_app.environment(offline_app.spec.functions[1])
    assert env["AWS_ACCESS_KEY_ID"] == "AKIAUSERKEY"
    assert "AWS_ENDPOINT_URL_DYNAMODB" not in env
    assert "--aws: the functions of serverless.yml use your AWS account" in caplog.text


def run_cli(*args: str, blocked: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`wsgate ARGS` in a fresh interpreter in which the `blocked` modules cannot be imported."""
    block = "".join(f"sys.modules[{name!r}] = None; " for name in blocked)
    code = f"import sys; {block}from wsgate.cli import main; sys.argv[0] = 'wsgate'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=4 * TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_a_base_install_names_the_extra_to_install(tmp_path: Path) -> None:
    """No PyYAML (or no moto): one line with the extra, no traceback."""
    write_app(tmp_path, {"serverless.yml": TABLE_YML, "handler.py": TABLE_PY})
    target = str(tmp_path / "serverless.yml")
    for blocked, named in ((("yaml",), "PyYAML"), (("moto",), "moto[server]")):
        result = run_cli("serve", target, "--port", "0", blocked=blocked)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert named in lines[0] and "pip install 'wsgate[offline]'" in lines[0]
    result = run_cli("serve", "--lambda", "--port", "0", blocked=("boto3",))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: --lambda sends over the @connections API with boto3: pip install 'wsgate[aws]'"
    )


# -- 2. $connect returning {} or nothing -----------------------------------------------------

CONNECT_PY = """
def connect(event, context):
    query = event.get("queryStringParameters") or {}
    if "empty" in query:
        return {}
    if "deny" in query:
        return {"statusCode": 403}
    return None


def echo(event, context):
    return {"statusCode": 200, "body": event["body"]}
"""

CONNECT_YML = f"""
service: lax
provider: {{name: aws, runtime: {RUNTIME}}}
functions:
  connect:
    handler: app.connect
    events: [{{websocket: $connect}}]
  echo:
    handler: app.echo
    events: [{{websocket: {{route: $default, routeResponseSelectionExpression: $default}}}}]
"""

#: The start of a Lambda integration's IntegrationUri.
INVOKE = "arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions"

CONNECT_SAM = f"""
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: {RUNTIME}
    CodeUri: src/
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: lax
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: $request.body.action
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: $connect
      Target: !Sub integrations/${{ConnectIntegration}}
  ConnectIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub {INVOKE}/${{ConnectFunction.Arn}}/invocations
  DefaultRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: $default
      Target: !Sub integrations/${{DefaultIntegration}}
  DefaultResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties:
      ApiId: !Ref Api
      RouteId: !Ref DefaultRoute
      RouteResponseKey: $default
  DefaultIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub {INVOKE}/${{EchoFunction.Arn}}/invocations
  ConnectFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.connect
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.echo
"""


@pytest.fixture(params=["serverless.yml", "template.yaml"])
def connect_app(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "serverless.yml":
        write_app(tmp_path, {"serverless.yml": CONNECT_YML, "app.py": CONNECT_PY})
    else:
        write_app(tmp_path, {"template.yaml": CONNECT_SAM, "src/app.py": CONNECT_PY})
    return tmp_path / str(request.param)


def test_connect_returning_nothing_or_no_status_code_accepts(
    connect_app: Path, moto_endpoint: str
) -> None:
    """`None` and `{}` accept, as serverless-offline does; a status still refuses."""
    with serve_functions(connect_app, dynamodb_endpoint=moto_endpoint) as (_, server):
        for query in ("", "?empty=1"):
            with ws_connect(server.url + query) as ws:
                ws.send("hi")
                assert recv(ws) == "hi"
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(server.url + "?deny=1")
        assert refused.value.response.status_code == 403


def test_strict_connect_result_makes_them_502s(
    connect_app: Path, moto_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    with serve_functions(
        connect_app, dynamodb_endpoint=moto_endpoint, strict_connect_result=True
    ) as (_, server):
        for query in ("", "?empty=1"):
            with pytest.raises(InvalidStatus) as refused:
                ws_connect(server.url + query)
            assert refused.value.response.status_code == 502
    assert "MalformedProxyResponse: $connect returned {}" in caplog.text


# -- 1. the API's own endpoint ---------------------------------------------------------------

ENDPOINT_PY = """
import json
import os

import boto3


def connect(event, context):
    return {"statusCode": 200}


def push(event, context):
    body = json.loads(event["body"])
    style = body["style"]
    if style == "env":  # the endpoint the template builds from the API id
        client = boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["ENDPOINT"])
    elif style == "hard-coded":  # the deployed API's id and stage, written in the code
        client = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url="https://x1y2z3w4v5.execute-api.eu-west-1.amazonaws.com/production",
        )
    else:  # AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI
        client = boto3.client("apigatewaymanagementapi")
    me = event["requestContext"]["connectionId"]
    client.post_to_connection(ConnectionId=me, Data=json.dumps({
        "style": style,
        "apiId": event["requestContext"]["apiId"],
        "endpoint": os.environ["ENDPOINT"],
    }).encode())
    return {"statusCode": 200}
"""

ENDPOINT_YML = f"""
service: endpoints
provider:
  name: aws
  runtime: {RUNTIME}
  region: eu-west-1
  environment:
    ENDPOINT:
      Fn::Join:
        - ''
        - - 'https://'
          - Ref: WebsocketsApi
          - '.execute-api.'
          - Ref: AWS::Region
          - '.amazonaws.com/'
          - '${{sls:stage}}'
functions:
  connect:
    handler: app.connect
    events: [{{websocket: $connect}}]
  push:
    handler: app.push
    events: [{{websocket: push}}]
"""

ENDPOINT_SAM = (
    CONNECT_SAM.replace(
        "Resources:",
        """Parameters:
  Stage:
    Type: String
    Default: prod
Resources:
  ApiStage:
    Type: AWS::ApiGatewayV2::Stage
    Properties:
      ApiId: !Ref Api
      StageName: !Ref Stage""",
        1,
    )
    .replace(
        "RouteKey: $default",
        "RouteKey: push",  # one-way: the handler's post is the only reply
    )
    .replace(
        """  DefaultResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties:
      ApiId: !Ref Api
      RouteId: !Ref DefaultRoute
      RouteResponseKey: $default
""",
        "",
    )
    .replace(
        "Handler: app.echo",
        "Handler: app.push\n"
        "      Environment:\n"
        "        Variables:\n"
        '          ENDPOINT: !Sub "https://${Api}.execute-api.${AWS::Region}.amazonaws.com/${Stage}"',
    )
)


@pytest.mark.parametrize("config", ["serverless.yml", "template.yaml"])
def test_management_calls_to_the_apis_own_endpoint_reach_the_gateway(
    config: str, tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Ref` to the API (and `WebsocketsApi`), a hard-coded execute-api URL, and a client
    without an endpoint all post to the local gateway; apiId is the local API's id."""
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    if config == "serverless.yml":
        write_app(tmp_path, {"serverless.yml": ENDPOINT_YML, "app.py": ENDPOINT_PY})
        stage = "dev"
    else:
        write_app(tmp_path, {"template.yaml": ENDPOINT_SAM, "src/app.py": ENDPOINT_PY})
        stage = "prod"
    with serve_functions(tmp_path / config, dynamodb_endpoint=moto_endpoint) as (
        offline_app,
        server,
    ):
        api_id = offline_app.api_id
        assert len(api_id) == 10 and api_id.isalnum()
        assert server.url.endswith(f"/{stage}")
        with ws_connect(server.url) as ws:
            for style in ("env", "hard-coded", "default"):
                ws.send(json.dumps({"action": "push", "style": style}))
                assert json.loads(recv(ws)) == {
                    "style": style,
                    "apiId": api_id,
                    "endpoint": f"https://{api_id}.execute-api.eu-west-1.amazonaws.com/{stage}",
                }
    # The same file gets the same id on every run.
    with open_offline_app(tmp_path / config, dynamodb_endpoint=moto_endpoint) as again:
        assert again.api_id == api_id


# -- 3. variables and parameters -------------------------------------------------------------

ENV_PY = """
import json
import os


def connect(event, context):
    return {"statusCode": 200}


def env(event, context):
    names = json.loads(event["body"])["names"]
    return {"statusCode": 200, "body": json.dumps({name: os.environ.get(name) for name in names})}
"""

VARIABLES_YML = f"""
service: vars
plugins: [serverless-pseudo-parameters]
provider:
  name: aws
  runtime: {RUNTIME}
  stage: ${{opt:stage, 'staging'}}
  environment:
    TOKEN: ${{param:token}}
    SECRET: ${{ssm:/vars/secret}}
    FROM_ENV: ${{env:VARS_FROM_ENV}}
    GREETING: ${{file(./config.yml):greeting}}
    STAGE: ${{sls:stage}}
    ACCOUNT_QUEUE: https://sqs.#{{AWS::Region}}.amazonaws.com/#{{AWS::AccountId}}/jobs
    TABLE_ARN: '#{{NotesTable.Arn}}'
functions:
  connect:
    handler: app.connect
    events: [{{websocket: $connect}}]
  env:
    handler: app.env
    events: [{{websocket: {{route: env, routeResponseSelectionExpression: $default}}}}]
resources:
  Conditions:
    IsProd: {{Fn::Equals: ['${{sls:stage}}', prod]}}
  Resources:
    NotesTable:
      Type: AWS::DynamoDB::Table
      Properties:
        TableName: vars-notes
        BillingMode: PAY_PER_REQUEST
        AttributeDefinitions: [{{AttributeName: id, AttributeType: S}}]
        KeySchema: [{{AttributeName: id, KeyType: HASH}}]
    ProdOnlyTable:
      Type: AWS::DynamoDB::Table
      Condition: IsProd
      Properties:
        TableName: vars-prod-only
        BillingMode: PAY_PER_REQUEST
        AttributeDefinitions: [{{AttributeName: id, AttributeType: S}}]
        KeySchema: [{{AttributeName: id, KeyType: HASH}}]
"""

VARIABLE_NAMES = [
    "TOKEN",
    "SECRET",
    "FROM_ENV",
    "GREETING",
    "STAGE",
    "ACCOUNT_QUEUE",
    "TABLE_ARN",
    "IS_OFFLINE",
]


def test_serverless_variables_params_and_pseudo_parameters(
    tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`${param:}` and `${ssm:}` from --param, `${env:}`, `${file()}`, `${opt:stage}`'s
    fallback, `#{...}` of serverless-pseudo-parameters, a resource under a false Condition."""
    monkeypatch.setenv("VARS_FROM_ENV", "from the shell")
    write_app(
        tmp_path,
        {"serverless.yml": VARIABLES_YML, "app.py": ENV_PY, "config.yml": "greeting: hello\n"},
    )
    path = tmp_path / "serverless.yml"
    with pytest.raises(ConfigError) as missing:
        open_offline_app(path, dynamodb_endpoint=moto_endpoint, parameters=["token=t0k"])
    assert "--param 'ssm:/vars/secret=VALUE'" in str(missing.value)
    with serve_functions(
        path, dynamodb_endpoint=moto_endpoint, parameters=["token=t0k", "ssm:/vars/secret=s3cr3t"]
    ) as (offline_app, server):
        assert [table.name for table in offline_app.spec.tables] == ["vars-notes"]
        with ws_connect(server.url) as ws:
            seen = ask(ws, "env", names=VARIABLE_NAMES)
    assert seen == {
        "TOKEN": "t0k",
        "SECRET": "s3cr3t",
        "FROM_ENV": "from the shell",
        "GREETING": "hello",
        "STAGE": "staging",
        "ACCOUNT_QUEUE": "https://sqs.us-east-1.amazonaws.com/000000000000/jobs",
        "TABLE_ARN": "arn:aws:dynamodb:us-east-1:000000000000:table/vars-notes",
        "IS_OFFLINE": "true",
    }


PARAMETERS_SAM = (
    CONNECT_SAM.replace(
        "Resources:",
        """Parameters:
  Environment:
    Type: String
  Suffix:
    Type: String
    Default: default-suffix
  Owner:
    Type: String
    Default: nobody
Conditions:
  IsProd: !Equals [!Ref Environment, prod]
  IsNotProd: !Not [!Condition IsProd]
  IsStagingOwnedByMe: !And [!Condition IsNotProd, !Equals [!Ref Owner, me]]
  Either: !Or [!Condition IsProd, !Condition IsStagingOwnedByMe]
Resources:
  ProdTable:
    Type: AWS::DynamoDB::Table
    Condition: IsProd
    Properties:
      TableName: prod-table
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]""",
        1,
    )
    .replace(
        "    CodeUri: src/",
        """    CodeUri: src/
    Environment:
      Variables:
        SUFFIX: !Ref Suffix
        MODE: !If [IsProd, production, development]
        EITHER: !If [Either, "yes", "no"]
        DROPPED: !If [IsProd, set, !Ref AWS::NoValue]
        STACK: !Sub "${AWS::StackName}/${AWS::AccountId}/${AWS::Region}\"""",
    )
    .replace("RouteKey: $default", "RouteKey: env")
    .replace("Handler: app.echo", "Handler: app.env")
)

SAMCONFIG = """
version = 0.1
[default.global.parameters]
stack_name = "my-stack"
[default.deploy.parameters]
region = "eu-north-1"
parameter_overrides = "Environment=staging Suffix=from-samconfig"
"""


def test_sam_parameters_samconfig_and_conditions(tmp_path: Path, moto_endpoint: str) -> None:
    """samconfig.toml's stack_name, region and parameter_overrides; --parameter-overrides
    over them; Conditions with Fn::If, Fn::Equals/Not/And/Or; AWS::NoValue; Globals."""
    write_app(tmp_path, {"template.yaml": PARAMETERS_SAM, "src/app.py": ENV_PY})
    names = ["SUFFIX", "MODE", "EITHER", "DROPPED", "STACK", "IS_OFFLINE"]
    path = tmp_path / "template.yaml"
    with pytest.raises(ConfigError) as missing:
        open_offline_app(path, dynamodb_endpoint=moto_endpoint)
    assert "--parameter-overrides Environment=VALUE" in str(missing.value)
    (tmp_path / "samconfig.toml").write_text(SAMCONFIG)
    with serve_functions(path, dynamodb_endpoint=moto_endpoint, parameters=["Owner=me"]) as (
        offline_app,
        server,
    ):
        assert offline_app.spec.tables == ()  # ProdTable's condition is false
        with ws_connect(server.url) as ws:
            seen = ask(ws, "env", names=names)
    assert seen == {
        "SUFFIX": "from-samconfig",
        "MODE": "development",
        "EITHER": "yes",
        "DROPPED": None,
        "STACK": "my-stack/000000000000/eu-north-1",
        "IS_OFFLINE": "true",
    }
    with open_offline_app(
        path, dynamodb_endpoint=moto_endpoint, parameters=["Environment=prod", "Suffix=cli"]
    ) as prod:
        env = prod.environment(prod.spec.functions[1])
        assert [table.name for table in prod.spec.tables] == ["prod-table"]
    assert (env["SUFFIX"], env["MODE"], env["DROPPED"]) == ("cli", "production", "set")


# -- 4. Python versions ----------------------------------------------------------------------


def test_an_older_python_is_a_note_and_a_newer_one_a_warning(
    tmp_path: Path, moto_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "wsgate.offline")
    for runtime in ("python3.8", "python3.99"):
        write_app(
            tmp_path,
            {"serverless.yml": CONNECT_YML.replace(RUNTIME, runtime), "app.py": CONNECT_PY},
        )
        with open_offline_app(tmp_path / "serverless.yml", dynamodb_endpoint=moto_endpoint):
            pass
    here = f"python{sys.version_info.major}.{sys.version_info.minor}"
    notes = [(r.levelname, r.getMessage()) for r in caplog.records if "declares" in r.getMessage()]
    assert notes == [
        ("INFO", f"serverless.yml declares python3.8; its functions run on this Python, {here}"),
        (
            "WARNING",
            f"serverless.yml declares python3.99, newer than this Python ({here}): code that "
            "needs python3.99 may fail here; run wsgate with python3.99",
        ),
    ]


# -- 5. other events of the same app ---------------------------------------------------------

OTHER_EVENTS_YML = (
    CONNECT_YML
    + """
  jobs:
    handler: app.echo
    events:
      - sqs: {arn: '${cf:queues-dev.JobsQueueArn}'}
  nightly:
    handler: app.echo
    events: [{schedule: rate(1 day)}]
  api:
    handler: app.echo
    events: [{http: {path: /, method: get}}, {httpApi: GET /x}]
"""
)

OTHER_EVENTS_SAM = (
    CONNECT_SAM
    + """
  JobsFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.echo
      Events:
        Jobs: {Type: SQS, Properties: {Queue: !GetAtt JobsQueue.Arn}}
        Nightly: {Type: Schedule, Properties: {Schedule: rate(1 day)}}
  StreamFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.echo
      Events:
        Stream: {Type: Kinesis, Properties: {Stream: arn:aws:kinesis:x, StartingPosition: LATEST}}
"""
)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            "serverless.yml",
            [("jobs", "sqs"), ("nightly", "schedule"), ("api", "http, httpApi")],
        ),
        (
            "template.yaml",
            [("JobsFunction", "SQS, Schedule"), ("StreamFunction", "Kinesis")],
        ),
    ],
)
def test_functions_that_are_not_run_are_listed_with_why(
    config: str,
    expected: list[tuple[str, str]],
    tmp_path: Path,
    moto_endpoint: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An SQS queue's `${cf:...}` ARN needs AWS, but is never resolved: the app starts."""
    caplog.set_level(logging.INFO, "wsgate.offline")
    text = OTHER_EVENTS_YML if config == "serverless.yml" else OTHER_EVENTS_SAM
    write_app(tmp_path, {config: text, "app.py": CONNECT_PY, "src/app.py": CONNECT_PY})
    with serve_functions(tmp_path / config, dynamodb_endpoint=moto_endpoint) as (_, server):
        with ws_connect(server.url) as ws:
            ws.send("still served")
            assert recv(ws) == "still served"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("not run")]
    assert lines == [
        f"not run locally: function {name} ({kinds} events); wsgate runs WebSocket routes"
        for name, kinds in expected
    ]


# -- 6. dependencies -------------------------------------------------------------------------


def build_wheel(folder: Path, name: str, version: str, code: str) -> Path:
    """A one-module wheel, written by hand: pip installs it without a build or a registry."""
    tag = f"{name}-{version}"
    files = {
        f"{name}.py": code,
        f"{tag}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{tag}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in files) + f"{tag}.dist-info/RECORD,,\n"
    wheel = folder / f"{tag}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(f"{tag}.dist-info/RECORD", record)
    return wheel


DEPS_PY = """
import tinydep


def connect(event, context):
    return {"statusCode": 200}


def echo(event, context):
    return {"statusCode": 200, "body": tinydep.shout(event["body"]) + " " + tinydep.__file__}
"""


@pytest.mark.slow
def test_requirements_are_installed_once_into_a_cached_folder_of_their_own(
    tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("WSGATE_CACHE_DIR", str(cache))
    app = tmp_path / "app"
    write_app(app, {"serverless.yml": CONNECT_YML, "app.py": DEPS_PY})
    build_wheel(app, "tinydep", "1.0", "def shout(text):\n    return text.upper()\n")
    (app / "requirements.txt").write_text("--no-index\n./tinydep-1.0-py3-none-any.whl\n")
    path = app / "serverless.yml"
    with serve_functions(path, dynamodb_endpoint=moto_endpoint) as (offline_app, server):
        folder = offline_app.dependencies["echo"]
        assert folder.parent == cache / "requirements"
        with ws_connect(server.url) as ws:
            ws.send("hi")
            shout, where = str(recv(ws)).split(" ", 1)
    assert (shout, Path(where).parent) == ("HI", folder)
    with pytest.raises(ModuleNotFoundError):  # not in wsgate's own environment
        __import__("tinydep")
    # The same file again: the cached folder, nothing installed (the wheel is gone).
    (app / "tinydep-1.0-py3-none-any.whl").unlink()
    with open_offline_app(path, dynamodb_endpoint=moto_endpoint) as again:
        assert again.dependencies["echo"] == folder
    # --no-install: nothing installed, the import fails as it would without the package.
    (app / "requirements.txt").write_text("--no-index\n./tinydep-2.0-py3-none-any.whl\n")
    with open_offline_app(path, dynamodb_endpoint=moto_endpoint, install=False) as skipped:
        assert skipped.dependencies == {}
    with pytest.raises(ConfigError, match=r"cannot install .*requirements.txt.*--no-install"):
        open_offline_app(path, dynamodb_endpoint=moto_endpoint)


# -- 7. layers -------------------------------------------------------------------------------

REMOTE_LAYER = "arn:aws:lambda:us-east-1:123456789012:layer:elsewhere:3"

LAYERS_YML = f"""
service: layered
provider: {{name: aws, runtime: {RUNTIME}}}
layers:
  shared: {{path: layers/shared}}
  flat: {{path: layers/flat}}
functions:
  connect:
    handler: app.connect
    events: [{{websocket: $connect}}]
  echo:
    handler: app.echo
    layers: [{{Ref: SharedLambdaLayer}}, {{Ref: FlatLambdaLayer}}, {REMOTE_LAYER}]
    events: [{{websocket: {{route: $default, routeResponseSelectionExpression: $default}}}}]
"""

LAYERS_SAM = (
    CONNECT_SAM.replace(
        "    CodeUri: src/\n", "    CodeUri: src/\n    Layers: [!Ref FlatLayer]\n"
    ).replace(
        "      Handler: app.echo\n",
        f"      Handler: app.echo\n      Layers: [!Ref SharedLayer, {REMOTE_LAYER}]\n",
    )
    + """
  SharedLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layers/shared/
  FlatLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layers/flat
"""
)

LAYERS_PY = """
def connect(event, context):
    return {"statusCode": 200}


def echo(event, context):
    import greeting  # from the layer's python/ folder, as Lambda's /opt/python
    import suffix  # from a layer without one: the folder itself

    return {"statusCode": 200, "body": greeting.shout(event["body"]) + suffix.MARK}
"""


@pytest.mark.parametrize("source", ["serverless.yml", "template.yaml"])
def test_local_layers_are_on_the_path_after_the_code(
    source: str, tmp_path: Path, moto_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "wsgate.offline")
    code = "app.py" if source == "serverless.yml" else "src/app.py"
    write_app(
        tmp_path,
        {
            source: LAYERS_YML if source == "serverless.yml" else LAYERS_SAM,
            code: LAYERS_PY,
            "layers/shared/python/greeting.py": "def shout(text):\n    return text.upper()\n",
            # Not imported: the layer's python/ folder is on the path, not the layer's root.
            "layers/shared/suffix.py": "MARK = '?'\n",
            "layers/flat/suffix.py": "MARK = '!'\n",
            # The code comes first: its own module wins over a layer's of the same name.
            "layers/flat/app.py": "raise ImportError('the layer shadows the code')\n",
        },
    )
    with serve_functions(tmp_path / source, dynamodb_endpoint=moto_endpoint) as (app, server):
        echo = next(fn for fn in app.spec.functions if fn.routes[0].key == "$default")
        if source == "serverless.yml":
            assert echo.layers == (tmp_path / "layers/shared/python", tmp_path / "layers/flat")
        else:  # Globals' layers first
            assert echo.layers == (tmp_path / "layers/flat", tmp_path / "layers/shared/python")
        with ws_connect(server.url) as ws:
            ws.send("hi")
            assert recv(ws) == "HI!"
    assert f"layer {REMOTE_LAYER} (of {echo.name}) is not available locally" in caplog.text


# -- 8. DynamoDB Streams ---------------------------------------------------------------------

STREAM_YML = f"""
service: streamed
provider:
  name: aws
  runtime: {RUNTIME}
  environment:
    TABLE: ${{self:service}}-${{sls:stage}}-messages
functions:
  say:
    handler: app.say
    events: [{{websocket: $default}}]
  fanout:
    handler: app.fanout
    events:
      - stream:
          type: dynamodb
          arn: {{Fn::GetAtt: [MessagesTable, StreamArn]}}
          batchSize: 2
          startingPosition: LATEST
resources:
  Resources:
    MessagesTable:
      Type: AWS::DynamoDB::Table
      Properties:
        TableName: ${{self:provider.environment.TABLE}}
        BillingMode: PAY_PER_REQUEST
        AttributeDefinitions: [{{AttributeName: id, AttributeType: S}}]
        KeySchema: [{{AttributeName: id, KeyType: HASH}}]
        StreamSpecification: {{StreamViewType: NEW_IMAGE}}
"""

STREAM_PY = """
import json
import os
import uuid

import boto3

table = boto3.resource("dynamodb").Table(os.environ["TABLE"])
management = boto3.client("apigatewaymanagementapi")


def say(event, context):
    for text in json.loads(event["body"]):
        table.put_item(Item={
            "id": str(uuid.uuid4()),
            "connectionId": event["requestContext"]["connectionId"],
            "text": text,
        })
    return {"statusCode": 200}


def fanout(event, context):
    images = [record["dynamodb"]["NewImage"] for record in event["Records"]]
    assert all(record["eventSourceARN"].endswith(
        event["Records"][0]["eventSourceARN"].rpartition("/stream/")[2]
    ) for record in event["Records"])
    management.post_to_connection(
        ConnectionId=images[0]["connectionId"]["S"],
        Data=json.dumps([image["text"]["S"] for image in images]).encode(),
    )
"""


def test_a_stream_function_gets_the_table_changes_in_batches(
    tmp_path: Path, moto_endpoint: str
) -> None:
    """A PutItem of a route's function reaches the stream function, which posts to the
    connection: `{"Records": [...]}` batches of at most batchSize records, in order."""
    write_app(tmp_path, {"serverless.yml": STREAM_YML, "app.py": STREAM_PY})
    path = tmp_path / "serverless.yml"
    with serve_functions(path, dynamodb_endpoint=moto_endpoint) as (offline_app, server):
        assert [fn.streams for fn in offline_app.spec.functions if fn.name == "fanout"] == [
            (StreamSpec("streamed-dev-messages", 2, "LATEST"),)
        ]
        with ws_connect(server.url) as ws:
            ws.send(json.dumps(["a", "b", "c"]))
            batches: list[list[str]] = []
            while sum(map(len, batches)) < 3:
                batches.append(json.loads(str(recv(ws))))
    assert [text for batch in batches for text in batch] == ["a", "b", "c"]
    assert all(1 <= len(batch) <= 2 for batch in batches)


FLAKY_PY = (
    STREAM_PY
    + """

def flaky(event, context):
    \"\"\"fanout, failing its first FAILURES invocations and every batch with "poison".\"\"\"
    texts = [r["dynamodb"]["NewImage"]["text"]["S"] for r in event["Records"]]
    with open(os.environ["ATTEMPTS"], "a") as attempts:
        attempts.write(json.dumps(texts) + "\\n")
    with open(os.environ["ATTEMPTS"]) as attempts:
        made = sum(1 for _ in attempts)
    if "poison" in texts or made <= int(os.environ["FAILURES"]):
        raise RuntimeError("not this time")
    fanout(event, context)
"""
)


def flaky_stream_app(folder: Path, failures: int, retries: int | None) -> Path:
    """STREAM_YML with `flaky` as the stream function; its attempts are logged to a file."""
    yml = STREAM_YML.replace("handler: app.fanout", "handler: app.flaky").replace(
        "    TABLE: ",
        f"    ATTEMPTS: {folder / 'attempts.log'}\n    FAILURES: '{failures}'\n    TABLE: ",
    )
    if retries is not None:
        yml = yml.replace(
            "startingPosition: LATEST",
            f"startingPosition: LATEST\n          maximumRetryAttempts: {retries}",
        )
    write_app(folder, {"serverless.yml": yml, "app.py": FLAKY_PY})
    return folder / "serverless.yml"


def test_a_failed_stream_batch_is_retried_until_it_succeeds(
    tmp_path: Path, moto_endpoint: str
) -> None:
    """As Lambda: a batch whose function fails is invoked again with the same records, and
    nothing after it is delivered first; the records arrive once, in order."""
    path = flaky_stream_app(tmp_path, failures=2, retries=None)
    with serve_functions(path, dynamodb_endpoint=moto_endpoint) as (offline_app, server):
        assert [
            fn.streams[0].maximum_retry_attempts for fn in offline_app.spec.functions if fn.streams
        ] == [-1]
        with ws_connect(server.url) as ws:
            ws.send(json.dumps(["a", "b", "c"]))
            batches: list[list[str]] = []
            while sum(map(len, batches)) < 3:
                batches.append(json.loads(str(recv(ws, timeout=15))))
    assert [text for batch in batches for text in batch] == ["a", "b", "c"]
    attempts = [json.loads(line) for line in (tmp_path / "attempts.log").read_text().splitlines()]
    assert attempts[0] == attempts[1] == attempts[2] == batches[0]  # failed twice, then sent


def test_a_stream_batch_is_discarded_after_maximum_retry_attempts(
    tmp_path: Path, moto_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    """`maximumRetryAttempts: 1`: a batch that keeps failing is tried twice, then discarded
    with an error naming the setting, and the stream goes on with the next records."""
    path = flaky_stream_app(tmp_path, failures=0, retries=1)
    with serve_functions(path, dynamodb_endpoint=moto_endpoint) as (_, server):
        with ws_connect(server.url) as ws:
            ws.send(json.dumps(["poison"]))
            log = tmp_path / "attempts.log"
            deadline = time.monotonic() + 15
            while not log.exists() or len(log.read_text().splitlines()) < 2:
                assert time.monotonic() < deadline, "the batch was not retried"
                time.sleep(0.05)
            ws.send(json.dumps(["after"]))
            assert json.loads(str(recv(ws, timeout=15))) == ["after"]
    attempts = [json.loads(line) for line in log.read_text().splitlines()]
    assert attempts == [["poison"], ["poison"], ["after"]]
    assert "discarded after 1 retries (MaximumRetryAttempts)" in caplog.text


STREAM_SAM = (
    CONNECT_SAM.replace(
        "    CodeUri: src/\n",
        "    CodeUri: src/\n    Environment:\n      Variables:\n        TABLE: streamed-messages\n",
    )
    .replace("      Handler: app.echo\n", "      Handler: app.say\n")
    # one-way: the route's own result is not sent back, only what the stream posts
    .replace(
        "  DefaultResponse:\n    Type: AWS::ApiGatewayV2::RouteResponse\n    Properties:\n"
        "      ApiId: !Ref Api\n      RouteId: !Ref DefaultRoute\n"
        "      RouteResponseKey: $default\n",
        "",
    )
    + """
  MessagesTable:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: streamed-messages
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
      StreamSpecification: {StreamViewType: NEW_IMAGE}
  FanoutFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.fanout
"""
)
STREAM_SAM_EVENTS = (
    STREAM_SAM
    + """\
      Events:
        Changes:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt MessagesTable.StreamArn
            BatchSize: 2
            StartingPosition: LATEST
"""
)
STREAM_SAM_MAPPING = (
    STREAM_SAM
    + """\
  FanoutMapping:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      EventSourceArn: !GetAtt MessagesTable.StreamArn
      FunctionName: !Ref FanoutFunction
      BatchSize: 2
      StartingPosition: LATEST
"""
)


@pytest.mark.parametrize(
    "template", [STREAM_SAM_EVENTS, STREAM_SAM_MAPPING], ids=["events", "mapping"]
)
def test_sam_stream_functions_get_the_table_changes_in_batches(
    tmp_path: Path, moto_endpoint: str, template: str
) -> None:
    """SAM's `Type: DynamoDB` events and `AWS::Lambda::EventSourceMapping` on a table's
    stream run their function on the table's changes, in batches of BatchSize, in order."""
    write_app(tmp_path, {"template.yaml": template, "src/app.py": STREAM_PY + CONNECT_PY})
    path = tmp_path / "template.yaml"
    with serve_functions(path, dynamodb_endpoint=moto_endpoint) as (offline_app, server):
        streams = [fn.streams for fn in offline_app.spec.functions if fn.name == "FanoutFunction"]
        assert streams == [(StreamSpec("streamed-messages", 2, "LATEST"),)]
        assert "FanoutFunction" not in dict(offline_app.spec.not_run)
        with ws_connect(server.url) as ws:
            ws.send(json.dumps(["a", "b", "c"]))
            batches: list[list[str]] = []
            while sum(map(len, batches)) < 3:
                batches.append(json.loads(str(recv(ws))))
    assert [text for batch in batches for text in batch] == ["a", "b", "c"]
    assert all(1 <= len(batch) <= 2 for batch in batches)
