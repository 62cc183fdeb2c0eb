"""`wsgate bench` as CI runs it: a seconds-long smoke run that must complete and lose nothing.

No timing is asserted: the machine is shared and the figures are the benchmark's to
report, not the suite's to judge. wsgate (one worker and two) and raw websockets run here;
picows' raw server and serverless-offline are left to the full benchmark, and nothing is
installed from npm or, for the Python peers, from PyPI: their smoke run needs the
environment a benchmark run installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT_FACTOR
from wsgate.bench import PEERS, peers

pytestmark = pytest.mark.slow

SCENARIOS = ("echo", "fanout", "connect", "memory")
SERVERS = ("wsgate", "wsgate-2w", "wsgate-sync", "wsgate-3n", "websockets")
KEY_FIGURES = {
    "echo": ("messages_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_message", "client_cpu_s"),
    "fanout": ("deliveries_per_s", "lost", "p50_ms", "p99_ms", "client_cpu_s"),
    "connect": ("connections_per_s", "failures", "client_cpu_s"),
    "memory": ("kb_per_connection", "failures"),
}


def run_bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsgate", "bench", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=150 * TIMEOUT_FACTOR,
    )


@pytest.mark.timeout(180 * TIMEOUT_FACTOR)
def test_smoke_run_completes_every_row_and_loses_nothing(tmp_path: Path) -> None:
    """A 2% run of every scenario exits 0 with every row ok, and writes the JSON it should."""
    out = tmp_path / "bench.json"
    result = run_bench(
        tmp_path,
        "--scale",
        "0.02",
        "--repeat",
        "1",
        "--servers",
        ",".join(SERVERS),
        "--scenarios",
        ",".join(SCENARIOS),
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr

    document = json.loads(out.read_text())
    assert set(document) == {"meta", "counts", "rows", "targets"}
    assert document["meta"]["scale"] == 0.02
    assert document["meta"]["repeat"] == 1
    assert document["meta"]["not_run"] == {}
    rows = {(row["scenario"], row["server"]): row for row in document["rows"]}
    assert set(rows) == {(s, n) for s in SCENARIOS for n in SERVERS}
    for (scenario, server), row in rows.items():
        assert row["status"] == "ok", (scenario, server, row["reason"])
        assert len(row["runs"]) == 1
        for figure in KEY_FIGURES[scenario]:
            assert figure in row["median"], (scenario, server, figure)
        if scenario == "fanout":
            assert row["runs"][0]["lost"] == 0, (server, row)
            assert row["runs"][0]["deliveries"] == 20 * 2  # 1,000 x 100 at 2%
        if scenario in ("connect", "memory"):
            assert row["runs"][0]["failures"] == 0, (scenario, server, row["notes"])
    names = {target["name"] for target in document["targets"]}
    assert "fan-out: deliveries lost by wsgate (worst run)" in names
    for server in ("wsgate", "wsgate-3n"):  # one node, and across three Redis-linked nodes
        lost = next(
            t for t in document["targets"] if t["figure"] == "lost" and t["server"] == server
        )
        assert lost["value"] == 0 and lost["met"] is True, lost
    across = next(t for t in document["targets"] if t["name"].startswith("nodes: fan-out deliv"))
    assert across["value"] is not None and across["value"] > 0, across
    scaling = [t for t in document["targets"] if t["server"] == "wsgate-2w"]
    assert {t["scenario"] for t in scaling} == {"echo", "fanout"}
    assert all(t["value"] > 0 for t in scaling), scaling


@pytest.mark.timeout(180 * TIMEOUT_FACTOR)
def test_peers_smoke_run_speaks_each_framework_and_loses_nothing(tmp_path: Path) -> None:
    """With the peers installed, each serves echo and fan-out (socket.io in its framing)."""
    if not peers.installed(peers.root()):
        pytest.skip(
            "the Python peers are installed by `wsgate bench` on first use (from PyPI), never "
            "by the test suite: `wsgate bench --servers starlette --scale 0.02` installs them"
        )
    out = tmp_path / "bench.json"
    names = ("wsgate", *PEERS)
    result = run_bench(
        tmp_path,
        *("--scale", "0.02", "--repeat", "1", "--scenarios", "echo,fanout"),
        *("--servers", ",".join(names), "--json", str(out)),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(out.read_text())
    rows = {(row["scenario"], row["server"]): row for row in document["rows"]}
    for name in names:
        echo, fanout = rows["echo", name], rows["fanout", name]
        assert echo["status"] == fanout["status"] == "ok", (name, echo, fanout)
        assert echo["runs"][0]["wrong_replies"] == 0, (name, echo)
        assert fanout["runs"][0]["lost"] == 0, (name, fanout)
        assert fanout["runs"][0]["deliveries"] == 20 * 2
    peer_targets = [t for t in document["targets"] if t["reference"] in PEERS]
    assert len(peer_targets) == 2 * len(PEERS)
    assert all(t["value"] is not None and t["value"] > 0 for t in peer_targets), peer_targets


def test_unknown_server_is_a_clean_usage_error(tmp_path: Path) -> None:
    """A typo in --servers is named, with the choices, before anything starts."""
    result = run_bench(tmp_path, "--servers", "wsgate,nginx", "--json", str(tmp_path / "x"))
    assert result.returncode == 2
    assert "unknown server nginx" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()


def test_hot_path_benchmark_runs_and_loses_no_echo(tmp_path: Path) -> None:
    """`python -m wsgate.bench.hotpath` prints its figure; it fails if an echo is lost."""
    result = subprocess.run(
        [sys.executable, "-m", "wsgate.bench.hotpath", "--messages", "500", "--rounds", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60 * TIMEOUT_FACTOR,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "us of CPU per echoed message in the gateway" in result.stdout
