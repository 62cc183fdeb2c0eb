"""A real moto server (AWS APIs over HTTP) in a subprocess, for the DynamoDB store's tests.

    with MotoServer() as moto:
        store = open_store(dynamodb_url(moto.endpoint))

Tests talk to it over HTTP exactly as they would to DynamoDB: no patching of boto3.
The session-scoped `moto_endpoint` fixture in tests/conftest.py shares one server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import TracebackType
from typing import IO

import pytest

from tests.conftest import free_port

#: Multiply every wait by this on slow machines (as tests/conftest.py does).
TIMEOUT = 15.0 * float(os.environ.get("WSGATE_TESTS_TIMEOUT_FACTOR", "1"))


class MotoServer:
    """`python -m moto.server` on a free port of 127.0.0.1, until `stop()`."""

    def __init__(self) -> None:
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it answers HTTP; retry if the port was taken."""
        for _ in range(3):
            self.port = free_port()
            # A file, not a pipe: moto logs every request, and a pipe nobody reads fills up.
            self._log = tempfile.TemporaryFile()
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            if self._wait_until_ready():
                return
            self.stop()
        raise RuntimeError(f"moto server did not start:\n{self._output}")

    def _wait_until_ready(self) -> bool:
        assert self._process is not None
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False  # exited: most likely the port was taken meanwhile
            try:
                with opener.open(f"{self.endpoint}/moto-api/", timeout=1) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        return False

    @property
    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a grace period)."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


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
