"""The four scenarios, each a coroutine that drives one running server and returns figures.

Figures are plain floats keyed by name; CPU comes from /proc for the server and from
`time.process_time()` for the load generator (this process), over the measured window
only: connecting the clients of echo and fan-out happens before it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, fields, replace

from wsgate.bench.client import Client, Connection, OnMessage
from wsgate.bench.procs import ServerProcess
from wsgate.bench.protocol import (
    SEQ_AT,
    SEQ_END,
    SUBSCRIBED,
    TIME_AT,
    TIME_END,
    echo_message,
    publish_message,
    subscribe_message,
)

Figures = dict[str, float]
#: A run's figures and notes worth reading (kinds of connection failure, say).
Outcome = tuple[Figures, list[str]]

#: How long a fan-out waits for one publish to reach everyone before moving on (and
#: counting what never arrives as lost), and for stragglers at the end.
PUBLISH_WAIT = 10.0
#: Publishes in flight at once in fan-out. One keeps a delivery's latency what a reader
#: expects (one publish reaching 1,000 subscribers, no queueing behind the previous
#: ones); a window of 4 or 16 measured ~15% more deliveries/s for every server alike and
#: latencies 4 to 16 times longer, all queueing.
PUBLISH_WINDOW = 1
#: Connections opened at once while setting a scenario up or in connect/memory.
OPEN_CONCURRENCY = 50


@dataclass(frozen=True, slots=True)
class Counts:
    """How much each scenario does; `scaled()` shrinks it for smoke runs."""

    echo_connections: int = 50
    echo_messages: int = 200
    fanout_subscribers: int = 1000
    fanout_messages: int = 100
    connect_connections: int = 2000
    memory_connections: int = 5000

    def scaled(self, scale: float) -> Counts:
        """Every count times `scale`, at least 1."""
        return replace(
            self,
            **{f.name: max(1, round(getattr(self, f.name) * scale)) for f in fields(self)},
        )


class Meter:
    """Server CPU, load-generator CPU and wall time over one measured window."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.wall = self.server_cpu = self.client_cpu = 0.0
        self._wall0 = self._server0 = self._client0 = 0.0

    def start(self) -> None:
        self._server0 = self.server.cpu()
        self._client0 = time.process_time()
        self._wall0 = time.perf_counter()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self._wall0
        self.client_cpu = time.process_time() - self._client0
        self.server_cpu = self.server.cpu() - self._server0


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (nan if there are none)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


class Pool:
    """The connections a scenario opened, all closed when it ends (however it ends)."""

    def __init__(self, client: Client, url: str) -> None:
        self.client = client
        self.url = url
        self.connections: list[Connection] = []
        self.failures = 0
        self.errors: dict[str, int] = {}

    async def open(
        self,
        count: int,
        on_message: Callable[[int], OnMessage] | None = None,
        concurrency: int = OPEN_CONCURRENCY,
    ) -> list[Connection | None]:
        """Open `count` connections, `concurrency` at a time; None where one failed."""
        gate = asyncio.Semaphore(concurrency)
        opened: list[Connection | None] = [None] * count

        async def one(index: int) -> None:
            async with gate:
                try:
                    if on_message is None:
                        conn = await self.client.connect(self.url)
                    else:
                        conn = await self.client.connect(self.url, on_message(index))
                except Exception as exc:  # any failure to open is a figure, not a crash
                    self.failures += 1
                    kind = f"{type(exc).__name__}: {exc}"[:120]
                    self.errors[kind] = self.errors.get(kind, 0) + 1
                    return
                opened[index] = conn
                self.connections.append(conn)

        await asyncio.gather(*(one(i) for i in range(count)))
        return opened

    def notes(self) -> list[str]:
        """What went wrong opening connections, most frequent kinds first."""
        ranked = sorted(self.errors.items(), key=lambda item: -item[1])
        return [f"{count} failed: {kind}" for kind, count in ranked[:3]]

    def close(self) -> None:
        for conn in self.connections:
            conn.close()
        self.connections.clear()


async def warm_up(server: ServerProcess, client: Client) -> None:
    """One echo round trip, so lazy imports and first-call costs stay out of the figures."""
    reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def on_message(data: bytes) -> None:
        if not reply.done():
            reply.set_result(data)

    conn = await client.connect(server.url, on_message)
    try:
        await conn.send(echo_message())
        async with asyncio.timeout(30):
            await reply
    finally:
        conn.close()


