"""Shared test helpers: a real gateway on an ephemeral port, real clients.

`run_gateway(app)` starts the gateway on 127.0.0.1:0 in a thread with its own event loop
(`wsgate.testing.TestGateway`, what users test their apps with), so tests use blocking
clients (websockets' sync client, boto3) exactly as users do.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from websockets.sync.client import ClientConnection, connect

from wsgate import App
from wsgate.server import Server
from wsgate.testing import TestGateway

#: Multiply every wait by this on slow machines.
TIMEOUT_FACTOR = float(os.environ.get("WSGATE_TESTS_TIMEOUT_FACTOR", "1"))
TIMEOUT = 5.0 * TIMEOUT_FACTOR


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def run_gateway(app: App, **options: Any) -> Iterator[Server]:
    """Serve `app` on an ephemeral port for the duration of the block (`wsgate.testing`'s
    TestGateway; tests that want its clients use it directly)."""
    with TestGateway(app, **options) as gateway:
        yield gateway.server


def ws_connect(url: str, **kwargs: Any) -> ClientConnection:
    """A real WebSocket client (python-websockets' sync client)."""
    kwargs.setdefault("open_timeout", TIMEOUT)
    kwargs.setdefault("close_timeout", TIMEOUT)
    return connect(url, **kwargs)


def recv(ws: ClientConnection, timeout: float = TIMEOUT) -> str | bytes:
    return ws.recv(timeout=timeout)


def management_client(server: Server) -> Any:
    """boto3's real apigatewaymanagementapi client, pointed at the gateway."""
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=server.management_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's WSGATE_* or AWS_* settings."""
    for name in list(os.environ):
        if name.startswith(("WSGATE_", "AWS_")) and name != "WSGATE_TESTS_TIMEOUT_FACTOR":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real moto server (DynamoDB over HTTP, see tests/moto_server.py) for the session."""
    from wsgate.offline.local_dynamodb import LocalDynamoDB

    with LocalDynamoDB() as server:
        yield server.endpoint
