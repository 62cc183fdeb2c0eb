"""The Python peers: where and how the benchmark installs them, and how it runs each one.

Nothing here installs anything: the commands are read, not run, and the one failure
exercised is a base interpreter that does not exist.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from wsgate.bench import PEERS, SERVERS, peers, servers
from wsgate.bench.node import Unavailable
from wsgate.bench.report import TARGETS, evaluate
from wsgate.bench.runner import Results, Row
from wsgate.bench.scenarios import Counts
from wsgate.bench.socketio_framing import PATH


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WSGATE_BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_every_peer_is_a_server_the_command_accepts() -> None:
    """`--servers starlette,...` and the default run include the peers."""
    assert set(PEERS) <= set(SERVERS)
    assert set(servers.PEER_APPS) == set(PEERS)


def test_the_pins_are_exact_releases_of_every_framework() -> None:
    """Runs compare only if every peer's release is the same: each pin is `==`."""
    names = {pin.split("==")[0].split("[")[0] for pin in peers.PINS}
    assert all("==" in pin for pin in peers.PINS)
    assert {"starlette", "uvicorn", "wsproto", "python-socketio", "django", "channels"} <= names
    assert "uvloop" in names  # uvicorn's loop, as wsgate's


def test_the_environment_lives_in_the_bench_cache_per_python(cache: Path) -> None:
    """Beside serverless-offline's install, one per Python minor version."""
    major, minor = sys.version_info[:2]
    assert peers.root() == cache / f"python-peers-{major}.{minor}"
    assert peers.python(peers.root()) == peers.root() / "bin" / "python"


def test_the_install_commands_create_a_venv_then_pip_install_the_pins(cache: Path) -> None:
    """`python -m venv`, then the venv's own pip, failing fast without a network."""
    folder = peers.root()
    assert peers.venv_command("/usr/bin/python3", folder) == [
        "/usr/bin/python3",
        "-m",
        "venv",
        str(folder),
    ]
    command = peers.install_command(folder)
    assert command[:4] == [str(folder / "bin" / "python"), "-m", "pip", "install"]
    assert command[-len(peers.PINS) :] == list(peers.PINS)
    assert command[command.index("--retries") + 1] == "1"


def test_installed_means_these_very_pins(cache: Path) -> None:
    """A folder installed with other pins is installed again, not used as it is."""
    folder = peers.root()
    assert not peers.installed(folder)
    folder.mkdir(parents=True)
    (folder / peers.MARKER).write_text("starlette==0.1\n")
    assert not peers.installed(folder)
    (folder / peers.MARKER).write_text("\n".join(peers.PINS) + "\n")
    assert peers.installed(folder)


def test_a_failed_install_says_why_and_where_the_log_is(cache: Path) -> None:
    """The reason shown in the peers' rows names the step and keeps the log's path."""
    with pytest.raises(Unavailable) as caught:
        peers.prepare(base_python=str(cache / "no-such-python"))
    reason = str(caught.value)
    assert reason.startswith("cannot run ")
    log = cache / f"{peers.root().name}-install.log"
    assert log.exists() and "-m venv" in log.read_text()


def test_a_failing_step_names_itself_and_its_last_line(cache: Path) -> None:
    """A step that exits non-zero is reported with its exit status and the log's last line."""
    with pytest.raises(Unavailable) as caught:
        peers.prepare(base_python="false")
    reason = str(caught.value)
    assert reason.startswith("python -m venv failed (1): ")
    assert f"log: {cache}" in reason


@pytest.mark.parametrize("name", PEERS)
def test_each_peer_runs_its_app_with_the_peers_python(name: str, cache: Path) -> None:
    """The app file exists, runs with the venv's python on a port of its own."""
    server = servers.create(name, cache, "t")
    python, app, *options = server.command
    assert python == str(peers.python(peers.root()))
    assert Path(app).is_file() and Path(app).parent == peers.APPS
    assert options[:2] == ["--port", str(server.port)]
    assert server.url.startswith(f"ws://127.0.0.1:{server.port}/")


def test_starlette_runs_on_uvicorns_default_websocket_and_on_wsproto(cache: Path) -> None:
    """The same app twice: uvicorn left to choose, and `--ws wsproto`."""
    default = servers.create("starlette", cache, "t")
    wsproto = servers.create("starlette-wsproto", cache, "t")
    assert default.command[1] == wsproto.command[1]
    assert "--ws" not in default.command
    assert wsproto.command[-2:] == ["--ws", "wsproto"]


def test_the_socketio_peer_is_spoken_to_in_socketio(cache: Path) -> None:
    """Its URL is Engine.IO's WebSocket endpoint and the load generator frames for it."""
    server = servers.create("socketio", cache, "t")
    assert server.url == f"ws://127.0.0.1:{server.port}{PATH}"
    assert server.framing == "socket.io"
    assert {servers.create(n, cache, "t").framing for n in PEERS if n != "socketio"} == {
        "websocket"
    }


def test_each_peer_has_the_echo_cpu_and_fanout_rate_targets() -> None:
    """wsgate at half a peer's CPU per echo and twice its fan-out rate, for every peer."""
    for peer in PEERS:
        mine = [t for t in TARGETS if t.reference == peer]
        assert {(t.scenario, t.figure, t.op, t.bound) for t in mine} == {
            ("echo", "server_cpu_us_per_message", "<=", 0.5),
            ("fanout", "deliveries_per_s", ">=", 2),
        }


def test_a_peer_target_is_judged_on_the_ratio_of_medians() -> None:
    """10 us per echo against a peer's 25 is 0.4: met; 30,000 deliveries/s against 20,000
    is 1.5: not met."""
    results = Results(
        rows=[
            Row("echo", "wsgate", runs=[{"server_cpu_us_per_message": 10}]),
            Row("echo", "channels", runs=[{"server_cpu_us_per_message": 25}]),
            Row("fanout", "wsgate", runs=[{"deliveries_per_s": 30_000}]),
            Row("fanout", "channels", runs=[{"deliveries_per_s": 20_000}]),
        ],
        meta={},
        counts=Counts(),
    )
    verdicts = {
        (e["scenario"], e["reference"]): e
        for e in evaluate(results)
        if e["reference"] == "channels"
    }
    assert verdicts["echo", "channels"]["value"] == 0.4
    assert verdicts["echo", "channels"]["met"] is True
    assert verdicts["fanout", "channels"]["value"] == 1.5
    assert verdicts["fanout", "channels"]["met"] is False