async def echo(server: ServerProcess, client: Client, counts: Counts) -> Outcome:
    """N connections each send M messages one at a time, awaiting each reply."""
    loop = asyncio.get_running_loop()
    message = echo_message()
    n, m = counts.echo_connections, counts.echo_messages
    waiting: list[asyncio.Future[bytes] | None] = [None] * n
    pool = Pool(client, server.url)

    def receiver(index: int) -> OnMessage:
        def on_message(data: bytes) -> None:
            future = waiting[index]
            if future is not None and not future.done():
                future.set_result(data)

        return on_message

    try:
        conns = await pool.open(n, receiver)
        if pool.failures:
            raise RuntimeError(f"{pool.failures} of {n} connections failed: {pool.errors}")
        round_trips: list[int] = []
        wrong = 0

        async def talk(index: int, conn: Connection) -> None:
            nonlocal wrong
            for _ in range(m):
                future: asyncio.Future[bytes] = loop.create_future()
                waiting[index] = future
                sent = time.perf_counter_ns()
                await conn.send(message)
                if await future != message:
                    wrong += 1
                round_trips.append(time.perf_counter_ns() - sent)

        meter = Meter(server)
        meter.start()
        await asyncio.gather(*(talk(i, c) for i, c in enumerate(conns) if c is not None))
        meter.stop()
    finally:
        pool.close()
    round_trips.sort()
    total = n * m
    figures: Figures = {
        "connections": n,
        "messages": total,
        "wrong_replies": wrong,
        "messages_per_s": total / meter.wall,
        "p50_ms": percentile(round_trips, 0.50) / 1e6,
        "p99_ms": percentile(round_trips, 0.99) / 1e6,
        "server_cpu_s": meter.server_cpu,
        "server_cpu_us_per_message": meter.server_cpu / total * 1e6,
        "client_cpu_s": meter.client_cpu,
        "client_busy": meter.client_cpu / meter.wall,
        "wall_s": meter.wall,
    }
    return figures, []


async def fanout(server: ServerProcess, client: Client, counts: Counts) -> Outcome:
    """N subscribers on one topic; one publisher sends M messages, one after another.

    Each publish waits until every subscriber has it (or PUBLISH_WAIT passes), so the
    latency of a delivery is how long one publish takes to reach that subscriber.
    """
    loop = asyncio.get_running_loop()
    n, m = counts.fanout_subscribers, counts.fanout_messages
    received = [0] * m
    done: list[asyncio.Future[None]] = [loop.create_future() for _ in range(m)]
    acks = 0
    all_subscribed: asyncio.Future[None] = loop.create_future()
    latencies: list[int] = []
    record, clock = latencies.append, time.perf_counter_ns
    last_delivery = 0
    pool = Pool(client, server.url)
    # Subscribers spread over `subscriber_urls` (other nodes than the publisher's, for a
    # gateway of several nodes; the server's own URL otherwise).
    urls = server.subscriber_urls
    subscriber_pools = [Pool(client, url) for url in urls]

    def on_message(data: bytes) -> None:
        nonlocal acks, last_delivery
        if data == SUBSCRIBED:
            acks += 1
            if acks == n and not all_subscribed.done():
                all_subscribed.set_result(None)
            return
        # Called for every delivery: kept to a few operations.
        now = clock()
        seq = int(data[SEQ_AT:SEQ_END])
        record(now - int(data[TIME_AT:TIME_END]))
        last_delivery = now
        count = received[seq] = received[seq] + 1
        if count == n and not done[seq].done():  # done: cancelled by a timed-out wait
            done[seq].set_result(None)

    try:
        subscribers: list[Connection | None] = []
        for index, subscriber_pool in enumerate(subscriber_pools):
            share = n // len(urls) + (1 if index < n % len(urls) else 0)
            subscribers += await subscriber_pool.open(share, lambda _: on_message)
            if subscriber_pool.failures:
                raise RuntimeError(
                    f"{subscriber_pool.failures} of {n} subscribers failed: "
                    f"{subscriber_pool.errors}"
                )
        (publisher,) = await pool.open(1)
        if publisher is None:
            raise RuntimeError(f"the publisher could not connect: {pool.errors}")
        subscribe = subscribe_message()
        await asyncio.gather(*(s.send(subscribe) for s in subscribers if s is not None))
        async with asyncio.timeout(60):
            await all_subscribed
        window = asyncio.Semaphore(PUBLISH_WINDOW)

        async def settle(seq: int) -> None:
            try:
                async with asyncio.timeout(PUBLISH_WAIT):
                    await done[seq]
            except TimeoutError:
                pass  # what never arrives counts as lost
            finally:
                window.release()

        settling: list[asyncio.Task[None]] = []
        meter = Meter(server)
        meter.start()
        first_send = time.perf_counter_ns()
        for seq in range(m):
            await window.acquire()
            await publisher.send(publish_message(seq, time.perf_counter_ns()))
            settling.append(asyncio.create_task(settle(seq)))
        await asyncio.gather(*settling)
        meter.stop()
    finally:
        pool.close()
        for subscriber_pool in subscriber_pools:
            subscriber_pool.close()
    delivered = sum(received)
    expected = n * m
    span_s = max(last_delivery - first_send, 1) / 1e9
    latencies.sort()
    figures: Figures = {
        "subscribers": n,
        "messages": m,
        "deliveries": delivered,
        "lost": expected - delivered,
        "deliveries_per_s": delivered / span_s,
        "p50_ms": percentile(latencies, 0.50) / 1e6,
        "p99_ms": percentile(latencies, 0.99) / 1e6,
        "server_cpu_s": meter.server_cpu,
        "server_cpu_us_per_delivery": meter.server_cpu / max(delivered, 1) * 1e6,
        "client_cpu_s": meter.client_cpu,
        "client_busy": meter.client_cpu / meter.wall,
        "wall_s": meter.wall,
    }
    return figures, []


