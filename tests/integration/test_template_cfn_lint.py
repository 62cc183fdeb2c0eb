"""`wsgate template` output passes cfn-lint, for every example and a two-way app.

cfn-lint's Python API checks the template against CloudFormation's resource schemas (in
every property, intrinsic function and IAM policy) without an AWS account. Errors and
warnings fail the test; informational findings are checked too (there are none today).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cfnlint.api import ManualArgs, lint
from click.testing import CliRunner

from wsgate.cli import cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [
    "examples/echo.py",
    "examples/broadcast.py",
    "examples/topics.py",
    "examples/direct.py",
    "examples/lambda_chat/app.py",
    "examples/auth.py",  # a $connect authorizer
]
LINT = ManualArgs(regions=["us-east-1", "eu-west-1"], include_checks=["I"])

TWO_WAY_APP = """
from wsgate import App, connections

app = App(name="two-way", route_selection="${request.body.service}/${request.body.action}")


@app.on_connect
def connect(event, context):
    return {"statusCode": 200}


@app.on_disconnect
def disconnect(event, context):
    pass


@app.route("chat/join", return_response=True)
async def join(event, context):
    await connections.subscribe(event.connection_id, event.json["room"])
    return {"statusCode": 200, "body": "joined"}


@app.route("info", return_response=True)
async def info(event, context):
    return str(await connections.info(event.connection_id))


@app.route("kick")
async def kick(event, context):
    await connections.disconnect(event.json["id"])


@app.route("Shout loudly!")
async def shout(event, context):
    await connections.unsubscribe(event.connection_id, "x")
    await connections.publish("x", "y")
"""


def template_text(target: str, *options: str) -> str:
    result = CliRunner().invoke(cli, ["template", target, *options], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # no warnings for these apps
    return result.stdout


def findings(text: str) -> list[str]:
    return [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in lint(text, config=LINT)]


@pytest.mark.parametrize("target", EXAMPLES)
def test_examples_lint_clean(target: str) -> None:
    """Each example's template has no cfn-lint finding at any level."""
    assert findings(template_text(str(ROOT / target))) == []


def test_json_output_lints_clean() -> None:
    """The JSON form too (the same dict as the YAML, see tests/unit/deploy/test_template.py)."""
    assert findings(template_text(str(ROOT / "examples/topics.py"), "--format", "json")) == []


def test_two_way_routes_and_odd_keys_lint_clean(tmp_path: Path) -> None:
    """Route responses, $connect/$disconnect, every @connections verb, keys with '/' and
    spaces, a custom stage and API name."""
    (tmp_path / "two_way.py").write_text(TWO_WAY_APP)
    text = template_text(str(tmp_path / "two_way.py"), "--stage", "prod_1", "--name", "Two Way")
    assert "RouteResponse" in text and "DELETE/@connections" in text
    assert findings(text) == []


def test_an_aws_iam_app_lints_clean(tmp_path: Path) -> None:
    """$connect with AuthorizationType AWS_IAM passes cfn-lint."""
    (tmp_path / "signed.py").write_text(
        "from wsgate import App\n\napp = App(authorization='AWS_IAM')\n\n\n"
        "@app.default\ndef default(event, context):\n    return None\n"
    )
    text = template_text(str(tmp_path / "signed.py"))
    assert "AWS_IAM" in text
    assert findings(text) == []


def test_the_linter_does_find_errors() -> None:
    """Control: the same check reports a broken template (else a clean run proves nothing)."""
    text = template_text(str(ROOT / "examples/echo.py"))
    broken = text.replace("Runtime: python3.12", "Runtime: python2.0").replace(
        "Ref: CodeBucket", "Ref: CodeBuckets"
    )
    found = findings(broken)
    assert any(line.startswith("E") and "python2.0" in line for line in found), found
    assert any(line.startswith("E") and "CodeBuckets" in line for line in found), found
