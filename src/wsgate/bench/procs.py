"""Server subprocesses and what /proc says about them (CPU seconds, resident memory).

Each server under test is its own process so its CPU time and RSS are its own: the
load generator's work never lands in a server's figures, nor the other way round.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from wsgate.bench.client import Framing

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class ServerFailed(Exception):
    """A server did not start, or died; the message ends with its log's tail."""


def free_port() -> int:
    """A port nothing listens on right now (bound to 127.0.0.1:0, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of `pid`, threads that ended included.

    Read from the process's CPU-time clock (nanoseconds, what clock_getcpuclockid(3)
    names), falling back to /proc/PID/stat, whose clock ticks (10 ms) are too coarse for
    a scenario that lasts a tenth of a second.
    """
    try:
        return time.clock_gettime(((~pid) << 3) | 2)  # CPUCLOCK_SCHED of the whole process
    except OSError:
        pass
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # Fields after the command name, which is in parentheses and may hold spaces.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise ServerFailed(f"process {pid} has no VmRSS (exited?)")


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit (children inherit it)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class ServerProcess:
    """One server under test: started in its own session, stopped by its own pid."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        port: int,
        url: str,
        log: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        start_timeout: float = 30.0,
        store: Path | None = None,
        framing: Framing = "websocket",
    ) -> None:
        self.name = name
        self.command = list(command)
        self.port = port
        self.url = url
        self.log = log
        self.cwd = cwd
        self.env = {**os.environ, **(env or {})}
        self.start_timeout = start_timeout
        #: The server's store file, if it keeps one (its journal files count too).
        self.store = store
        #: Where fan-out subscribers connect (the publisher connects to `url`): other
        #: nodes than the publisher's, for a gateway of several nodes.
        self.subscriber_urls = [url]
        #: What the load generator speaks to it over WebSocket.
        self.framing: Framing = framing
        #: The CPUs the process (and any process it starts) may run on; None: any.
        self.cpus: frozenset[int] | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ServerFailed(f"{self.name} is not running")
        return self.proc.pid

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise ServerFailed if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerFailed(
                f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
            )

    async def start(self) -> None:
        """Start the process and wait until its port accepts TCP connections."""
        command = self.command
        if self.cpus is not None:  # from its first instruction on: workers inherit it
            command = ["taskset", "--cpu-list", ",".join(map(str, sorted(self.cpus))), *command]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped without strays
            )
        deadline = time.monotonic() + self.start_timeout
        while True:
            self.check_alive()
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                if time.monotonic() > deadline:
                    await self.stop()
                    raise ServerFailed(
                        f"{self.name} did not listen on port {self.port} within "
                        f"{self.start_timeout:.0f}s:\n{self.log_tail()}"
                    ) from None
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return

    def cpu(self) -> float:
        """CPU seconds of the server and its child processes (`--workers`)."""
        return sum(cpu_seconds(pid) for pid in self._tree())

    def rss(self) -> int:
        return sum(rss_bytes(pid) for pid in self._tree())

    def _tree(self) -> list[int]:
        """The server's pid and its children's (a supervisor's workers)."""
        pids = [self.pid]
        try:
            with open(f"/proc/{self.pid}/task/{self.pid}/children") as f:
                pids.extend(int(child) for child in f.read().split())
        except OSError:
            pass
        return pids

    def store_bytes(self) -> int | None:
        """Bytes on disk of the store file and its journals (None without a store file)."""
        if self.store is None:
            return None
        folder, name = self.store.parent, self.store.name
        return sum(p.stat().st_size for p in folder.glob(f"{name}*") if p.is_file())

    async def quiesce(self, timeout: float = 10.0, window: float = 0.2) -> None:
        """Wait until the server stops using CPU (closes and $disconnects done), bounded."""
        deadline = time.monotonic() + timeout
        previous = self.cpu()
        quiet = 0
        while time.monotonic() < deadline and quiet < 2:
            await asyncio.sleep(window)
            self.check_alive()
            now = self.cpu()
            quiet = quiet + 1 if now - previous <= 0.1 * window else 0
            previous = now

    async def stop(self) -> None:
        """SIGTERM the process group we started, then SIGKILL it after a grace period."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10.0
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        # Whatever the group still holds (a child the server started) goes too.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if proc.poll() is None:
            proc.wait(5)


class ProcessGroup(ServerProcess):
    """Several processes measured as one server: a Redis and the gateway nodes on it.

    Started in order, stopped in reverse; CPU and memory are the sum of all of them, the
    cost of the whole deployment."""

    def __init__(
        self, name: str, members: Sequence[ServerProcess], *, url: str, subscriber_urls: list[str]
    ) -> None:
        last = members[-1]
        super().__init__(name, [], port=last.port, url=url, log=last.log)
        self.members = list(members)
        self.subscriber_urls = subscriber_urls

    @property
    def pid(self) -> int:
        return self.members[0].pid

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(f"[{m.name}] {m.log_tail(lines)}" for m in self.members)

    def check_alive(self) -> None:
        for member in self.members:
            member.check_alive()

    async def start(self) -> None:
        try:
            for member in self.members:
                member.cpus = self.cpus
                await member.start()
        except BaseException:
            await self.stop()
            raise

    def cpu(self) -> float:
        return sum(member.cpu() for member in self.members)

    def rss(self) -> int:
        return sum(member.rss() for member in self.members)

    async def stop(self) -> None:
        for member in reversed(self.members):
            await member.stop()