async def connect(server: ServerProcess, client: Client, counts: Counts) -> Outcome:
    """Open N connections, OPEN_CONCURRENCY at a time, each through the `$connect` handler."""
    n = counts.connect_connections
    pool = Pool(client, server.url)
    meter = Meter(server)
    try:
        meter.start()
        await pool.open(n)
        meter.stop()
        opened = len(pool.connections)
    finally:
        pool.close()
    figures: Figures = {
        "connections": n,
        "failures": pool.failures,
        "connections_per_s": opened / meter.wall,
        "server_cpu_s": meter.server_cpu,
        "server_cpu_us_per_connection": meter.server_cpu / max(opened, 1) * 1e6,
        "client_cpu_s": meter.client_cpu,
        "client_busy": meter.client_cpu / meter.wall,
        "wall_s": meter.wall,
    }
    return figures, pool.notes()


async def memory(server: ServerProcess, client: Client, counts: Counts) -> Outcome:
    """Resident memory per connection while N idle connections are held open."""
    n = counts.memory_connections
    await server.quiesce()
    base, base_store = server.rss(), server.store_bytes()
    pool = Pool(client, server.url)
    try:
        await pool.open(n)
        await server.quiesce()
        held, held_store = server.rss(), server.store_bytes()
        opened = len(pool.connections)
    finally:
        pool.close()
    figures: Figures = {
        "connections": n,
        "failures": pool.failures,
        "rss_base_mb": base / 2**20,
        "rss_mb": held / 2**20,
        "kb_per_connection": (held - base) / max(opened, 1) / 1024,
    }
    if base_store is not None and held_store is not None:
        # On disk, besides the page cache the RSS above includes.
        figures["store_kb_per_connection_on_disk"] = (
            (held_store - base_store) / max(opened, 1) / 1024
        )
    return figures, pool.notes()


Scenario = Callable[[ServerProcess, Client, Counts], Awaitable[Outcome]]

SCENARIOS: dict[str, Scenario] = {
    "echo": echo,
    "fanout": fanout,
    "connect": connect,
    "memory": memory,
}

#: Seconds one run of a scenario may take at scale 1 before it counts as failed.
TIME_LIMITS: dict[str, float] = {"echo": 120, "fanout": 180, "connect": 120, "memory": 180}

#: The figure plotted and compared for each scenario, and whether higher is better.
KEY_FIGURE: dict[str, tuple[str, bool]] = {
    "echo": ("messages_per_s", True),
    "fanout": ("deliveries_per_s", True),
    "connect": ("connections_per_s", True),
    "memory": ("kb_per_connection", False),
}
