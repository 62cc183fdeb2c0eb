"""Helpers for tests against a real moto server (AWS APIs over HTTP, in a subprocess).

The server is the one `wsgate serve serverless.yml` starts for its handlers,
`wsgate.offline.local_dynamodb.LocalDynamoDB` (moto in server mode: every AWS API moto
has, not only DynamoDB):

    with LocalDynamoDB() as moto:
        store = open_store(dynamodb_url(moto.endpoint))

Tests talk to it over HTTP exactly as they would to AWS: no patching of boto3. The
session-scoped `moto_endpoint` fixture in tests/conftest.py shares one server.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest

#: Multiply every wait by this on slow machines (as tests/conftest.py does).
TIMEOUT = 15.0 * float(os.environ.get("WSGATE_TESTS_TIMEOUT_FACTOR", "1"))


def use_fake_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path | None = None) -> None:
    """Dummy AWS credentials in the environment, and nothing from the developer's ~/.aws.

    moto accepts any credentials; botocore only needs some to sign requests.
    """
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    isolate_aws_config(monkeypatch, tmp_path)


def isolate_aws_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path | None = None) -> None:
    """No shared config or credentials files, no instance metadata lookups."""
    missing = (tmp_path or Path(tempfile.gettempdir())) / f"no-aws-{uuid.uuid4().hex}"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(missing / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(missing / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def unique_table() -> str:
    """A table name no other test uses on the shared server."""
    return f"wsgate-test-{uuid.uuid4().hex[:12]}"


def dynamodb_url(endpoint: str, table: str | None = None, *, create: bool = True) -> str:
    """The store URL of `table` (a fresh name by default) on the moto server."""
    return (
        f"dynamodb://{table or unique_table()}?endpoint={endpoint}&region=us-east-1"
        f"&create={'true' if create else 'false'}"
    )


def dynamodb_store_url(request: pytest.FixtureRequest) -> str:
    """For a parametrised store fixture: a fresh table on the session's moto server."""
    use_fake_credentials(request.getfixturevalue("monkeypatch"))
    return dynamodb_url(request.getfixturevalue("moto_endpoint"))
