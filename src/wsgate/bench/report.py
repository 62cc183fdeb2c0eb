"""The table, the benchmark's targets, the JSON file and the plot."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wsgate.bench import PEERS, optional
from wsgate.bench.runner import Results, Row
from wsgate.bench.scenarios import KEY_FIGURE

UNITS = {"echo": "msg/s", "fanout": "deliveries/s", "connect": "conn/s", "memory": ""}
CPU_FIGURE = {
    "echo": "server_cpu_us_per_message",
    "fanout": "server_cpu_us_per_delivery",
    "connect": "server_cpu_us_per_connection",
}


@dataclass(frozen=True, slots=True)
class Target:
    """One target of the benchmark: wsgate's figure, alone or over a reference's."""

    name: str
    scenario: str
    figure: str
    reference: str | None
    op: str  # "<=", ">=", "==", or "info" (shown, not judged)
    bound: float
    worst: bool = False  # compare the worst run, not the median (for "loses nothing")
    server: str = "wsgate"  # whose figure is compared with the reference
    #: The fastest raw server: its own ratio over the reference shows whether the bound can
    #: be reached on this machine at all (for ">=" and "<=" targets).
    ceiling: str | None = None


TARGETS = (
    Target(
        "nodes: fan-out deliveries/s across 3 Redis-linked nodes / one node (wsgate-3n / wsgate)",
        "fanout",
        "deliveries_per_s",
        "wsgate",
        ">=",
        0.5,
        server="wsgate-3n",
    ),
    Target(
        "nodes: fan-out deliveries lost across nodes (worst run)",
        "fanout",
        "lost",
        None,
        "==",
        0,
        True,
        server="wsgate-3n",
    ),
    Target(
        "nodes: fan-out p99 delivery latency across nodes, ms",
        "fanout",
        "p99_ms",
        None,
        "info",
        0,
        server="wsgate-3n",
    ),
    Target(
        "nodes: connections/s with the Redis store / SQLite (wsgate-redis / wsgate)",
        "connect",
        "connections_per_s",
        "wsgate",
        "info",
        0,
        server="wsgate-redis",
    ),
    Target(
        "echo: server CPU per message, wsgate / picows",
        "echo",
        "server_cpu_us_per_message",
        "picows",
        "<=",
        1.25,
    ),
    Target(
        "fan-out: deliveries/s, wsgate / picows", "fanout", "deliveries_per_s", "picows", ">=", 0.9
    ),
    Target(
        "fan-out: server CPU per delivery, wsgate / picows (independent of the client)",
        "fanout",
        "server_cpu_us_per_delivery",
        "picows",
        "info",
        0,
    ),
    Target("fan-out: deliveries lost by wsgate (worst run)", "fanout", "lost", None, "==", 0, True),
    Target(
        "connect: connections/s, wsgate / websockets",
        "connect",
        "connections_per_s",
        "websockets",
        ">=",
        1.0,
    ),
    Target("memory: KB per idle wsgate connection", "memory", "kb_per_connection", None, "<=", 10),
    Target(
        "echo: messages/s, wsgate / serverless-offline",
        "echo",
        "messages_per_s",
        "serverless-offline",
        ">=",
        50,
        ceiling="picows",
    ),
    Target(
        "fan-out: deliveries/s, wsgate / serverless-offline",
        "fanout",
        "deliveries_per_s",
        "serverless-offline",
        ">=",
        100,
        ceiling="picows",
    ),
    # The peers a user would pick instead: wsgate aims at twice their messages per second
    # of server CPU (half their CPU per message) and twice their fan-out rate.
    *(
        Target(
            f"peers: echo server CPU per message, wsgate / {peer} (0.5: twice the messages "
            "per CPU second)",
            "echo",
            "server_cpu_us_per_message",
            peer,
            "<=",
            0.5,
            ceiling="picows",
        )
        for peer in PEERS
    ),
    *(
        Target(
            f"peers: fan-out deliveries/s, wsgate / {peer}",
            "fanout",
            "deliveries_per_s",
            peer,
            ">=",
            2,
            ceiling="picows",
        )
        for peer in PEERS
    ),
    Target(
        "sync handlers: echo server CPU per message, wsgate-sync / picows",
        "echo",
        "server_cpu_us_per_message",
        "picows",
        "info",
        0,
        server="wsgate-sync",
    ),
    Target(
        "workers: echo messages/s, 2 workers / 1 (wsgate-2w / wsgate)",
        "echo",
        "messages_per_s",
        "wsgate",
        "info",
        0,
        server="wsgate-2w",
    ),
    Target(
        "workers: fan-out deliveries/s, 2 workers / 1 (wsgate-2w / wsgate)",
        "fanout",
        "deliveries_per_s",
        "wsgate",
        "info",
        0,
        server="wsgate-2w",
    ),
)


def _figure(row: Row | None, key: str, worst: bool = False) -> float | None:
    if row is None or not row.runs:
        return None
    return row.worst(key) if worst else row.median().get(key)


def evaluate(results: Results) -> list[dict[str, Any]]:
    """Each target with its measured value (None, and why, where it could not be)."""
    evaluated = []
    for target in TARGETS:
        entry: dict[str, Any] = asdict(target)
        wsgate_row = results.row(target.scenario, target.server)
        value = _figure(wsgate_row, target.figure, target.worst)
        missing = None
        if value is None:
            missing = _why_missing(wsgate_row, target.server, target.scenario)
        elif target.reference is not None:
            ref_row = results.row(target.scenario, target.reference)
            ref_value = _figure(ref_row, target.figure)
            if ref_value is None:
                missing = _why_missing(ref_row, target.reference, target.scenario)
                value = None
            elif ref_value == 0:
                missing = f"{target.reference}'s figure is 0 (a run too short to measure)"
                value = None
            else:
                value = value / ref_value
                if target.ceiling is not None:
                    ceiling = _figure(results.row(target.scenario, target.ceiling), target.figure)
                    if ceiling is not None:
                        entry["ceiling_value"] = ceiling / ref_value
        met = None
        if value is not None and target.op != "info":
            met = {
                "<=": value <= target.bound,
                ">=": value >= target.bound,
                "==": value == target.bound,
            }[target.op]
        entry.update(value=value, met=met, missing=missing)
        evaluated.append(entry)
    return evaluated


def _why_missing(row: Row | None, server: str, scenario: str) -> str:
    if row is None:
        return f"{server} was not run in {scenario}"
    return f"{server}: {row.status}" + (f": {row.reason}" if row.reason else "")


def _number(value: float | None, digits: int = 0) -> str:
    if value is None or math.isnan(value):
        return ""
    return f"{value:,.{digits}f}"


def _client(figures: dict[str, float]) -> str:
    """The load generator's CPU seconds and the share of the wall time it was busy."""
    if "client_cpu_s" not in figures:
        return ""
    busy = figures.get("client_busy")
    seconds = figures["client_cpu_s"]
    shown = f"{seconds:.2f}" if seconds >= 0.1 else f"{seconds:.3f}"
    return shown + (f" ({busy:.0%})" if busy is not None else "")


