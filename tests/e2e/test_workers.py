"""`wsgate serve --workers N`: processes on one port that behave as one gateway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from tests.conftest import TIMEOUT, recv, ws_connect
from tests.e2e.test_cli import EXAMPLES, RUN_TIMEOUT, free_port, run_wsgate, wsgate_serve
from tests.integration.test_management import raw_request
from tests.redis_server import RedisServer, redis_url
from wsgate.exceptions import ConfigError
from wsgate.server.workers import worker_store

pytestmark = pytest.mark.slow


@contextmanager
def clients_on_both_workers(url: str) -> Iterator[tuple[list[ClientConnection], list[str]]]:
    """Connections until both workers hold some (the kernel picks); with their ids."""
    with ExitStack() as stack:
        clients: list[ClientConnection] = []
        ids: list[str] = []
        while len({i[0] for i in ids}) < 2 or len(clients) < 6:
            assert len(clients) < 60, f"every connection went to one worker: {ids}"
            ws = stack.enter_context(ws_connect(url))
            ws.send(json.dumps({"action": "whoAmI"}))
            clients.append(ws)
            ids.append(str(recv(ws)))
        yield clients, ids


def management(port: int) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=f"http://127.0.0.1:{port}/dev",
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def test_direct_messages_cross_workers(tmp_path: Path) -> None:
    """sendMessage reaches a connection held by the other worker, and back."""
    port = free_port()
    with (
        wsgate_serve(str(EXAMPLES / "direct.py"), "--workers", "2", cwd=tmp_path, port=port),
        clients_on_both_workers(f"ws://127.0.0.1:{port}/dev") as (clients, ids),
    ):
        first = next(i for i, cid in enumerate(ids) if cid[0] == "A")
        second = next(i for i, cid in enumerate(ids) if cid[0] == "B")
        for sender, receiver in ((first, second), (second, first)):
            message = {"action": "sendMessage", "connectionId": ids[receiver], "message": "hi"}
            clients[sender].send(json.dumps(message))
            assert recv(clients[receiver]) == "hi"
        # A closed connection on the other worker is gone for the sender, as on AWS.
        clients[second].close()
        message = {"action": "sendMessage", "connectionId": ids[second], "message": "late"}
        clients[first].send(json.dumps(message))
        assert json.loads(recv(clients[first]))["error"] == "no open connection with that id"


PUBSUB_APP = """
from wsgate import App, connections

app = App(name="pubsub")

@app.route("whoAmI")
async def who_am_i(event, context):
    await connections.send(event.connection_id, event.connection_id)

@app.route("subscribe")
async def subscribe(event, context):
    await connections.subscribe(event.connection_id, event.json["topic"])
    await connections.send(event.connection_id, "subscribed")

@app.route("publish")
async def publish(event, context):
    count = await connections.publish(event.json["topic"], event.json["data"])
    await connections.send(event.connection_id, f"delivered {count}")

@app.route("broadcast")
async def broadcast(event, context):
    count = await connections.broadcast("to all", exclude=[event.connection_id])
    await connections.send(event.connection_id, f"broadcast {count}")
"""


def test_publish_and_broadcast_reach_every_worker(tmp_path: Path) -> None:
    """A publish reaches the topic's subscribers on both workers; the count adds up."""
    port = free_port()
    app = tmp_path / "pubsub.py"
    app.write_text(PUBSUB_APP)
    store = f"sqlite:///{tmp_path / 'table.db'}"
    with (
        wsgate_serve(str(app), "--workers", "2", "--store", store, cwd=tmp_path, port=port),
        clients_on_both_workers(f"ws://127.0.0.1:{port}/dev") as (clients, ids),
    ):
        subscribers = clients[1:]
        for ws in subscribers:
            ws.send(json.dumps({"action": "subscribe", "topic": "news"}))
            assert recv(ws) == "subscribed"
        clients[0].send(json.dumps({"action": "publish", "topic": "news", "data": "hello"}))
        for ws in subscribers:
            assert recv(ws) == "hello"
        assert recv(clients[0]) == f"delivered {len(subscribers)}"
        clients[0].send(json.dumps({"action": "broadcast"}))
        for ws in subscribers:
            assert recv(ws) == "to all"
        assert recv(clients[0]) == f"broadcast {len(subscribers)}"
        # Each worker keeps its own part of the table in its own file.
        assert (tmp_path / "table.worker0.db").exists()
        assert (tmp_path / "table.worker1.db").exists()


