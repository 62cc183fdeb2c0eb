"""`wsgate serve serverless.yml|template.yaml`: raw Lambda handlers in worker processes.

Real gateway, real WebSocket clients, real worker subprocesses; DynamoDB is a moto server
over HTTP, and the chat example's handlers reach the gateway's @connections API through
boto3 with the `https://{domainName}/{stage}` endpoint they would use on AWS.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from websockets.exceptions import InvalidStatus

from tests.conftest import TIMEOUT, free_port, recv, run_gateway, ws_connect
from tests.moto_server import isolate_aws_config
from wsgate.offline.app import OfflineApp, open_offline_app
from wsgate.server import Server

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "serverless_chat"
CHAT_TABLE = "serverless-chat-dev-connections"
RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"

PROBE_YML = f"""
service: probe
provider:
  name: aws
  runtime: {RUNTIME}
  region: eu-central-1
  environment:
    SHARED: provider
    OVERRIDDEN: provider
functions:
  connect:
    handler: probe.connect
    events:
      - websocket: $connect
  probe:
    handler: probe.probe
    memorySize: 256
    timeout: 20
    environment:
      OVERRIDDEN: function
    events:
      - websocket:
          route: probe
          routeResponseSelectionExpression: $default
  count:
    handler: probe.count
    events:
      - websocket: {{route: count, routeResponseSelectionExpression: $default}}
  slow:
    handler: probe.slow
    timeout: 1
    events:
      - websocket: {{route: slow, routeResponseSelectionExpression: $default}}
  wait:
    handler: probe.slow
    timeout: 5
    events:
      - websocket: {{route: wait, routeResponseSelectionExpression: $default}}
  failing:
    handler: probe.failing
    events:
      - websocket: {{route: raise, routeResponseSelectionExpression: $default}}
  missing:
    handler: probe.does_not_exist
    events:
      - websocket: {{route: missing, routeResponseSelectionExpression: $default}}
"""

PROBE_PY = """
import json
import logging
import os
import sys
import time

logger = logging.getLogger()
COUNT = 0  # module state: lives as long as the execution environment


def connect(event, context):
    if (event.get("queryStringParameters") or {}).get("none"):
        return None
    return {"statusCode": 200}


def probe(event, context):
    print("hello from probe", context.aws_request_id)
    logger.warning("logged by probe")
    identity = context.identity
    return {"statusCode": 200, "body": json.dumps({
        "env": dict(os.environ),
        "context": {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "invoked_function_arn": context.invoked_function_arn,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining": context.get_remaining_time_in_millis(),
            "identity": [identity.cognito_identity_id, identity.cognito_identity_pool_id],
            "client_context": context.client_context,
        },
        "cwd": os.getcwd(),
        "path0": sys.path[0],
        "tz": time.strftime("%Z"),
        "route_key": event["requestContext"]["routeKey"],
    })}


def count(event, context):
    global COUNT
    COUNT += 1
    return {"statusCode": 200, "body": json.dumps({"count": COUNT, "pid": os.getpid()})}


def slow(event, context):
    global COUNT
    COUNT += 1
    request = json.loads(event["body"])
    if request.get("exit"):
        os._exit(3)
    time.sleep(request.get("seconds", 0))
    return {"statusCode": 200, "body": json.dumps({"count": COUNT, "pid": os.getpid()})}


def failing(event, context):
    raise ValueError("boom")
