"""`wsgate deploy` end to end against moto in server mode: S3, CloudFormation, and what the
stack creates (Lambda, IAM, DynamoDB, CloudWatch Logs), over HTTP, nothing patched.

moto's CloudFormation has no ApiGatewayV2 resources: it skips them with a warning (the
API, routes, integrations, route responses, deployment and stage exist only on paper
here, checked by cfn-lint in test_template_cfn_lint.py). It ignores a table's TTL, a
function's LoggingConfig, and IAM is never enforced, so grants are compared, not exercised.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result

from tests.moto_server import isolate_aws_config, use_fake_credentials
from wsgate.cli import cli
from wsgate.deploy.package import build_package
from wsgate.deploy.permissions import analyse, grant_for
from wsgate.deploy.template import generate
from wsgate.importer import load_app
from wsgate.offline.local_dynamodb import LocalDynamoDB

ROOT = Path(__file__).resolve().parents[2]
TOPICS = str(ROOT / "examples" / "topics.py")
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
#: Python code putting the working directory (an unpacked zip) first, as Lambda's
#: /var/task is, and checking wsgate really comes from there.
FROM_THE_ZIP = (
    "import os, sys; sys.path.insert(0, os.getcwd()); import wsgate;"
    "assert wsgate.__file__.startswith(os.getcwd() + os.sep), wsgate.__file__"
)


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with LocalDynamoDB() as server:
        yield server.endpoint


@pytest.fixture
def aws(moto: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Dummy credentials, no ~/.aws: the moto endpoint, ready for boto3 and the CLI."""
    use_fake_credentials(monkeypatch, tmp_path)
    return moto


def client(endpoint: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def deploy(endpoint: str, target: str, *options: str) -> Result:
    return CliRunner().invoke(
        cli,
        [
            "deploy",
            target,
            "--region",
            REGION,
            "--endpoint-url",
            endpoint,
            "--poll-interval",
            "0.1",
            *options,
        ],
        catch_exceptions=False,
    )


def outputs(result: Result) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in result.stdout.splitlines())


def physical_ids(endpoint: str, stack: str) -> dict[str, str]:
    """Logical -> physical id of what moto created (it lists skipped types without ids)."""
    summaries = client(endpoint, "cloudformation").list_stack_resources(StackName=stack)
    return {
        item["LogicalResourceId"]: item.get("PhysicalResourceId", "")
        for item in summaries["StackResourceSummaries"]
        if item.get("LogicalResourceId")
    }


def role_policy(endpoint: str, role: str) -> dict[str, Any]:
    document = client(endpoint, "iam").get_role_policy(RoleName=role, PolicyName="wsgate-route")[
        "PolicyDocument"
    ]
    # moto returns an inline policy from CloudFormation as the repr of a dict
    return document if isinstance(document, dict) else ast.literal_eval(document)


