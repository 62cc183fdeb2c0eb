"""A server in a child process: started, waited for until it answers, stopped.

The local DynamoDB (moto) and the test suite's redis-server both need the same care: the
output goes to a file, not a pipe (a pipe nobody reads fills up and stalls the server);
a start waits until the server answers, and fails early when the process exits (most
often: the port was taken meanwhile), with the end of its output; a stop asks first
(SIGTERM) and insists (SIGKILL) after a grace period.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO

#: Seconds a stopping server gets between SIGTERM and SIGKILL.
STOP_GRACE = 5.0


class BackgroundServer:
    """One run of `argv`, from `start()` to `stop()`; `answers()` says when it serves."""

    def __init__(
        self,
        argv: Sequence[str],
        answers: Callable[[], bool],
        *,
        env: Mapping[str, str] | None = None,
        own_session: bool = False,
    ) -> None:
        self.argv = list(argv)
        self.answers = answers
        self.env = env
        #: In a session of its own, the terminal's Ctrl+C does not reach it.
        self.own_session = own_session
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float) -> bool:
        """Start and wait until it answers; False (and stopped) if it exited or timed out."""
        self._log = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=None if self.env is None else dict(self.env),
            start_new_session=self.own_session,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if self.answers():
                return True
            time.sleep(0.05)
        return False

    def output(self) -> str:
        """The end of what it printed (for an error message)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after `STOP_GRACE`; its output is gone too."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