"""

INTERNAL_ERROR = re.compile(r'^\{"message": "Internal server error", "connectionId":".+')


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 2 * TIMEOUT
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


@contextmanager
def serve_functions(path: Path, **options: Any) -> Iterator[tuple[OfflineApp, Server]]:
    """The functions of `path` on a gateway; on exit, every worker process is gone."""
    seen: set[int] = set()
    with open_offline_app(path, **options) as offline_app:
        with run_gateway(offline_app.app, stage=offline_app.stage) as server:
            offline_app.attach(server.host, server.port)
            try:
                yield offline_app, server
            finally:
                seen.update(offline_app.pids())
        seen.update(offline_app.pids())  # $disconnect may have started some on the way out
    assert not [pid for pid in seen if pid_alive(pid)], "worker processes outlived the app"


@pytest.fixture
def probe_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    isolate_aws_config(monkeypatch, tmp_path)
    (tmp_path / "probe.py").write_text(PROBE_PY)
    path = tmp_path / "serverless.yml"
    path.write_text(textwrap.dedent(PROBE_YML))
    return path


def ask(ws: Any, action: str, **fields: Any) -> Any:
    ws.send(json.dumps({"action": action, **fields}))
    reply = recv(ws)
    assert isinstance(reply, str)
    return json.loads(reply)


# -- the Lambda environment ----------------------------------------------------------------


def test_a_handler_sees_the_lambda_environment(
    probe_app: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Environment variables, context, working directory, sys.path, TZ; prints reach stdout."""
    with serve_functions(probe_app) as (_, server), ws_connect(server.url) as ws:
        seen = ask(ws, "probe")
    env, context = seen["env"], seen["context"]
    code_dir = str(probe_app.parent.resolve())
    assert {
        key: env.get(key)
        for key in (
            "AWS_LAMBDA_FUNCTION_NAME",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            "AWS_LAMBDA_FUNCTION_VERSION",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_EXECUTION_ENV",
            "_HANDLER",
            "LAMBDA_TASK_ROOT",
            "TZ",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "SHARED",
            "OVERRIDDEN",
        )
    } == {
        "AWS_LAMBDA_FUNCTION_NAME": "probe-dev-probe",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_REGION": "eu-central-1",
        "AWS_DEFAULT_REGION": "eu-central-1",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{RUNTIME}",
        "_HANDLER": "probe.probe",
        "LAMBDA_TASK_ROOT": code_dir,
        "TZ": "UTC",
        "AWS_ACCESS_KEY_ID": "wsgate-local",  # the user has none: dummy ones, so boto3 signs
        "AWS_SECRET_ACCESS_KEY": "wsgate-local",
        "SHARED": "provider",
        "OVERRIDDEN": "function",
    }
    assert "WSGATE_GATEWAY_ORIGINS" not in env  # the worker's own, removed before user code
    assert env["_X_AMZN_TRACE_ID"].startswith("Root=1-")
    assert (seen["cwd"], seen["path0"], seen["tz"], seen["route_key"]) == (
        code_dir,
        code_dir,
        "UTC",
        "probe",
    )
    assert context["function_name"] == "probe-dev-probe"
    assert context["function_version"] == "$LATEST"
    assert context["memory_limit_in_mb"] == "256"
    assert context["invoked_function_arn"] == (
        "arn:aws:lambda:eu-central-1:000000000000:function:probe-dev-probe"
    )
    assert context["log_group_name"] == "/aws/lambda/probe-dev-probe"
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", context["log_stream_name"])
    assert re.fullmatch(r"[0-9a-f-]{36}", context["aws_request_id"])
    assert 15_000 < context["remaining"] <= 20_000  # the function's timeout: 20 s
    assert (context["identity"], context["client_context"]) == ([None, None], None)
    # print() and logging reach the terminal, logging in Lambda's format.
    out = capfd.readouterr().out
    assert f"hello from probe {context['aws_request_id']}" in out
    assert re.search(rf"\[WARNING\]\t\S+Z\t{context['aws_request_id']}\tlogged by probe", out), out


def test_module_state_stays_warm_across_invocations(probe_app: Path) -> None:
    with serve_functions(probe_app) as (offline_app, server), ws_connect(server.url) as ws:
        replies = [ask(ws, "count") for _ in range(3)]
        assert [reply["count"] for reply in replies] == [1, 2, 3]
        assert len({reply["pid"] for reply in replies}) == 1
        assert offline_app.pools["count"].pids() == [replies[0]["pid"]]


