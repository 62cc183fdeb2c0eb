"""`wsgate bench`: the benchmark, on 127.0.0.1, against reference servers, with its targets."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click

from wsgate.bench import SCENARIOS, SERVERS

T = TypeVar("T")


def _names(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise click.BadParameter(
            f"unknown {what} {', '.join(unknown) or '(none given)'}; choose from "
            f"{','.join(allowed)}"
        )
    return list(dict.fromkeys(names))


async def _until_stopped(work: Coroutine[Any, Any, T], stopped_by: list[int]) -> T:
    """Run `work`; SIGTERM or SIGHUP cancels it, as Ctrl+C does, and is noted in `stopped_by`.

    The servers run in sessions of their own (so signals sent to the bench's process group
    do not reach them): only the bench's `finally` blocks stop them, and a signal's default
    action would end the bench without running any.
    """
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    stop_signals = (signal.SIGTERM, signal.SIGHUP)

    def cancel(signum: int) -> None:
        if not stopped_by:  # a second signal does not cut the servers' stopping short
            stopped_by.append(signum)
            task.cancel()

    for signum in stop_signals:
        loop.add_signal_handler(signum, cancel, signum)
    try:
        return await work
    finally:
        for signum in stop_signals:
            loop.remove_signal_handler(signum)


def _wsgate_python(build: str) -> str:
    """The interpreter the wsgate servers run on for `--build`."""
    if build == "installed":
        return sys.executable
    from wsgate.bench import build as compiled_build

    root = compiled_build.checkout()
    if root is None:
        raise click.ClickException(
            "--build compiled builds this checkout's wheel: run wsgate from a source "
            "checkout (pip install -e .)"
        )
    click.echo("wsgate bench: the compiled build (built once per source change)...", err=True)
    try:
        return str(compiled_build.compiled_venv(root) / "bin/python")
    except compiled_build.BuildFailed as exc:
        raise click.ClickException(f"the compiled build failed: {exc}") from exc


def _pin_client(cpu: int) -> frozenset[int]:
    """Pin this process (the load generator) to `cpu`; the CPUs left, for the servers."""
    allowed = os.sched_getaffinity(0)
    if cpu not in allowed or len(allowed) < 2:
        raise click.BadParameter(
            f"CPU {cpu} is not one of this process's CPUs {_cpu_list(allowed)} with another "
            "left for the servers",
            param_hint="--pin-client",
        )
    os.sched_setaffinity(0, {cpu})
    return frozenset(allowed - {cpu})


def _cpu_list(cpus: Iterable[int]) -> str:
    return ",".join(map(str, sorted(cpus)))


@click.command()
@click.option(
    "--scenarios",
    default=",".join(SCENARIOS),
    show_default=True,
    help="Comma-separated scenarios to run.",
)
@click.option(
    "--servers",
    default=",".join(SERVERS),
    show_default=True,
    help="Comma-separated servers; wsgate's ratios need it among them.",
)
@click.option(
    "--repeat",
    default=3,
    show_default=True,
    type=click.IntRange(1, 20),
    help="Runs per scenario and server; the table shows medians.",
)
@click.option(
    "--scale",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.001, 10.0),
    help="Multiplies every count (connections, messages): 0.02 is a smoke run.",
)
@click.option(
    "--json",
    "json_path",
    default="wsgate-bench.json",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the results.",
)
@click.option(
    "--plot",
    "plot_path",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw the results as a PNG (needs matplotlib).",
)
@click.option(
    "--build",
    type=click.Choice(["installed", "compiled"]),
    default="installed",
    show_default=True,
    help="The wsgate the wsgate servers run: this command's (pure Python in an editable "
    "checkout), or the compiled wheel of this checkout, built once into a cached venv.",
)
@click.option(
    "--pin-client",
    type=int,
    default=None,
    metavar="CPU",
    help="Run the load generator on CPU alone and the servers on the other CPUs.",
)
@click.option(
    "--workdir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep server logs and stores here (default: a temporary folder).",
)
def bench(
    scenarios: str,
    servers: str,
    repeat: int,
    scale: float,
    json_path: Path,
    plot_path: Path | None,
    build: str,
    pin_client: int | None,
    workdir: Path | None,
) -> None:
    """Benchmark wsgate against raw websockets and picows, its Python peers and serverless-offline.

    Everything runs on 127.0.0.1: each server in its own process, so its CPU time and
    memory are its own; the load generator in this one. Exits 1 if a run failed or wsgate
    lost a fan-out delivery; targets missed are reported, never an error.
    """
    from wsgate.bench import optional, report, runner

    chosen_scenarios = _names(scenarios, SCENARIOS, "scenario")
    chosen_servers = _names(servers, SERVERS, "server")
    if not Path("/proc/self/stat").exists():
        raise click.ClickException("wsgate bench reads CPU and memory from /proc: Linux only")
    wsgate_python = _wsgate_python(build)
    server_cpus = None if pin_client is None else _pin_client(pin_client)
    temporary = workdir is None
    folder = Path(tempfile.mkdtemp(prefix="wsgate-bench-")) if workdir is None else workdir
    folder.mkdir(parents=True, exist_ok=True)
    loop_name, loop_factory = optional.loop_factory()

    def progress(line: str) -> None:
        click.echo(line, err=True)

    click.echo(
        f"wsgate bench: {','.join(chosen_scenarios)} x {','.join(chosen_servers)}, "
        f"scale {scale:g}, {repeat} run(s) each",
        err=True,
    )
    stopped_by: list[int] = []
    try:
        with asyncio.Runner(loop_factory=loop_factory) as loop:
            results = loop.run(
                _until_stopped(
                    runner.run(
                        scenarios=chosen_scenarios,
                        names=chosen_servers,
                        repeat=repeat,
                        scale=scale,
                        workdir=folder,
                        progress=progress,
                        loop_name=loop_name,
                        wsgate_python=wsgate_python,
                        server_cpus=server_cpus,
                    ),
                    stopped_by,
                )
            )
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
    except asyncio.CancelledError:
        if not stopped_by:
            raise
        name = signal.Signals(stopped_by[0]).name
        click.echo(f"wsgate bench: stopped by {name}; its servers are stopped", err=True)
        sys.exit(128 + stopped_by[0])
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)

    evaluated = report.evaluate(results)
    meta = results.meta
    click.echo(
        f"\nwsgate bench, {meta['aggregate']}, scale {meta['scale']:g}, "
        f"load generator: {meta['client']} on {meta['client_loop']} ({meta['duration_s']}s)\n"
        f"wsgate servers: {meta['wsgate_build']}, CPUs: servers "
        f"{_cpu_list(meta['server_cpus'] or meta['client_cpus'])}, load generator "
        f"{_cpu_list(meta['client_cpus'])}\n"
    )
    click.echo(report.table(results))
    click.echo("\nTargets:")
    click.echo(report.targets_text(evaluated))
    for scenario, reason in meta["not_run"].items():
        click.echo(f"\nNot run: {scenario}: {reason}.")
    report.write_json(json_path, report.to_json(results, evaluated))
    click.echo(f"\nJSON: {json_path}")
    if plot_path is not None:
        problem = report.plot(results, plot_path)
        click.echo(f"plot: {plot_path}" if problem is None else f"plot: not drawn: {problem}")
    failed = [row for row in results.rows if row.status == "failed"]
    lost = [row for row in results.rows if row.server == "wsgate" and (row.worst("lost") or 0) > 0]
    if failed or lost:
        click.echo(
            f"\n{len(failed)} row(s) failed, wsgate lost deliveries in {len(lost)}", err=True
        )
        sys.exit(1)
