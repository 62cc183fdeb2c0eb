"""The browser `Origin` allowlist of handshakes (docs/compatibility.md §7): a listed or
missing `Origin` goes on to the authorizer and `$connect`, any other gets 403 first."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from tests.conftest import run_gateway, ws_connect
from wsgate import App
from wsgate.exceptions import ConfigError

ALLOWED = ["https://app.example.com", "http://localhost:3000/"]


def recording_app() -> tuple[App, list[Any]]:
    ran: list[Any] = []
    app = App(name="origins")

    @app.authorizer(identity_sources=[], simple=True)
    def authorize(event: Any, context: Any) -> bool:
        ran.append("authorizer")
        return True

    @app.on_connect
    def connect(event: Any, context: Any) -> None:
        ran.append(event["headers"].get("Origin"))

    return app, ran


@pytest.mark.parametrize(
    "origin", ["https://app.example.com", "HTTPS://App.Example.com", "http://localhost:3000", None]
)
def test_listed_or_missing_origins_connect(origin: str | None) -> None:
    """Case does not matter; a client that sends no Origin (not a browser) is let in."""
    app, ran = recording_app()
    with run_gateway(app, allowed_origins=ALLOWED) as server:
        with ws_connect(server.url, origin=origin):
            pass
    assert ran == ["authorizer", origin]


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example.com", "http://app.example.com", "https://app.example.com:8443", "null"],
)
def test_other_origins_get_403_before_the_authorizer(origin: str) -> None:
    app, ran = recording_app()
    with run_gateway(app, allowed_origins=ALLOWED) as server:
        with pytest.raises(InvalidStatus) as info:
            ws_connect(server.url, origin=origin)
    assert info.value.response.status_code == 403
    assert json.loads(info.value.response.body) == {"message": "Forbidden"}
    assert ran == []


def test_without_a_list_every_origin_connects() -> None:
    """As API Gateway, which does not look at Origin."""
    app, ran = recording_app()
    with run_gateway(app) as server, ws_connect(server.url, origin="https://anywhere.example"):
        pass
    assert ran == ["authorizer", "https://anywhere.example"]


@pytest.mark.parametrize("entry", ["app.example.com", "https://app.example.com/chat", "*"])
def test_an_allowed_origin_must_be_scheme_host_port(entry: str) -> None:
    app, _ = recording_app()
    with (
        pytest.raises(ConfigError, match="scheme://host"),
        run_gateway(app, allowed_origins=[entry]),
    ):
        pass