COLUMNS = (
    "scenario",
    "server",
    "throughput",
    "p50 ms",
    "p99 ms",
    "srv CPU us/op",
    "lost/failed",
    "KB/conn",
    "client CPU s (busy)",
    "wsgate/this",
)


def table(results: Results) -> str:
    """One table: a row per scenario and server, medians, and wsgate over each reference."""
    lines: list[list[str]] = [list(COLUMNS)]
    for row in results.rows:
        # A reason can hold a server's log tail: the table shows its first line.
        first_line = row.reason.splitlines()[0] if row.reason else ""
        reason = f"{row.status}: {first_line}"
        if row.status != "ok" and not row.runs:
            lines.append([row.scenario, row.server, reason])
            continue
        m = row.median()
        key, _ = KEY_FIGURE[row.scenario]
        unit = UNITS[row.scenario]
        ratio = ""
        wsgate_row = results.row(row.scenario, "wsgate")
        if row.server != "wsgate" and wsgate_row is not None and wsgate_row.runs:
            mine, theirs = wsgate_row.median().get(key), m.get(key)
            if mine is not None and theirs:
                ratio = f"{mine / theirs:,.2f}x"
        lost = row.worst("lost") if row.scenario == "fanout" else row.worst("failures")
        cells = [
            row.scenario,
            row.server,
            f"{_number(m.get(key))} {unit}".strip() if row.scenario != "memory" else "",
            _number(m.get("p50_ms"), 2),
            _number(m.get("p99_ms"), 2),
            _number(m.get(CPU_FIGURE.get(row.scenario, "")), 1),
            _number(lost),
            _number(m.get("kb_per_connection"), 1),
            _client(m),
            ratio,
        ]
        if row.status != "ok":
            cells.append(reason)
        lines.append(cells)
    full = [line for line in lines if len(line) >= len(COLUMNS)]  # not the "reason" rows
    widths = [max(len(line[i]) for line in full) for i in range(len(COLUMNS))]
    out = []
    for index, line in enumerate(lines):
        if len(line) == 3 and index > 0:  # an unavailable or failed row: reason in full
            out.append(f"{line[0]:<{widths[0]}}  {line[1]:<{widths[1]}}  {line[2]}")
            continue
        cells = [
            cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i])
            for i, cell in enumerate(line[: len(COLUMNS)])
        ]
        out.append("  ".join(cells).rstrip() + "".join(f"  {c}" for c in line[len(COLUMNS) :]))
        if index == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def targets_text(evaluated: list[dict[str, Any]]) -> str:
    """The benchmark's targets, each with the measured value and whether it was met."""
    out = []
    for entry in evaluated:
        if entry["value"] is None:
            verdict, shown = "n/a", f"({entry['missing']})"
        else:
            verdict = "met" if entry["met"] else "NOT met"
            shown = f"{entry['value']:,.2f}"
        if entry["op"] == "info":
            out.append(f"  {entry['name']}: {shown}  (for information)")
            continue
        line = f"  {entry['name']}: {shown}  target {entry['op']} {entry['bound']:g}  {verdict}"
        ceiling = entry.get("ceiling_value")
        if ceiling is not None and not entry["met"]:
            # Ceilings are set on ">=" and "<=" targets only.
            beyond = ceiling < entry["bound"] if entry["op"] == ">=" else ceiling > entry["bound"]
            line += f"  (raw {entry['ceiling']}: {ceiling:,.2f}"
            line += ", so no server reaches the bound here)" if beyond else ")"
        out.append(line)
    return "\n".join(out)


