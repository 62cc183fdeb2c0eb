"""The `@connections` API against its OpenAPI document, docs/management-openapi.yaml.

schemathesis generates requests from the document (any connection id, any body up to
the 128 KB limit) and sends them to a running gateway; every response must be one the
document lists, with its status, headers and body shape, and never a 5xx. It runs once
with arbitrary ids (mostly 410s) and once with the ids of live connections, so the
success shapes (200 with a message, GetConnection's JSON, 204) are checked too.
"""

from __future__ import annotations

import copy
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi import checks as openapi_checks

from tests.conftest import TIMEOUT, run_gateway, ws_connect
from wsgate import App, connections
from wsgate.server.runner import Server

DOCUMENT = Path(__file__).resolve().parent.parent.parent / "docs" / "management-openapi.yaml"

#: What every response is checked for.
CHECKS = [
    not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
]

#: Requests per operation and run (4 operations, 2 runs).
EXAMPLES = 15


def echo_app() -> App:
    app = App(name="management-schema")

    @app.default
    async def echo(event: dict[str, Any], context: object) -> None:
        await connections.send(event["requestContext"]["connectionId"], event["body"])

    return app


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with run_gateway(echo_app()) as running:
        yield running


def load_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text())
    return document


def test_the_document_is_valid_openapi() -> None:
    validate(load_document())


def pinned(stage: str, connection_ids: list[str] | None) -> schemathesis.BaseSchema:
    """The document with `{stage}` pinned to the gateway's stage (another stage is not
    the management API), and `{connectionId}` to `connection_ids` if given."""
    document = copy.deepcopy(load_document())
    parameters = document["components"]["parameters"]
    parameters["stage"]["schema"]["enum"] = [stage]
    id_schema = parameters["connectionId"]["schema"]
    if connection_ids is not None:
        id_schema["enum"] = connection_ids
    return schemathesis.openapi.from_dict(document)


def drive(schema: schemathesis.BaseSchema, base_url: str) -> list[str]:
    """Send `EXAMPLES` generated requests per operation; the operations tried."""
    tried = []
    for result in schema.get_all_operations():
        operation = result.ok()
        tried.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: schemathesis.Case) -> None:
            response = case.call(base_url=base_url, timeout=TIMEOUT)
            case.validate_response(response, checks=CHECKS)

        call()
    return tried


def test_arbitrary_requests_get_documented_answers(server: Server) -> None:
    """Any id (percent-encoded, astral, empty, with a newline...) and any body: a
    documented answer."""
    tried = drive(pinned(server.gateway.stage, None), f"http://127.0.0.1:{server.port}")
    assert len(tried) == 4, tried


def test_requests_to_live_connections_get_documented_answers(server: Server) -> None:
    """Posts, gets and deletes of open connections answer with the documented shapes."""
    with ExitStack() as stack:
        clients = [stack.enter_context(ws_connect(server.url)) for _ in range(3)]
        live = wait_for(lambda: list(server.gateway.live), len(clients))
        schema = pinned(server.gateway.stage, [*live, "R1kmxc2VNjMCFIA="])
        tried = drive(schema, f"http://127.0.0.1:{server.port}")
    assert len(tried) == 4, tried


def wait_for(read: Callable[[], list[str]], count: int) -> list[str]:
    deadline = time.monotonic() + TIMEOUT
    while len(found := read()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(found) == count, found
    return found


def test_an_id_with_a_newline_is_gone(server: Server) -> None:
    """A decoded newline is routed like any other character: an unknown id, 410."""
    url = f"http://127.0.0.1:{server.port}/dev/@connections/a%0Ab"
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(url, timeout=TIMEOUT)
    error.value.close()
    assert error.value.code == 410, error.value.code
    assert error.value.headers["x-amzn-ErrorType"] == "GoneException"
