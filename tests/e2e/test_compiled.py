"""The compiled build (mypyc, see setup.py) behaves as the pure one: a test of the wheel.

Builds the wheel users install from this checkout into a venv of its own, cached by the
hash of the sources (wsgate.bench.build, which `wsgate bench --build compiled` uses too),
then runs a named part of this suite with the installed wheel as `wsgate` (the checkout's
`src` is not on the path). The part: tests/unit (every compiled module's own tests) and
the integration tests of what a message passes through, the gateway, the front door,
clients that misbehave, and messages between workers: a minute or two. Not the whole
suite, which would not fit the ten minutes a test may take with a build, and not
test_examples, whose DynamoDB runs need moto's server in the venv too.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from wsgate.bench.build import compiled_venv, run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
SUITE = [
    "tests/unit",
    "tests/integration/test_gateway.py",
    "tests/integration/test_front_door.py",
    "tests/integration/test_hostile_clients.py",
    "tests/e2e/test_workers.py::test_direct_messages_cross_workers",
    "tests/e2e/test_workers.py::test_publish_and_broadcast_reach_every_worker",
    # nodes speak JSON over Redis: lists where the pure build's tuples were (mypyc checks)
    "tests/integration/test_redis_bus.py",
    "tests/e2e/test_nodes.py::test_send_message_crosses_nodes",
    "tests/e2e/test_nodes.py::test_publish_reaches_each_subscriber_once_in_order",
    "tests/e2e/test_nodes.py::test_broadcast_reaches_every_node",
    "tests/e2e/test_nodes.py::test_management_api_on_every_node",
]


def test_the_compiled_wheel_passes_the_hot_path_tests() -> None:
    """`wsgate --version` says compiled, `wsgate` is the wheel's, the named tests pass."""
    venv = compiled_venv(ROOT)
    python = venv / "bin/python"
    assert "compiled (mypyc)" in run([venv / "bin/wsgate", "--version"])
    modules = "wsgate, wsgate.core.routing as r, wsgate.server.connection as c"
    where = run([python, "-c", f"import {modules}; print(wsgate.__file__, r.__file__, c.__file__)"])
    assert where.startswith(str(venv)), where
    assert all(path.endswith(".so") for path in where.split()[1:]), where
    run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "-x", *SUITE],
        cwd=ROOT,
        timeout=480,
    )


def test_the_benchmark_runs_its_wsgate_servers_on_the_compiled_build(tmp_path: Path) -> None:
    """`wsgate bench --build compiled` serves wsgate from the compiled wheel's venv and, with
    `--pin-client`, keeps the load generator on its CPU and the servers on the others."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("--pin-client needs two CPUs: one for the load generator, one for servers")
    out = tmp_path / "bench.json"
    args = ["--build", "compiled", "--pin-client", str(cpus[0]), "--json", str(out)]
    run(
        [sys.executable, "-m", "wsgate", "bench", "--scale", "0.02", "--repeat", "1",
         "--servers", "wsgate,wsgate-2w", "--scenarios", "echo,fanout", *args],
        cwd=tmp_path,
        timeout=480,
    )  # fmt: skip
    document = json.loads(out.read_text())
    assert document["meta"]["wsgate_build"] == "compiled (mypyc)"
    assert document["meta"]["client_cpus"] == cpus[:1]
    assert document["meta"]["server_cpus"] == cpus[1:]
    assert {row["status"] for row in document["rows"]} == {"ok"}
    assert all(row["runs"][0]["lost"] == 0 for row in document["rows"] if "lost" in row["median"])
