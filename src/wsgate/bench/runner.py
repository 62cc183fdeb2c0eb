"""Run the suite: every scenario against every server, repeated, interleaved.

Servers of one scenario are all started first and then taken in turn within each repeat,
so a noisy neighbour on the shared machine hits them alike; the memory scenario starts a
fresh process for every run, since memory a process once took is rarely given back.
"""

from __future__ import annotations

import asyncio
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsgate.bench import optional, peers, servers
from wsgate.bench.client import Client, best_client, speaking
from wsgate.bench.procs import ServerProcess, raise_fd_limit
from wsgate.bench.scenarios import SCENARIOS, TIME_LIMITS, Counts, Figures, warm_up

Progress = Callable[[str], None]

#: Scenarios the benchmark knows it does not measure, and why (printed, and in the JSON).
NOT_RUN: dict[str, str] = {}


@dataclass
class Row:
    """One scenario against one server: its runs and how it went."""

    scenario: str
    server: str
    status: str = "ok"  # ok | unavailable | failed
    reason: str | None = None
    runs: list[Figures] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def median(self) -> Figures:
        """The median of each figure over the runs (the machine is shared and noisy)."""
        keys = dict.fromkeys(k for run in self.runs for k in run)
        return {
            k: statistics.median(run[k] for run in self.runs if k in run and not math.isnan(run[k]))
            for k in keys
            if any(k in run and not math.isnan(run[k]) for run in self.runs)
        }

    def worst(self, key: str) -> float | None:
        """The largest value of `key` over the runs (for counts that must stay at 0)."""
        values = [run[key] for run in self.runs if key in run]
        return max(values) if values else None

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "server": self.server,
            "status": self.status,
            "reason": self.reason,
            "median": self.median(),
            "runs": self.runs,
            "notes": self.notes,
        }


@dataclass
class Results:
    """Everything a report needs."""

    rows: list[Row]
    meta: dict[str, Any]
    counts: Counts

    def row(self, scenario: str, server: str) -> Row | None:
        for row in self.rows:
            if row.scenario == scenario and row.server == server:
                return row
        return None


async def _start(server: ServerProcess, client: Client) -> None:
    await server.start()
    await warm_up(server, speaking(server.framing, client))
    await server.quiesce()


async def _run_scenario(
    scenario: str,
    names: Sequence[str],
    rows: dict[str, Row],
    client: Client,
    counts: Counts,
    repeat: int,
    limit: float,
    workdir: Path,
    progress: Progress,
    wsgate_python: str,
    server_cpus: frozenset[int] | None,
) -> None:
    fresh_each_run = scenario == "memory"
    running: dict[str, ServerProcess] = {}

    async def start(name: str, tag: str) -> ServerProcess | None:
        server = servers.create(name, workdir, tag, wsgate_python)
        server.cpus = server_cpus
        running[name] = server
        try:
            await _start(server, client)
        except Exception as exc:
            await server.stop()
            fail(name, f"did not start: {type(exc).__name__}: {exc}")
            return None
        return server

    def fail(name: str, reason: str) -> None:
        rows[name].status, rows[name].reason = "failed", reason
        progress(f"  {scenario:8} {name:19} FAILED: {reason}")

    try:
        if not fresh_each_run:
            for name in names:
                await start(name, scenario)
        for attempt in range(1, repeat + 1):
            for name in names:
                row = rows[name]
                if row.status != "ok":
                    continue
                if fresh_each_run:
                    server = await start(name, f"{scenario}-{attempt}")
                else:
                    server = running.get(name)
                if server is None:
                    continue
                deadline = asyncio.timeout(limit)
                try:
                    async with deadline:
                        figures, notes = await SCENARIOS[scenario](
                            server, speaking(server.framing, client), counts
                        )
                    row.runs.append(figures)
                    row.notes.extend(notes)
                    progress(f"  {scenario:8} {name:19} run {attempt}/{repeat}: {_brief(figures)}")
                    await server.quiesce()
                except Exception as exc:  # one server's trouble must not end the suite
                    if isinstance(exc, TimeoutError) and deadline.expired():
                        fail(name, f"run {attempt} took over {limit:.0f}s")
                    else:
                        fail(name, f"run {attempt}: {type(exc).__name__}: {exc}")
                finally:
                    if fresh_each_run:
                        await server.stop()
    finally:
        for server in running.values():
            await server.stop()


def _brief(figures: Figures) -> str:
    shown = ("messages_per_s", "deliveries_per_s", "connections_per_s", "kb_per_connection")
    parts = [f"{k}={figures[k]:,.1f}" for k in shown if k in figures]
    for key in ("p99_ms", "lost", "failures"):
        if key in figures:
            parts.append(f"{key}={figures[key]:g}")
    return " ".join(parts)


def _build_of(python: str) -> str:
    """What `wsgate --version` says of the wsgate `python` runs: compiled or pure."""
    code = "import wsgate; print('compiled (mypyc)' if wsgate.COMPILED else 'pure Python')"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _versions() -> dict[str, str | None]:
    names = ("wsgate", "aiohttp", "websockets", "picows", "uvloop", "matplotlib")
    return {name: optional.version(name) for name in names}


async def run(
    *,
    scenarios: Sequence[str],
    names: Sequence[str],
    repeat: int,
    scale: float,
    workdir: Path,
    progress: Progress,
    loop_name: str,
    wsgate_python: str = sys.executable,
    server_cpus: frozenset[int] | None = None,
) -> Results:
    """Run the suite and return its results (never raises for one server's failure).

    The wsgate servers run on `wsgate_python` (a compiled build's, say); the servers run
    on `server_cpus` only, if given (the load generator then has the others)."""
    started = time.time()
    fd_limit = raise_fd_limit()
    client = best_client()
    counts = Counts().scaled(scale)
    rows: list[Row] = [Row(s, n) for s in scenarios for n in names]
    available: list[str] = []
    for name in names:
        reason = servers.unavailable_reason(name, workdir)
        if reason is None:
            available.append(name)
            continue
        progress(f"  {name}: unavailable: {reason}")
        for row in rows:
            if row.server == name:
                row.status, row.reason = "unavailable", reason
    for scenario in scenarios:
        limit = max(30.0, TIME_LIMITS[scenario] * scale)
        by_name = {row.server: row for row in rows if row.scenario == scenario}
        await _run_scenario(
            scenario,
            available,
            by_name,
            client,
            counts,
            repeat,
            limit,
            workdir,
            progress,
            wsgate_python,
            server_cpus,
        )
    meta = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "scale": scale,
        "repeat": repeat,
        "aggregate": f"median of {repeat} run(s)",
        "client": client.name,
        "client_loop": loop_name,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "wsgate_build": _build_of(wsgate_python),
        "server_cpus": sorted(server_cpus) if server_cpus is not None else None,
        "client_cpus": sorted(os.sched_getaffinity(0)),
        "open_files_limit": fd_limit,
        "versions": _versions(),
        "peer_pins": list(peers.PINS),
        "not_run": NOT_RUN,
    }
    return Results(rows, meta, counts)
