"""Access log lines, `/metrics` and `/health` of a running gateway."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TIMEOUT, management_client, recv, ws_connect
from tests.integration.test_management import raw_request
from wsgate import App
from wsgate.core.limits import Limits
from wsgate.exceptions import ConfigError
from wsgate.server.modes import ServeConfig, configure_logging
from wsgate.server.observability import ACCESS_KEYS, JsonFormatter, access
from wsgate.server.peers import Peers
from wsgate.testing import HandshakeRefused, TestGateway


class Lines(logging.Handler):
    """What one logger emits, as JSON lines (`--log-format json`) and as records."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self.records: list[logging.LogRecord] = []
        self.json: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.json.append(json.loads(self.format(record)))

    def wait_for(self, found: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for line in self.json:
                if found(line):
                    return line
            time.sleep(0.01)
        raise AssertionError(f"no such line in {self.json}")


@pytest.fixture
def capture() -> Iterator[Callable[[str], Lines]]:
    attached: list[tuple[logging.Logger, Lines, int]] = []

    def attach(name: str) -> Lines:
        logger = logging.getLogger(name)
        lines = Lines()
        attached.append((logger, lines, logger.level))
        logger.addHandler(lines)
        logger.setLevel(logging.INFO)
        return lines

    yield attach
    for logger, lines, level in attached:
        logger.removeHandler(lines)
        logger.setLevel(level)


def observed_app() -> App:
    app = App()

    @app.on_connect
    def connect(event: Any, context: Any) -> Any:
        if "refuse" in (event.get("queryStringParameters") or {}):
            return {"statusCode": 401}
        return None

    @app.route("echo")
    async def echo(event: Any, context: Any) -> None:
        from wsgate import connections

        await connections.send(event.connection_id, event["body"])

    @app.route("boom")
    async def boom(event: Any, context: Any) -> None:
        raise RuntimeError("boom")

    @app.route("slow")
    async def slow(event: Any, context: Any) -> None:
        await asyncio.sleep(TIMEOUT)

    return app


def test_access_log_lines(capture: Callable[[str], Lines]) -> None:
    """A line per connect, message (ok, error, timeout, forbidden), management call and
    disconnect, with fixed keys; a failing handler's traceback is logged once."""
    access, everything = capture("wsgate.access"), capture("wsgate")
    limits = Limits(handler_timeout=0.3)
    with TestGateway(observed_app(), limits=limits, access_log=True) as gateway:
        client = gateway.connect()
        connection_id = client.connection_id
        for action in ("echo", "boom", "slow", "nothing"):
            client.send({"action": action})
            recv(client.websocket)
        management_client(gateway.server).get_connection(ConnectionId=connection_id)
        client.close(4000, "bye")
        disconnect = access.wait_for(lambda line: line["event"] == "disconnect")

    keys = set(access.json[0])
    assert all(set(line) == keys for line in access.json)  # one fixed set of keys
    connect = access.wait_for(lambda line: line["event"] == "connect")
    assert connect["status"] == 101 and connect["routeKey"] == "$connect"
    assert connect["connectionId"] == connection_id and connect["sourceIp"] == "127.0.0.1"
    assert isinstance(connect["latencyMs"], float)
    messages = [line for line in access.json if line["event"] == "message"]
    assert [(line["routeKey"], line["status"]) for line in messages] == [
        ("echo", "ok"),
        ("boom", "error"),
        ("slow", "timeout"),
        ("-", "forbidden"),
    ]
    assert messages[2]["latencyMs"] >= 300 and messages[0]["sourceIp"] == "127.0.0.1"
    management = access.wait_for(lambda line: line["event"] == "management")
    assert (management["method"], management["status"]) == ("GET", 200)
    assert management["connectionId"] == connection_id
    assert management["path"] == f"/dev/@connections/{connection_id}".replace("=", "%3D")
    assert (disconnect["closeCode"], disconnect["closeReason"]) == (4000, "bye")
    assert disconnect["durationMs"] >= 300
    text = [record.getMessage() for record in access.records]
    assert text[0].startswith(f"connect 101 $connect {connection_id} from 127.0.0.1 in ")
    assert f"disconnect 4000 'bye' {connection_id} after " in text[-1]
    tracebacks = [record for record in everything.records if record.exc_info]
    assert len(tracebacks) == 1
    assert "boom" in tracebacks[0].getMessage()
    assert connection_id in tracebacks[0].getMessage()


def test_no_access_log_by_default(capture: Callable[[str], Lines]) -> None:
    """`serve()` logs no access lines unless asked: an embedding program's log is its own."""
    access = capture("wsgate.access")
    with TestGateway(observed_app()) as gateway:
        client = gateway.connect()
        client.send({"action": "echo"})
        recv(client.websocket)
    assert access.json == []


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, headers, body = raw_request(port, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_metrics_after_a_known_sequence() -> None:
    """Connects by status, messages by route and outcome, sends, 410s, handler latency,
    disconnects by code and open connections, in Prometheus' text format."""
    with TestGateway(observed_app()) as gateway:
        port = gateway.server.port
        with pytest.raises(HandshakeRefused):
            gateway.connect(query={"refuse": "1"})
        first, second = gateway.connect(), gateway.connect()
        for action in ("echo", "echo", "boom", "nothing"):
            first.send({"action": action})
            recv(first.websocket)
        client = management_client(gateway.server)
        client.post_to_connection(ConnectionId=second.connection_id, Data=b"hi")
        assert recv(second.websocket) == "hi"
        with pytest.raises(client.exceptions.GoneException):
            client.post_to_connection(ConnectionId="bm90aGVyZQ=", Data=b"hi")
        second.close(1000)
        deadline = time.monotonic() + TIMEOUT
        while scrape(port).get(("wsgate_disconnects_total", (("code", "1000"),))) != 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        metrics = scrape(port)

    assert metrics[("wsgate_open_connections", ())] == 1
    assert metrics[("wsgate_connects_total", (("status", "101"),))] == 2
    assert metrics[("wsgate_connects_total", (("status", "401"),))] == 1
    in_ = "wsgate_messages_in_total"
    assert metrics[(in_, (("outcome", "ok"), ("route", "echo")))] == 2
    assert metrics[(in_, (("outcome", "error"), ("route", "boom")))] == 1
    assert metrics[(in_, (("outcome", "forbidden"), ("route", "-")))] == 1
    assert metrics[("wsgate_messages_out_total", ())] == 3  # two echoes, one post
    assert metrics[("wsgate_sends_gone_total", ())] == 1
    assert metrics[("wsgate_slow_consumers_dropped_total", ())] == 0
    latency = "wsgate_handler_duration_seconds"
    assert metrics[(f"{latency}_count", (("route", "echo"),))] == 2
    assert metrics[(f"{latency}_bucket", (("le", "+Inf"), ("route", "boom")))] == 1
    assert (f"{latency}_count", (("route", "-"),)) not in metrics  # no handler ran
    store = "wsgate_store_duration_seconds_count"
    assert metrics[(store, (("operation", "add_connection"),))] == 2
    assert metrics[(store, (("operation", "remove_connection"),))] == 1


def test_gateways_in_one_process_count_apart() -> None:
    """Each gateway has its own registry: a second one starts from zero."""
    with TestGateway(observed_app()) as one, TestGateway(observed_app()) as two:
        one.connect()
        assert scrape(one.server.port)[("wsgate_connects_total", (("status", "101"),))] == 1
        assert ("wsgate_connects_total", (("status", "101"),)) not in scrape(two.server.port)


def test_metrics_without_prometheus_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the `metrics` extra, /metrics is a 501 saying what to install."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with TestGateway(observed_app()) as gateway:
        status, _, body = raw_request(gateway.server.port, "GET", "/metrics")
    assert status == 501 and b"wsgate[metrics]" in body


def test_health_serving_then_draining() -> None:
    """/health is 200 while serving, 503 once stopping (a `$disconnect` still running)."""
    app = App()

    @app.on_disconnect
    async def disconnect(event: Any, context: Any) -> None:
        await asyncio.sleep(1)

    gateway = TestGateway(app).start()
    port = gateway.server.port
    kept_alive = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)

    def health() -> tuple[int, Any]:
        kept_alive.request("GET", "/health")
        response = kept_alive.getresponse()
        return response.status, json.loads(response.read())

    try:
        with ws_connect(gateway.server.url):
            assert health() == (200, {"status": "serving"})
            stopping = threading.Thread(target=gateway.stop)
            stopping.start()
            deadline = time.monotonic() + TIMEOUT
            while (answer := health())[0] == 200:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert answer == (503, {"status": "draining"})
            stopping.join(TIMEOUT)
    finally:
        kept_alive.close()
        gateway.stop()


@pytest.mark.parametrize("path", ["/metrics", "/health"])
def test_refused_for_a_forged_host(path: str) -> None:
    """Like the management API: a Host it does not answer for gets 403 (DNS rebinding)."""
    with TestGateway(App()) as gateway:
        port = gateway.server.port
        status, _, body = raw_request(port, "GET", path, host="evil.example")
        assert status == 403 and b"DNS rebinding" in body
        assert raw_request(port, "GET", path)[0] == 200


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_log_config_file(tmp_path: Path, suffix: str) -> None:
    """`--log-config` takes a dictConfig, JSON or YAML: here, access lines as JSON to a file."""
    written = tmp_path / "access.log"
    settings = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "wsgate.server.observability.JsonFormatter"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(written), "formatter": "json"}
        },
        "loggers": {"wsgate.access": {"handlers": ["file"], "level": "INFO"}},
    }
    config_file = tmp_path / f"logging{suffix}"
    config_file.write_text(json.dumps(settings))  # JSON is YAML too
    logger = logging.getLogger("wsgate.access")
    before = logger.handlers[:], logger.level
    try:
        configure_logging(ServeConfig(log_config=str(config_file)))
        access("disconnect", connectionId="abc=", closeCode=1000, closeReason="", durationMs=5)
    finally:
        for handler in logger.handlers:
            handler.close()
        logger.handlers[:], logger.level = before
    line = json.loads(written.read_text())
    assert line["event"] == "disconnect" and line["closeCode"] == 1000
    assert set(line) == {"time", *ACCESS_KEYS}


