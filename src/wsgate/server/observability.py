"""What a gateway tells its operator: access log lines and the numbers behind `/metrics`.

The gateway counts in plain ints and lists (`Metrics`; a message's handler run is a
bucket found by bisection and a sum, recorded inline by the gateway), so counting needs
no library and no lock, and writes no file. A scrape reads them as a `Snapshot`, plain
data: with `--workers N`, every worker's are gathered over the workers' bus and added up
(`scrape`), so whichever worker a scrape reaches answers for the whole gateway.
`prometheus-client` (the `metrics` extra) only renders a snapshot when `/metrics` is
asked, through a collector of its own, so several gateways in one process never clash.

Access log lines, in the spirit of API Gateway's access logs, go to the `wsgate.access`
logger: one per connect, message, disconnect and management call. Each is logged with a
single dict of fixed keys (`ACCESS_KEYS`) as its argument: the text format is a
`%`-template over it, formatted only if a handler emits the record; `JsonFormatter`
writes the dict itself, one object per line.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import datetime
import json
import logging
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from wsgate.server.delivery import NodeFailed, NodeUnreachable

if TYPE_CHECKING:
    from wsgate.server.gateway import Gateway
    from wsgate.server.peers import Peers

access_log = logging.getLogger("wsgate.access")

#: Every access line's keys, None where they do not apply (a message has no close code).
ACCESS_KEYS = (
    "event",
    "connectionId",
    "sourceIp",
    "routeKey",
    "status",
    "latencyMs",
    "closeCode",
    "closeReason",
    "durationMs",
    "method",
    "path",
)

#: The text line of each access event, a `%`-template over its fields.
ACCESS_LINES = {
    "connect": "connect %(status)s %(routeKey)s %(connectionId)s from %(sourceIp)s "
    "in %(latencyMs)s ms",
    "message": "message %(status)s %(routeKey)s %(connectionId)s in %(latencyMs)s ms",
    "disconnect": "disconnect %(closeCode)s %(closeReason)r %(connectionId)s after "
    "%(durationMs)s ms",
    "management": "management %(status)s %(method)s %(path)s from %(sourceIp)s",
}

#: The route of a message no route took (no `$default`: API Gateway's Forbidden).
NO_ROUTE = "-"

#: Handler latency buckets, seconds: sub-millisecond echoes up to API Gateway's 29 s.
HANDLER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0)  # fmt: skip
#: Store call latency buckets, seconds: memory and SQLite in microseconds, DynamoDB in tens
#: of milliseconds.
STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                 0.25, 0.5, 1.0, 2.5)  # fmt: skip

#: What `/metrics` answers when prometheus-client is not installed.
METRICS_HINT = "/metrics needs prometheus-client: pip install 'wsgate[metrics]'\n"


def access(event: str, **fields: Any) -> None:
    """Log one access line (the caller checked `Gateway.access_log` first)."""
    record = dict.fromkeys(ACCESS_KEYS)
    record.update(fields, event=event)
    access_log.info(ACCESS_LINES[event], record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: an access line's fixed keys, else time, level, logger
    and message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        time = datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat()
        args = record.args
        if isinstance(args, dict) and "event" in args:
            return json.dumps({"time": time, **args})
        line: dict[str, Any] = {
            "time": time,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


class Histogram:
    """Counts per bucket (not cumulative: the exposition adds them up) and their sum."""

    __slots__ = ("counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.counts = [0] * (len(bounds) + 1)  # the last: over every bound (+Inf)
        self.total = 0.0


class RouteStats(Histogram):
    """One route's handler runs: their latency, and how many failed or timed out (the
    rest were ok, so a message that went well costs a bucket and a sum, nothing more)."""

    __slots__ = ("errors", "timeouts")

    def __init__(self) -> None:
        super().__init__(HANDLER_BUCKETS)
        self.errors = self.timeouts = 0


class Metrics:
    """One gateway's counts since it started, in plain ints and lists, read by `/metrics`.

    The gateway records a message's handler run itself, inline (`Gateway._handle_message`:
    a bucket found by bisection, a sum): the hot path calls nothing here.
    """

    def __init__(self) -> None:
        self.connects: dict[int, int] = {}
        self.disconnects: dict[int, int] = {}
        #: Handler runs by route key (a route's stats made by its first message).
        self.routes: defaultdict[str, RouteStats] = defaultdict(RouteStats)
        #: Messages no route took, and messages over the connection's message rate.
        self.forbidden = self.throttled = 0
        self.store_seconds: dict[str, Histogram] = {}
        self.slow_consumers_dropped = 0

    def connect(self, status: int) -> None:
        self.connects[status] = self.connects.get(status, 0) + 1

    def disconnect(self, code: int) -> None:
        self.disconnects[code] = self.disconnects.get(code, 0) + 1

    def store_call(self, operation: str, seconds: float) -> None:
        histogram = self.store_seconds.get(operation)
        if histogram is None:
            histogram = self.store_seconds[operation] = Histogram(STORE_BUCKETS)
        histogram.counts[bisect.bisect_left(STORE_BUCKETS, seconds)] += 1
        histogram.total += seconds


# -- what /metrics answers -------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Family:
    """One metric family of `/metrics`: its name, type, help text, labels, buckets."""

    name: str
    kind: str  # "counter", "gauge" or "histogram"
    documentation: str
    labels: tuple[str, ...] = ()
    bounds: tuple[float, ...] = ()


FAMILIES = (
    Family("wsgate_open_connections", "gauge", "Connections open on this gateway"),
    Family("wsgate_connects", "counter", "Handshakes, by the HTTP status answered", ("status",)),
    Family("wsgate_disconnects", "counter", "Connections closed, by close code", ("code",)),
    Family(
        "wsgate_messages_in",
        "counter",
        "Messages received, by route and outcome (ok, error, timeout, forbidden, throttled)",
        ("route", "outcome"),
    ),
    Family("wsgate_messages_out", "counter", "Messages written to this gateway's sockets"),
    Family(
        "wsgate_send_failures", "counter", "Sends refused: too large, or the connection closing"
    ),
    Family("wsgate_sends_gone", "counter", "Sends to connections gone (410 GoneException)"),
    Family(
        "wsgate_slow_consumers_dropped",
        "counter",
        "Connections dropped for not reading what was sent to them",
    ),
    Family(
        "wsgate_handler_duration_seconds",
        "histogram",
        "Message handler latency, by route",
        ("route",),
        HANDLER_BUCKETS,
    ),
    Family(
        "wsgate_store_duration_seconds",
        "histogram",
        "Store call latency: connections added, removed, activity written",
        ("operation",),
        STORE_BUCKETS,
    ),
)

#: A gateway's (or several workers') counts as plain, picklable data: by family name,
#: then by label values, a number (counters, gauges) or, for a histogram, its
#: non-cumulative bucket counts and their sum.
Snapshot = dict[str, dict[tuple[str, ...], Any]]


def snapshot(gateway: Gateway) -> Snapshot:
    """What `gateway` has counted so far, to render or to add to the other workers'."""
    metrics, delivery = gateway.metrics, gateway.delivery
    messages: dict[tuple[str, ...], int] = {}
    for route, stats in metrics.routes.items():
        counts = {
            "ok": sum(stats.counts) - stats.errors - stats.timeouts,
            "error": stats.errors,
            "timeout": stats.timeouts,
        }
        messages.update(((route, outcome), n) for outcome, n in counts.items() if n)
    for outcome, count in (("forbidden", metrics.forbidden), ("throttled", metrics.throttled)):
        if count:
            messages[NO_ROUTE, outcome] = messages.get((NO_ROUTE, outcome), 0) + count
    return {
        "wsgate_open_connections": {(): len(gateway.live)},
        "wsgate_connects": {(str(k),): n for k, n in metrics.connects.items()},
        "wsgate_disconnects": {(str(k),): n for k, n in metrics.disconnects.items()},
        "wsgate_messages_in": messages,
        "wsgate_messages_out": {(): delivery.sent},
        "wsgate_send_failures": {(): delivery.send_failures},
        "wsgate_sends_gone": {(): delivery.gone},
        "wsgate_slow_consumers_dropped": {(): metrics.slow_consumers_dropped},
        "wsgate_handler_duration_seconds": {
            (route,): (list(stats.counts), stats.total) for route, stats in metrics.routes.items()
        },
        "wsgate_store_duration_seconds": {
            (op,): (list(h.counts), h.total) for op, h in metrics.store_seconds.items()
        },
    }


