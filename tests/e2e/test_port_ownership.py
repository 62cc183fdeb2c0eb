"""A gateway owns its port: a second `wsgate serve` on it fails, the first keeps its traffic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import recv, ws_connect
from tests.e2e.test_cli import EXAMPLES, assert_clean_error, free_port, run_wsgate, wsgate_serve
from tests.e2e.test_workers import clients_on_both_workers

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("second", [(), ("--workers", "2")], ids=["one", "workers"])
def test_a_second_gateway_cannot_take_the_port_of_workers(
    tmp_path: Path, second: tuple[str, ...]
) -> None:
    """`--workers 2` holds its port alone: a second gateway on it exits with one line, and
    every connection still reaches the first, on both of its workers."""
    port = free_port()
    first = tmp_path / "first"
    first.mkdir()
    with wsgate_serve(str(EXAMPLES / "direct.py"), "--workers", "2", cwd=first, port=port):
        result = run_wsgate(
            "serve", str(EXAMPLES / "echo.py"), *second, "--port", str(port), cwd=tmp_path
        )
        assert_clean_error(result, f"cannot listen on 127.0.0.1:{port}")
        with clients_on_both_workers(f"ws://127.0.0.1:{port}/dev") as (_, ids):
            assert {connection_id[0] for connection_id in ids} == {"A", "B"}
        for _ in range(10):  # the echo app never answers whoAmI with an id
            with ws_connect(f"ws://127.0.0.1:{port}/dev") as ws:
                ws.send(json.dumps({"action": "whoAmI"}))
                assert len(str(recv(ws))) == 16


def test_workers_cannot_take_the_port_of_a_gateway(tmp_path: Path) -> None:
    """`--workers 2` on the port of a single-process gateway exits with one line."""
    port = free_port()
    first = tmp_path / "first"
    first.mkdir()
    with wsgate_serve(str(EXAMPLES / "direct.py"), cwd=first, port=port):
        result = run_wsgate(
            "serve", str(EXAMPLES / "echo.py"), "--workers", "2", "--port", str(port), cwd=tmp_path
        )
        assert_clean_error(result, f"cannot listen on 127.0.0.1:{port}")