def test_log_config_that_cannot_load(tmp_path: Path) -> None:
    broken = tmp_path / "logging.json"
    broken.write_text('{"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}')
    with pytest.raises(ConfigError, match="--log-config"):
        configure_logging(ServeConfig(log_config=str(broken)))


def test_throttled_messages(capture: Callable[[str], Lines]) -> None:
    """A message over --message-rate is logged and counted as `throttled`; no handler ran."""
    access = capture("wsgate.access")
    limits = Limits(message_rate=0.001, message_burst=1)
    with TestGateway(observed_app(), limits=limits, access_log=True) as gateway:
        client = gateway.connect()
        for _ in range(2):
            client.send({"action": "echo"})
            recv(client.websocket)
        throttled = access.wait_for(lambda line: line["status"] == "throttled")
        metrics = scrape(gateway.server.port)
    assert throttled["routeKey"] == "-" and throttled["connectionId"] == client.connection_id
    assert metrics[("wsgate_messages_in_total", (("outcome", "throttled"), ("route", "-")))] == 1


def test_workers_metrics_add_up(tmp_path: Path) -> None:
    """With workers, a scrape of any one answers for all: counts, open connections and
    latency buckets added up per label set; /health serving while every worker serves."""
    with (
        TestGateway(observed_app(), peers=Peers(0, 2, tmp_path)) as first,
        TestGateway(observed_app(), peers=Peers(1, 2, tmp_path)) as second,
    ):
        on_first = [first.connect(), first.connect()]
        on_second = second.connect()
        for client in (*on_first, on_second):
            client.send({"action": "echo"})
            recv(client.websocket)
        on_second.send({"action": "boom"})
        recv(on_second.websocket)
        totals = [scrape(gateway.server.port) for gateway in (first, second)]
        health = [raw_request(gateway.server.port, "GET", "/health") for gateway in (first, second)]

    assert totals[0] == totals[1]
    metrics = totals[0]
    assert metrics[("wsgate_open_connections", ())] == 3
    assert metrics[("wsgate_connects_total", (("status", "101"),))] == 3
    in_ = "wsgate_messages_in_total"
    assert metrics[(in_, (("outcome", "ok"), ("route", "echo")))] == 3
    assert metrics[(in_, (("outcome", "error"), ("route", "boom")))] == 1
    assert metrics[("wsgate_messages_out_total", ())] == 3
    latency = "wsgate_handler_duration_seconds"
    assert metrics[(f"{latency}_count", (("route", "echo"),))] == 3
    assert metrics[(f"{latency}_bucket", (("le", "+Inf"), ("route", "echo")))] == 3
    store = "wsgate_store_duration_seconds_count"
    assert metrics[(store, (("operation", "add_connection"),))] == 3
    for status, _, body in health:
        assert (status, json.loads(body)) == (200, {"status": "serving"})


