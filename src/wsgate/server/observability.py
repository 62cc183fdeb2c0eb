"""What a gateway tells its operator: access log lines and the numbers behind `/metrics`.

The gateway counts in plain Python (`Metrics`: a dict increment, a bucket found by
bisection), so counting costs a message well under a microsecond and needs no library;
`prometheus-client` (the `metrics` extra) only renders them when `/metrics` is asked,
from a registry of the gateway's own, so several gateways in one process never clash.

Access log lines, in the spirit of API Gateway's access logs, go to the `wsgate.access`
logger: one per connect, message, disconnect and management call. Each is logged with a
single dict of fixed keys (`ACCESS_KEYS`) as its argument: the text format is a
`%`-template over it, formatted only if a handler emits the record; `JsonFormatter`
writes the dict itself, one object per line.
"""

from __future__ import annotations

import bisect
import datetime
import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsgate.server.gateway import Gateway

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

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: over every bound (+Inf)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        buckets: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return buckets


#: What became of a message: its handler returned, raised, timed out; no route took it;
#: over the connection's message rate.
OUTCOMES = ("ok", "error", "timeout", "forbidden", "throttled")


class RouteStats:
    """One route's messages by outcome, and its handler latency."""

    __slots__ = ("outcomes", "latency")

    def __init__(self) -> None:
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.latency = Histogram(HANDLER_BUCKETS)


class Metrics:
    """One gateway's counts since it started, read by `/metrics`."""

    def __init__(self) -> None:
        self.connects: dict[int, int] = {}
        self.disconnects: dict[int, int] = {}
        self.routes: dict[str, RouteStats] = {}
        self.store_seconds: dict[str, Histogram] = {}
        self.slow_consumers_dropped = 0
        #: prometheus-client's registry for these counts, made by the first `/metrics`.
        self.registry: Any = None

    def connect(self, status: int) -> None:
        self.connects[status] = self.connects.get(status, 0) + 1

    def disconnect(self, code: int) -> None:
        self.disconnects[code] = self.disconnects.get(code, 0) + 1

    def message(self, route: str, outcome: str, seconds: float | None) -> None:
        """A message's outcome and, if a handler ran, how long it took (on every message:
        the histogram's work is inlined)."""
        stats = self.routes.get(route)
        if stats is None:
            stats = self.routes[route] = RouteStats()
        stats.outcomes[outcome] += 1
        if seconds is not None:
            latency = stats.latency
            latency.counts[bisect.bisect_left(HANDLER_BUCKETS, seconds)] += 1
            latency.total += seconds

    def store_call(self, operation: str, seconds: float) -> None:
        histogram = self.store_seconds.get(operation)
        if histogram is None:
            histogram = self.store_seconds[operation] = Histogram(STORE_BUCKETS)
        histogram.observe(seconds)


def exposition(gateway: Gateway) -> bytes | None:
    """`/metrics`' body in Prometheus' text format, or None without prometheus-client."""
    try:
        from prometheus_client import CollectorRegistry, generate_latest
    except ImportError:
        return None
    metrics = gateway.metrics
    if metrics.registry is None:
        metrics.registry = CollectorRegistry(auto_describe=False)
        metrics.registry.register(_Collector(gateway))
    body: bytes = generate_latest(metrics.registry)
    return body


class _Collector:
    """Reads a gateway's counts when scraped (prometheus-client's custom collector)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        gateway, metrics, delivery = self.gateway, self.gateway.metrics, self.gateway.delivery
        yield GaugeMetricFamily(
            "wsgate_open_connections", "Connections open on this gateway", len(gateway.live)
        )
        connects = CounterMetricFamily(
            "wsgate_connects", "Handshakes, by the HTTP status answered", labels=["status"]
        )
        for status, count in sorted(metrics.connects.items()):
            connects.add_metric([str(status)], count)
        yield connects
        disconnects = CounterMetricFamily(
            "wsgate_disconnects", "Connections closed, by close code", labels=["code"]
        )
        for code, count in sorted(metrics.disconnects.items()):
            disconnects.add_metric([str(code)], count)
        yield disconnects
        messages = CounterMetricFamily(
            "wsgate_messages_in",
            "Messages received, by route and outcome (ok, error, timeout, forbidden, "
            "throttled)",
            labels=["route", "outcome"],
        )
        for route, stats in sorted(metrics.routes.items()):
            for outcome, count in stats.outcomes.items():
                if count:
                    messages.add_metric([route, outcome], count)
        yield messages
        yield CounterMetricFamily(
            "wsgate_messages_out", "Messages written to this gateway's sockets", delivery.sent
        )
        yield CounterMetricFamily(
            "wsgate_send_failures",
            "Sends refused: too large, or the connection closing",
            delivery.send_failures,
        )
        yield CounterMetricFamily(
            "wsgate_sends_gone", "Sends to connections gone (410 GoneException)", delivery.gone
        )
        yield CounterMetricFamily(
            "wsgate_slow_consumers_dropped",
            "Connections dropped for not reading what was sent to them",
            metrics.slow_consumers_dropped,
        )
        yield _histograms(
            HistogramMetricFamily,
            "wsgate_handler_duration_seconds",
            "Message handler latency, by route",
            "route",
            {
                route: stats.latency
                for route, stats in metrics.routes.items()
                if any(stats.latency.counts)
            },
        )
        yield _histograms(
            HistogramMetricFamily,
            "wsgate_store_duration_seconds",
            "Store call latency: connections added, removed, activity written",
            "operation",
            metrics.store_seconds,
        )


def _histograms(
    family: Any, name: str, documentation: str, label: str, histograms: dict[str, Histogram]
) -> Any:
    metric = family(name, documentation, labels=[label])
    for value, histogram in sorted(histograms.items()):
        metric.add_metric([value], histogram.cumulative(), histogram.total)
    return metric