def test_deploy_creates_the_stack_then_changes_nothing(aws: str) -> None:
    """First deploy: bucket, zip, stack, every supported resource as the template says.
    Second deploy of the same app: same zip, "No updates are to be performed", exit 0."""
    bucket, stack = unique("wsgate-code"), unique("topics")
    first = deploy(aws, TOPICS, "--bucket", bucket, "--create-bucket", "--stack-name", stack)
    assert first.exit_code == 0, first.output
    for line in (f"created bucket {bucket}", "uploaded s3://", f"creating stack {stack}"):
        assert line in first.stderr
    assert "CREATE_COMPLETE" in first.stderr
    urls = outputs(first)
    assert urls["WebSocketUrl"].startswith("wss://") and urls["WebSocketUrl"].endswith("/dev")
    assert urls["ConnectionsUrl"].startswith("https://")
    assert urls["ConnectionsUrl"].endswith("/dev/@connections")

    # the code: exactly the deterministic zip, under a key made of its hash
    app = load_app(TOPICS)
    package = build_package(TOPICS, app)
    (key,) = [o["Key"] for o in client(aws, "s3").list_objects_v2(Bucket=bucket)["Contents"]]
    assert key == f"wsgate/{stack}/{package.sha256[:20]}.zip"
    assert client(aws, "s3").get_object(Bucket=bucket, Key=key)["Body"].read() == package.data

    described = client(aws, "cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    assert described["StackStatus"] == "CREATE_COMPLETE"
    assert {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]} == {
        "StageName": "dev",
        "CodeBucket": bucket,
        "CodeKey": key,
    }
    template, _ = generate(app, app_target="topics.py")
    ids = physical_ids(aws, stack)
    supported = {
        name
        for name, resource in template["Resources"].items()
        if not resource["Type"].startswith("AWS::ApiGatewayV2::")
    }
    assert supported <= set(ids)
    assert urls["TableName"] == ids["Table"]

    table = client(aws, "dynamodb").describe_table(TableName=ids["Table"])["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {
        "pk": "HASH",
        "sk": "RANGE",
    }
    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["gsi1"]
    table_arn = table["TableArn"]

    lam = client(aws, "lambda")
    zip_sha = base64.b64encode(hashlib.sha256(package.data).digest()).decode()
    functions = {
        name.removesuffix("Function"): resource["Metadata"]["wsgate"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
    }
    # topics has no $connect / $disconnect handlers: they exist for the store's sake
    assert sorted(meta["route"] for meta in functions.values()) == sorted(
        {*app.routes, "$connect", "$disconnect"}
    )
    for name, meta in functions.items():
        route_key = meta["route"]
        config = lam.get_function(FunctionName=ids[f"{name}Function"])["Configuration"]
        assert config["Handler"] == "wsgate.aws.lambda_handler.handler"
        assert config["Runtime"] == "python3.12"
        assert config["Environment"]["Variables"] == {
            "WSGATE_APP": "topics.py",
            "WSGATE_TABLE": ids["Table"],
        }
        assert config["Role"].endswith(f":role/{ids[f'{name}Role']}")
        assert config["CodeSha256"] == zip_sha

        # its own role, with exactly the analysed grant, on this table only
        route = app.routes.get(route_key)
        ops = analyse(route.handler).ops if route else frozenset()
        assert set(meta["connections"]) == ops
        grant = grant_for(route_key, ops)
        found = {s["Sid"]: s for s in role_policy(aws, ids[f"{name}Role"])["Statement"]}
        assert set(found["ConnectionsTable"]["Action"]) == grant.table
        assert found["ConnectionsTable"]["Resource"] == table_arn
        if grant.index:
            assert set(found["ConnectionsTableIndex"]["Action"]) == grant.index
            assert found["ConnectionsTableIndex"]["Resource"] == f"{table_arn}/index/*"
        else:
            assert "ConnectionsTableIndex" not in found
        if grant.manage:
            (manage,) = found["ManageConnections"]["Resource"]
            assert manage.startswith(f"arn:aws:execute-api:{REGION}:{ACCOUNT}:")
            assert manage.endswith("/dev/POST/@connections/*")
        else:
            assert "ManageConnections" not in found
        assert found["Logs"]["Resource"].endswith(f":log-group:{ids[f'{name}LogGroup']}")

        (invoke,) = json.loads(lam.get_policy(FunctionName=ids[f"{name}Function"])["Policy"])[
            "Statement"
        ]
        assert invoke["Principal"] == {"Service": "apigateway.amazonaws.com"}
        assert invoke["Condition"]["ArnLike"]["AWS:SourceArn"].endswith(f"/dev/{route_key}")

    groups = client(aws, "logs").describe_log_groups(logGroupNamePrefix=stack)["logGroups"]
    assert len(groups) == len(functions)
    assert {group["retentionInDays"] for group in groups} == {30}

    second = deploy(aws, TOPICS, "--bucket", bucket, "--stack-name", stack)
    assert second.exit_code == 0, second.output
    assert f"code unchanged: s3://{bucket}/{key}" in second.stderr
    assert f"no changes: stack {stack} is up to date" in second.stderr
    assert outputs(second) == urls
    assert len(client(aws, "s3").list_objects_v2(Bucket=bucket)["Contents"]) == 1


def test_a_changed_app_updates_the_stack(aws: str, tmp_path: Path) -> None:
    """New code and a new route: a new zip, UPDATE_COMPLETE, a function for the route."""
    shutil.copy(ROOT / "examples" / "echo.py", tmp_path / "app.py")
    bucket, stack = unique("wsgate-code"), unique("echo")
    target = str(tmp_path / "app.py")
    assert (
        deploy(aws, target, "--bucket", bucket, "--create-bucket", "--stack-name", stack).exit_code
        == 0
    )
    with (tmp_path / "app.py").open("a") as source:
        source.write(
            "\n\n@app.route('ping')\nasync def ping(event, context):\n"
            "    await connections.broadcast('pong')\n"
        )
    result = deploy(aws, target, "--bucket", bucket, "--stack-name", stack)
    assert result.exit_code == 0, result.output
    assert f"updating stack {stack}" in result.stderr
    assert "UPDATE_COMPLETE" in result.stderr
    status = client(aws, "cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    assert status["StackStatus"] == "UPDATE_COMPLETE"
    ids = physical_ids(aws, stack)
    assert {"OnPingFunction", "OnPingRole", "OnPingPermission"} <= set(ids)
    keys = [o["Key"] for o in client(aws, "s3").list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == 2
    new_key = next(
        p["ParameterValue"] for p in status["Parameters"] if p["ParameterKey"] == "CodeKey"
    )
    location = client(aws, "lambda").get_function(FunctionName=ids["DefaultFunction"])["Code"]
    assert location["Location"].endswith(new_key)
    ping = role_policy(aws, ids["OnPingRole"])["Statement"]
    assert any(s["Sid"] == "ManageConnections" for s in ping)


def test_a_large_template_goes_through_s3(aws: str, tmp_path: Path) -> None:
    """Over CloudFormation's 51,200-byte TemplateBody limit, the template is uploaded and
    passed as TemplateURL."""
    routes = "".join(
        f"\n@app.route('r{n}')\nasync def r{n}(event, context):\n"
        f"    await connections.send(event.connection_id, 'r{n}')\n"
        for n in range(25)
    )
    (tmp_path / "big.py").write_text(
        f"from wsgate import App, connections\n\napp = App(name='big')\n{routes}"
    )
    bucket, stack = unique("wsgate-code"), unique("big")
    result = deploy(
        aws, str(tmp_path / "big.py"), "--bucket", bucket, "--create-bucket", "--stack-name", stack
    )
    assert result.exit_code == 0, result.output
    keys = [o["Key"] for o in client(aws, "s3").list_objects_v2(Bucket=bucket)["Contents"]]
    (template_key,) = [key for key in keys if key.endswith(".template.json")]
    body = client(aws, "s3").get_object(Bucket=bucket, Key=template_key)["Body"].read()
    assert len(body) > 51_200
    functions = [name for name in physical_ids(aws, stack) if name.endswith("Function")]
    assert len(functions) == 25 + 2  # and $connect, $disconnect


def test_the_deployed_code_runs_from_the_zip(aws: str, tmp_path: Path) -> None:
    """The uploaded zip, unpacked as Lambda does, with the function's own environment:
    the adapter loads the app, and $connect / $disconnect reach the stack's table.
    Without site-packages, the runtime modules import (no aiohttp, click, watchfiles)."""
    bucket, stack = unique("wsgate-code"), unique("run")
    assert (
        deploy(aws, TOPICS, "--bucket", bucket, "--create-bucket", "--stack-name", stack).exit_code
        == 0
    )
    ids = physical_ids(aws, stack)
    config = client(aws, "lambda").get_function(FunctionName=ids["DefaultFunction"])[
        "Configuration"
    ]
    code_key = next(
        p["ParameterValue"]
        for p in client(aws, "cloudformation").describe_stacks(StackName=stack)["Stacks"][0][
            "Parameters"
        ]
        if p["ParameterKey"] == "CodeKey"
    )
    data = client(aws, "s3").get_object(Bucket=bucket, Key=code_key)["Body"].read()
    task = tmp_path / "task"
    zipfile.ZipFile(io.BytesIO(data)).extractall(task)
    assert not (task / "wsgate" / "server").exists() and not (task / "wsgate" / "cli").exists()

    bare = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            f"{FROM_THE_ZIP}; import wsgate.aws.lambda_handler;"
            "from wsgate.importer import load_app; app = load_app('topics.py');"
            "assert not {'aiohttp', 'click', 'watchfiles', 'boto3'} & set(sys.modules);"
            "print(sorted(app.routes))",
        ],
        cwd=task,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout.strip() == "['$default', 'message', 'subscribe', 'unsubscribe']"

    event = {
        "requestContext": {
            "routeKey": "$connect",
            "eventType": "CONNECT",
            "connectionId": "AAAAAAAAAAAAAAA=",
            "connectedAt": 1_700_000_000_000,
            "domainName": "abcdefghij.execute-api.us-east-1.amazonaws.com",
            "stage": "dev",
            "identity": {"sourceIp": "192.0.2.1", "userAgent": "test"},
        },
        "isBase64Encoded": False,
    }
    script = (
        f"{FROM_THE_ZIP}; import json;"
        "from wsgate.aws.lambda_handler import handler;"
        "event = json.loads(sys.argv[1]);"
        "print(json.dumps(handler(event, None)))"
    )
    env = {
        **os.environ,
        **config["Environment"]["Variables"],
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL_DYNAMODB": aws,
    }
    connected = subprocess.run(
        [sys.executable, "-c", script, json.dumps(event)],
        cwd=task,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert connected.returncode == 0, connected.stderr
    assert json.loads(connected.stdout.splitlines()[-1]) == {"statusCode": 200}
    item = client(aws, "dynamodb").get_item(
        TableName=ids["Table"], Key={"pk": {"S": "conn#AAAAAAAAAAAAAAA="}, "sk": {"S": "conn"}}
    )
    assert "Item" in item

    event["requestContext"].update(routeKey="$disconnect", eventType="DISCONNECT")
    gone = subprocess.run(
        [sys.executable, "-c", script, json.dumps(event)],
        cwd=task,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert gone.returncode == 0, gone.stderr
    item = client(aws, "dynamodb").get_item(
        TableName=ids["Table"], Key={"pk": {"S": "conn#AAAAAAAAAAAAAAA="}, "sk": {"S": "conn"}}
    )
    assert "Item" not in item


def test_a_missing_bucket_is_explained(aws: str) -> None:
    """Without --create-bucket, an absent bucket is an error naming the flag."""
    result = deploy(aws, TOPICS, "--bucket", unique("absent"), "--stack-name", unique("nope"))
    assert result.exit_code == 1
    assert "does not exist: create it, or pass --create-bucket" in result.stderr


def test_without_credentials_the_cli_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`wsgate deploy` with no credentials anywhere: exit 1, the variables to set, no
    traceback, nothing uploaded (no endpoint is even needed)."""
    isolate_aws_config(monkeypatch, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "wsgate", "deploy", TOPICS, "--bucket", "b-b-b", "--region", REGION],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert result.returncode == 1, result.stderr
    assert "Error: no AWS credentials found" in result.stderr
    assert "AWS_ACCESS_KEY_ID" in result.stderr and "AWS_PROFILE" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_a_region_the_cli_says_what_to_set(
    aws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials but no region: exit 1, naming --region and the variables; AWS_REGION
    alone is enough (boto3 by itself only reads AWS_DEFAULT_REGION)."""
    command = ["deploy", TOPICS, "--bucket", unique("absent"), "--endpoint-url", aws]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 1
    assert "no AWS region: pass --region, or set AWS_REGION or AWS_DEFAULT_REGION" in result.stderr
    monkeypatch.setenv("AWS_REGION", REGION)
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 1
    assert "does not exist: create it, or pass --create-bucket" in result.stderr