def test_workers_metrics_while_one_drains_or_is_gone(tmp_path: Path) -> None:
    """/health is 503 draining while another worker stops; once it is gone, /metrics and
    /health are 503 (no partial sum: a counter that drops reads as a reset)."""
    app = App()

    @app.on_disconnect
    async def disconnect(event: Any, context: Any) -> None:
        await asyncio.sleep(1)

    with TestGateway(app, peers=Peers(0, 2, tmp_path)) as first:
        port = first.server.port
        second = TestGateway(app, peers=Peers(1, 2, tmp_path)).start()
        try:
            second.connect()
            assert raw_request(port, "GET", "/health")[0] == 200
            stopping = threading.Thread(target=second.stop)
            stopping.start()
            deadline = time.monotonic() + TIMEOUT
            while (answer := raw_request(port, "GET", "/health"))[0] == 200:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert (answer[0], json.loads(answer[2])) == (503, {"status": "draining"})
            stopping.join(TIMEOUT)
        finally:
            second.stop()
        status, _, body = raw_request(port, "GET", "/metrics")
        assert status == 503 and b"worker 1 did not answer" in body
        status, _, body = raw_request(port, "GET", "/health")
        assert (status, json.loads(body)) == (503, {"status": "unresponsive", "workers": [1]})
