"""What `wsgate connect` prints: messages on stdout, status lines on stderr.

On a terminal a message gets the time and a direction (`<` received, `>` sent) and JSON is
indented; piped, each message is printed as it arrived, one per line, so a script reads
exactly what the server sent. The formatting functions are pure; `Console` writes.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Protocol, TextIO

RECEIVED = "<"
SENT = ">"

#: RFC 6455 section 7.4.1 and the IANA registry: what a close code means, for people.
CLOSE_MEANINGS = {
    1000: "normal closure",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status code",
    1006: "abnormal closure: no close frame",
    1007: "invalid payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
}

#: Closes after which `wsgate connect` exits 0. A close frame without a code (1005) was
#: still a close the server chose.
NORMAL_CLOSES = frozenset({1000, 1001, 1005})


def describe_binary(data: bytes) -> str:
    """A binary message as one line: its size and its first 32 bytes in hex."""
    return f"<binary {len(data)} bytes: {data[:32].hex()}...>"


def pretty_json(text: str) -> str:
    """`text` indented if it is a JSON object or array, else unchanged."""
    if not text.lstrip().startswith(("{", "[")):
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return json.dumps(value, indent=2, ensure_ascii=False)


def decorate(text: str, marker: str, at: datetime) -> str:
    """`HH:MM:SS < text` with JSON indented; later lines line up under the first."""
    prefix = f"{at:%H:%M:%S} {marker} "
    return prefix + ("\n" + " " * len(prefix)).join(pretty_json(text).split("\n"))


def describe_close(code: int | None, reason: str) -> str:
    """`1011 (internal error) "Internal server error"`: the code, its meaning, the reason."""
    if code is None:
        return "no close code"
    meaning = CLOSE_MEANINGS.get(code)
    text = f"{code} ({meaning})" if meaning else str(code)
    return f"{text} {json.dumps(reason, ensure_ascii=False)}" if reason else text


class Prompt(Protocol):
    """The input line on the terminal, which output must not garble."""

    def hide(self) -> None:
        """Erase the prompt and what has been typed, if they are on the screen."""

    def show(self) -> None:
        """Draw them again, below what was just printed."""


class Console:
    """Writes the session's output; on a terminal, around the prompt being typed at.

    Every write holds `lock`: the thread reading the terminal takes it too, so a message
    arriving while someone types is printed above their line, not in the middle of it.
    """

    def __init__(
        self,
        *,
        decorated: bool,
        out: TextIO | None = None,
        err: TextIO | None = None,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        self.decorated = decorated
        self.lock = threading.Lock()
        self.prompt: Prompt | None = None
        self._out = out or sys.stdout
        self._err = err or sys.stderr
        self._clock = clock

    @classmethod
    def for_stdout(cls) -> Console:
        """Decorated when stdout is a terminal, plain when it is piped."""
        return cls(decorated=sys.stdout.isatty())

    def received(self, data: str | bytes) -> None:
        text = describe_binary(data) if isinstance(data, bytes) else data
        self._write(self._out, decorate(text, RECEIVED, self._clock()) if self.decorated else text)

    def sent(self, text: str) -> None:
        """Echo a sent message on a terminal; piped output has only what arrived."""
        if self.decorated:
            self._write(self._out, decorate(text, SENT, self._clock()))

    def status(self, text: str) -> None:
        """A line about the connection, on stderr (with the time on a terminal)."""
        self._write(self._err, f"{self._clock():%H:%M:%S} {text}" if self.decorated else text)

    def _write(self, stream: TextIO, text: str) -> None:
        with self.lock:
            if self.prompt is not None:
                self.prompt.hide()
            stream.write(text + "\n")
            stream.flush()
            if self.prompt is not None:
                self.prompt.show()