def add(total: Snapshot, part: Snapshot) -> None:
    """Add `part`'s counts to `total`'s, label set by label set (bucket by bucket)."""
    for name, samples in part.items():
        into = total.setdefault(name, {})
        for labels, value in samples.items():
            have = into.get(labels)
            if have is None:
                into[labels] = value
            elif isinstance(value, tuple):
                counts = [a + b for a, b in zip(have[0], value[0], strict=True)]
                into[labels] = (counts, have[1] + value[1])
            else:
                into[labels] = have + value


#: How long `/metrics` and `/health` of `--workers N` wait for the other workers' answers.
SCRAPE_TIMEOUT = 2.0


@dataclasses.dataclass(slots=True)
class Scrape:
    """What every worker of a gateway answered: their counts added up, whether one is
    draining (stopping), and the workers that did not answer within SCRAPE_TIMEOUT."""

    counts: Snapshot
    draining: bool
    unanswered: list[int]


async def worker_state(gateway: Gateway) -> tuple[bool, Snapshot]:
    """One worker's answer to another's scrape (the `metrics` operation of the workers'
    bus): whether it is stopping, and its counts."""
    return gateway.stopping, snapshot(gateway)


async def scrape(gateway: Gateway, workers: Peers | None) -> Scrape:
    """This gateway's counts plus, with `workers` (`wsgate serve --workers N`), every other
    worker's, asked over the workers' bus: whichever worker a scrape reaches answers for
    the whole gateway."""
    result = Scrape(snapshot(gateway), gateway.stopping, [])
    if workers is None:
        return result

    async def ask(worker: int) -> tuple[bool, Snapshot] | None:
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT):
                answer: tuple[bool, Snapshot] = await workers.call(worker, "metrics")
                return answer
        except (TimeoutError, NodeUnreachable, NodeFailed):
            return None

    others = workers.others
    for worker, answer in zip(others, await asyncio.gather(*map(ask, others)), strict=True):
        if answer is None:
            result.unanswered.append(worker)
        else:
            result.draining = result.draining or answer[0]
            add(result.counts, answer[1])
    return result


def exposition(counts: Snapshot) -> bytes | None:
    """`/metrics`' body in Prometheus' text format, or None without prometheus-client."""
    try:
        from prometheus_client import generate_latest
    except ImportError:
        return None
    body: bytes = generate_latest(_Collector(counts))
    return body


class _Collector:
    """A snapshot as prometheus-client's metric families (a custom collector)."""

    def __init__(self, counts: Snapshot) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        kinds = {
            "counter": CounterMetricFamily,
            "gauge": GaugeMetricFamily,
            "histogram": HistogramMetricFamily,
        }
        for family in FAMILIES:
            metric = kinds[family.kind](
                family.name, family.documentation, labels=list(family.labels)
            )
            for labels, value in sorted(self.counts.get(family.name, {}).items()):
                if family.kind == "histogram":
                    counts, total = value
                    metric.add_metric(list(labels), _cumulative(family.bounds, counts), total)
                else:
                    metric.add_metric(list(labels), value)
            yield metric


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, int]]:
    buckets: list[tuple[str, int]] = []
    running = 0
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
    return buckets