def to_json(results: Results, evaluated: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON document: meta, counts, rows (medians and every run), targets."""
    return {
        "meta": results.meta,
        "counts": asdict(results.counts),
        "rows": [row.to_json() for row in results.rows],
        "targets": evaluated,
    }


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write strict JSON: a figure that could not be measured (NaN) becomes null."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(document), indent=2, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


#: The plot's panels: scenario, figure, title, log scale.
PANELS = (
    ("echo", "messages_per_s", "echo through a route: messages/s (log)", True),
    (
        "echo",
        "server_cpu_us_per_message",
        "echo: server CPU per message, us (lower is better)",
        True,
    ),
    ("fanout", "deliveries_per_s", "fan-out to one topic: deliveries/s (log)", True),
    ("fanout", "p99_ms", "fan-out: p99 delivery latency, ms (lower is better)", True),
    ("connect", "connections_per_s", "connections opened through $connect: per s", False),
    (
        "memory",
        "kb_per_connection",
        "resident memory per idle connection: KB (lower is better)",
        False,
    ),
)


def plot(results: Results, path: Path) -> str | None:
    """A PNG, one panel per figure that matters (medians, min-max whiskers); or why not."""
    matplotlib = optional.load("matplotlib")
    if matplotlib is None:
        return "matplotlib is not installed (pip install 'wsgate[bench]')"
    matplotlib.use("Agg")
    plt: Any = optional.load("matplotlib.pyplot")
    ran = {row.scenario for row in results.rows}
    panels = [panel for panel in PANELS if panel[0] in ran]
    columns = min(2, len(panels))
    lines = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(6.5 * columns, 3.8 * lines), squeeze=False)
    flat = list(axes.flat)
    for ax, (scenario, key, title, log) in zip(flat, panels, strict=False):
        names, medians, lows, highs, colours = [], [], [], [], []
        for row in results.rows:
            if row.scenario != scenario:
                continue
            values = [run[key] for run in row.runs if key in run and math.isfinite(run[key])]
            median = statistics.median(values) if values else 0.0
            names.append(row.server if values else f"{row.server}\n(n/a)")
            medians.append(median)
            lows.append(median - min(values) if values else 0.0)
            highs.append(max(values) - median if values else 0.0)
            colours.append("#d9480f" if row.server == "wsgate" else "#4c6ef5")
        positive = [v for v in medians if v > 0]
        ax.bar(names, medians, yerr=[lows, highs], color=colours, capsize=4)
        top = max((m + h for m, h in zip(medians, highs, strict=True)), default=0.0)
        if log and positive:
            ax.set_yscale("log")
            ax.set_ylim(10 ** math.floor(math.log10(min(positive))), top * 2.5)
        elif top > 0:
            ax.set_ylim(0, top * 1.15)
        for x, value in enumerate(medians):
            if value > 0:
                label = f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
                ax.annotate(
                    label,
                    (x, value + highs[x]),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
        scaled = results.meta["scale"] != 1
        ax.set_title(title + (" (scaled run)" if scaled else ""), fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    meta = results.meta
    fig.suptitle(
        f"wsgate bench: {meta['aggregate']} on {meta['cpus']} cores, "
        f"load generator {meta['client']} on {meta['client_loop']}"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None