def test_the_pool_grows_for_concurrent_invocations(probe_app: Path) -> None:
    """Three invocations at once: three execution environments, as Lambda scales out."""
    with serve_functions(probe_app) as (offline_app, server), ws_connect(server.url) as ws:
        for _ in range(3):
            ws.send(json.dumps({"action": "wait", "seconds": 0.6}))
        replies = [json.loads(recv(ws)) for _ in range(3)]
        assert len({reply["pid"] for reply in replies}) == 3
        assert [reply["count"] for reply in replies] == [1, 1, 1]
        assert len(offline_app.pools["wait"].pids()) == 3


def test_a_timeout_kills_the_worker_and_the_next_invocation_starts_cold(
    probe_app: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with serve_functions(probe_app) as (offline_app, server), ws_connect(server.url) as ws:
        first = ask(ws, "slow", seconds=0)
        started = time.monotonic()
        ws.send(json.dumps({"action": "slow", "seconds": 10}))
        frame = recv(ws)
        assert INTERNAL_ERROR.match(str(frame)), frame
        assert time.monotonic() - started < 5  # the function's 1 s, not the gateway's 29 s
        assert not pid_alive(first["pid"])
        assert "Task timed out after 1.00 seconds" in caplog.text
        again = ask(ws, "slow", seconds=0)
        assert again["pid"] != first["pid"]
        assert again["count"] == 1  # a new execution environment: module state is fresh
        # A worker that exits mid-invocation fails it the same way, and is replaced too.
        ws.send(json.dumps({"action": "slow", "exit": True}))
        assert INTERNAL_ERROR.match(str(recv(ws)))
        assert "Runtime exited with error: exit status 3" in caplog.text
        assert ask(ws, "slow", seconds=0)["count"] == 1
        assert len(offline_app.pools["slow"].pids()) == 1


def test_handler_errors_have_lambdas_shape(
    probe_app: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A raised error and a missing handler: the client gets `Internal server error`."""
    with serve_functions(probe_app) as (_, server), ws_connect(server.url) as ws:
        ws.send(json.dumps({"action": "raise"}))
        assert INTERNAL_ERROR.match(str(recv(ws)))
        ws.send(json.dumps({"action": "missing"}))
        assert INTERNAL_ERROR.match(str(recv(ws)))
        assert ask(ws, "count")["count"] == 1  # the connection stays open
    assert "[ERROR] ValueError: boom" in caplog.text
    assert 'probe.py", line' in caplog.text  # the handler's stack trace
    assert (
        "[ERROR] Runtime.HandlerNotFound: Handler 'does_not_exist' missing on module 'probe'"
        in caplog.text
    )


def test_connect_returning_none_is_a_502_when_strict(
    probe_app: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with serve_functions(probe_app, strict_connect_result=True) as (_, server):
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(server.url + "?none=1")
        assert refused.value.response.status_code == 502
        with ws_connect(server.url) as ws:  # a proxy response is accepted
            assert ask(ws, "count")["count"] == 1
    assert "MalformedProxyResponse: $connect returned null" in caplog.text


def test_an_import_error_on_connect_is_a_502_and_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    isolate_aws_config(monkeypatch, tmp_path)
    (tmp_path / "app.py").write_text("import module_that_does_not_exist\n")
    (tmp_path / "serverless.yml").write_text(
        textwrap.dedent(
            f"""
            service: broken
            provider: {{name: aws, runtime: {RUNTIME}}}
            functions:
              connect:
                handler: app.connect
                events: [{{websocket: $connect}}]
            """
        )
    )
    with serve_functions(tmp_path / "serverless.yml") as (_, server):
        for _ in range(2):  # the init is retried on the next invocation, as Lambda does
            with pytest.raises(InvalidStatus) as refused:
                ws_connect(server.url)
            assert refused.value.response.status_code == 502
    assert (
        "[ERROR] Runtime.ImportModuleError: Unable to import module 'app': "
        "No module named 'module_that_does_not_exist'"
    ) in caplog.text


# -- the serverless chat example on DynamoDB -----------------------------------------------


@pytest.fixture
def dynamodb(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """boto3's DynamoDB client on the moto server; the example's table does not exist yet."""
    isolate_aws_config(monkeypatch, tmp_path)
    client = boto3.client(
        "dynamodb",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    if CHAT_TABLE in client.list_tables()["TableNames"]:
        client.delete_table(TableName=CHAT_TABLE)
    yield client
    client.close()


def stored_ids(dynamodb: Any) -> set[str]:
    items = dynamodb.scan(TableName=CHAT_TABLE, ConsistentRead=True)["Items"]
    return {item["connectionId"]["S"] for item in items}


@pytest.mark.parametrize("config", ["serverless.yml", "template.yaml"])
def test_the_chat_example(
    config: str, dynamodb: Any, moto_endpoint: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """Three clients chat; a connection whose $disconnect was lost is cleaned up on a 410."""
    with serve_functions(EXAMPLE / config, dynamodb_endpoint=moto_endpoint) as (_, server):
        assert stored_ids(dynamodb) == set()  # created at start, like serverless-dynamodb-local
        url = server.url
        with ws_connect(url) as a, ws_connect(url) as b:
            first_two = stored_ids(dynamodb)
            assert len(first_two) == 2
            with ws_connect(url) as c:
                (c_id,) = stored_ids(dynamodb) - first_two
                a.send(json.dumps({"action": "onMessage", "data": {"text": "hello"}}))
                for ws in (a, b, c):
                    assert json.loads(recv(ws)) == {"text": "hello"}
                # $default is two-way: the sender gets the usage.
                c.send("not json")
                assert json.loads(recv(c)) == {"error": 'send {"action": "onMessage", "data": ...}'}
            wait_until(lambda: stored_ids(dynamodb) == first_two, "$disconnect removed c")

            # As if c's $disconnect had been lost (AWS runs it best effort): the next
            # broadcast gets 410 Gone for it and deletes it.
            dynamodb.put_item(TableName=CHAT_TABLE, Item={"connectionId": {"S": c_id}})
            b.send(json.dumps({"action": "onMessage", "data": "again"}))
            assert (json.loads(recv(a)), json.loads(recv(b))) == ("again", "again")
            wait_until(lambda: stored_ids(dynamodb) == first_two, "the 410 path removed c")
        wait_until(lambda: stored_ids(dynamodb) == set(), "$disconnect emptied the table")
    assert f"Found stale connection, deleting {c_id}" in capfd.readouterr().out


def test_wsgate_serve_runs_the_template_and_stops_its_workers(
    dynamodb: Any, moto_endpoint: str, tmp_path: Path
) -> None:
    """The CLI: `wsgate serve template.yaml --dynamodb-endpoint URL`, then Ctrl+C."""
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wsgate",
                "serve",
                str(EXAMPLE / "template.yaml"),
                "--port",
                str(port),
                "--store",
                "memory://",
                "--dynamodb-endpoint",
                moto_endpoint,
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "Press Ctrl+C" in log.read_text() or proc.poll() is not None, "ready")
        assert proc.poll() is None, log.read_text()
        assert f"ws://127.0.0.1:{port}/dev" in log.read_text()  # the template's Stage
        with (
            ws_connect(f"ws://127.0.0.1:{port}/dev") as a,
            ws_connect(
                f"ws://localhost:{port}/dev"  # domainName localhost:PORT reaches the gateway too
            ) as b,
        ):
            b.send(json.dumps({"action": "onMessage", "data": "via the CLI"}))
            assert (json.loads(recv(a)), json.loads(recv(b))) == ("via the CLI", "via the CLI")
            workers = children(proc.pid)
            assert workers
            assert stored_ids(dynamodb) != set()
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=4 * TIMEOUT) == 0, log.read_text()
        assert not [pid for pid in workers if pid_alive(pid)]
        assert stored_ids(dynamodb) == set()  # $disconnect ran in the workers before they stopped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found