def test_management_api_reaches_every_worker(tmp_path: Path) -> None:
    """boto3 sees one gateway: list, post, get and delete work for every connection."""
    port = free_port()
    with (
        wsgate_serve(str(EXAMPLES / "direct.py"), "--workers", "2", cwd=tmp_path, port=port),
        clients_on_both_workers(f"ws://127.0.0.1:{port}/dev") as (clients, ids),
    ):
        url = f"http://127.0.0.1:{port}/dev/@connections"
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            assert sorted(json.load(response)["connections"]) == sorted(ids)
        api = management(port)
        for ws, connection_id in zip(clients, ids, strict=True):
            api.post_to_connection(ConnectionId=connection_id, Data=b"from boto3")
            assert recv(ws) == "from boto3"
            assert api.get_connection(ConnectionId=connection_id)["Identity"]["SourceIp"]
        for ws, connection_id in list(zip(clients, ids, strict=True))[:2]:
            api.delete_connection(ConnectionId=connection_id)
            with pytest.raises(ConnectionClosed) as closed:
                recv(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
        with pytest.raises(api.exceptions.GoneException):
            api.post_to_connection(ConnectionId=ids[0], Data=b"too late")


def test_sigint_stops_every_worker(tmp_path: Path) -> None:
    """Ctrl+C stops the supervisor and its workers cleanly (exit 0, sockets closed 1001)."""
    port = free_port()
    with (
        wsgate_serve(str(EXAMPLES / "echo.py"), "--workers", "2", cwd=tmp_path, port=port) as proc,
        ws_connect(f"ws://127.0.0.1:{port}/dev") as ws,
    ):
        proc.send_signal(signal.SIGINT)
        with pytest.raises(ConnectionClosed) as closed:
            recv(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert proc.wait(timeout=RUN_TIMEOUT) == 0


def test_a_dead_worker_stops_the_gateway(tmp_path: Path) -> None:
    """If a worker dies, the supervisor stops the others and exits 1, loudly."""
    port = free_port()
    with wsgate_serve(str(EXAMPLES / "echo.py"), "--workers", "2", cwd=tmp_path, port=port) as proc:
        workers = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=True
        ).stdout.split()
        assert len(workers) == 2
        subprocess.run(["kill", "-KILL", workers[0]], check=True)
        assert proc.wait(timeout=RUN_TIMEOUT) == 1
    log = next(tmp_path.glob("serve-*.log")).read_text()
    assert "exited; stopping the others" in log


def test_workers_refuse_a_shared_store() -> None:
    """DynamoDB is shared by every process: --workers says why it cannot use it (yet)."""
    result = run_wsgate(
        "serve", str(EXAMPLES / "echo.py"), "--workers", "2", "--store", "dynamodb://table"
    )
    assert result.returncode != 0
    assert "one worker per node" in result.stderr


def test_worker_store_gives_each_worker_its_own_file() -> None:
    assert worker_store("sqlite:///.wsgate/wsgate.db", 1) == "sqlite:///.wsgate/wsgate.worker1.db"
    assert worker_store("sqlite:////tmp/x.db", 0) == "sqlite:////tmp/x.worker0.db"
    assert worker_store("memory://", 3) == "memory://"
    with pytest.raises(ConfigError):
        worker_store("dynamodb://table", 0)


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """SIGKILL leaves no chance to forward a signal: the workers notice and stop anyway."""
    port = free_port()
    with wsgate_serve(str(EXAMPLES / "echo.py"), "--workers", "2", cwd=tmp_path, port=port) as proc:
        workers = [
            int(pid)
            for pid in subprocess.run(
                ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=True
            ).stdout.split()
        ]
        assert len(workers) == 2
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + RUN_TIMEOUT
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.monotonic() < deadline, f"workers {workers} outlived their supervisor"
        time.sleep(0.05)


def test_workers_on_redis_share_the_port_and_stop_with_the_supervisor(tmp_path: Path) -> None:
    """With a Redis store each worker is a node, and still a worker: all of them listen on
    the shared port, worker 0 alone says it is ready, and they stop when the supervisor
    is killed."""
    port = free_port()
    with (
        RedisServer() as redis_server,
        wsgate_serve(
            str(EXAMPLES / "echo.py"),
            "--workers",
            "2",
            "--store",
            redis_url(redis_server.port),
            cwd=tmp_path,
            port=port,
        ) as proc,
    ):
        time.sleep(1)  # long enough for every worker to have bound the port, or failed to
        assert proc.poll() is None, next(tmp_path.glob("serve-*.log")).read_text()
        workers = [
            int(pid)
            for pid in subprocess.run(
                ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=True
            ).stdout.split()
        ]
        assert len(workers) == 2
        with ws_connect(f"ws://127.0.0.1:{port}/dev") as ws:
            ws.send("ping")
            assert recv(ws) == "ping"
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + RUN_TIMEOUT
        while any(Path(f"/proc/{pid}").exists() for pid in workers):
            assert time.monotonic() < deadline, f"workers {workers} outlived their supervisor"
            time.sleep(0.05)
    log = next(tmp_path.glob("serve-*.log")).read_text()
    assert log.count("wsgate: serving") == 1, log
    assert "on 2 workers" in log


def scrape(port: int) -> tuple[int, bytes]:
    """One `GET /metrics`, on a new connection: the kernel gives it to either worker."""
    return raw_request(port, "GET", "/metrics")[::2]


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def worker_pids(supervisor: int) -> list[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [int(pid) for pid in children]


def test_metrics_add_up_over_workers(tmp_path: Path) -> None:
    """Whichever worker a scrape reaches, /metrics shows the whole gateway's totals; a
    worker that does not answer (stopped) makes /metrics and /health 503 until it does."""
    port = free_port()
    with (
        wsgate_serve(
            str(EXAMPLES / "direct.py"), "--workers", "2", cwd=tmp_path, port=port
        ) as supervisor,
        clients_on_both_workers(f"ws://127.0.0.1:{port}/dev") as (clients, ids),
    ):
        count = len(clients)
        for _ in range(8):  # new connections each: both workers answer some
            status, body = scrape(port)
            assert status == 200
            metrics = samples(body)
            assert metrics[("wsgate_open_connections", ())] == count
            assert metrics[("wsgate_connects_total", (("status", "101"),))] == count
            ok = ("wsgate_messages_in_total", (("outcome", "ok"), ("route", "whoAmI")))
            assert metrics[ok] == count
            assert metrics[("wsgate_messages_out_total", ())] == count
            latency = ("wsgate_handler_duration_seconds_count", (("route", "whoAmI"),))
            assert metrics[latency] == count
            assert raw_request(port, "GET", "/health")[0] == 200

        stopped = worker_pids(supervisor.pid)[1]
        os.kill(stopped, signal.SIGSTOP)  # the other worker takes every new connection
        try:
            status, body = scrape(port)
            assert status == 503 and b"did not answer" in body
            assert raw_request(port, "GET", "/health")[0] == 503
        finally:
            os.kill(stopped, signal.SIGCONT)
        assert scrape(port)[0] == 200
