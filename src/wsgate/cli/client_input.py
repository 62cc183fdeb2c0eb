"""What `wsgate connect` reads: lines from stdin, each a message or a command.

Reading stdin must never keep the program alive once the connection has closed, even
while stdin is an open terminal or pipe: a pipe is read by the event loop itself
(POSIX), a terminal by a daemon thread calling `input()` (line editing and history with
the standard library's `readline`), anything else by a daemon thread calling `os.read`
(no lock a blocked thread could hold at exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import stat
import sys
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from wsgate.cli.client_output import Console

#: The prompt on a terminal; a sent message is then echoed as `HH:MM:SS > text`.
PROMPT = "> "

#: The longest line read from a pipe: far above any message API Gateway accepts.
MAX_LINE_BYTES = 16 * 1024 * 1024

COMMANDS_HELP = """\
\b
Lines typed on stdin are sent as text messages, except for these commands:
  /ping [DATA]            send a ping; the pong is printed
  /close [CODE [REASON]]  close with CODE (default 1000) and REASON
  //TEXT                  send /TEXT: a message that starts with /
"""


# -- commands ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    text: str


@dataclass(frozen=True, slots=True)
class Ping:
    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Mistake:
    """A line that looked like a command and was not one: nothing is sent."""

    problem: str


Typed = Send | Ping | Close | Mistake


def parse_line(line: str) -> Typed:
    """What a typed line asks for: a message, `/ping`, `/close`, or a mistake to report."""
    if line.startswith("//"):
        return Send(line[1:])
    if not line.startswith("/"):
        return Send(line)
    name, _, rest = line.partition(" ")
    if name == "/ping":
        data = rest.encode()
        if len(data) > 125:
            return Mistake("a ping carries at most 125 bytes")
        return Ping(data)
    if name == "/close":
        return _parse_close(rest.strip())
    return Mistake(f"unknown command {name}: type /{line} to send a message that starts with /")


def _parse_close(args: str) -> Typed:
    code_text, _, reason = args.partition(" ")
    if not code_text:
        return Close(1000, "")
    if not code_text.isdigit() or not _sendable(int(code_text)):
        return Mistake(f"/close takes a code of 1000-1003, 1007-1014 or 3000-4999, not {code_text}")
    if len(reason.encode()) > 123:
        return Mistake("a close reason is at most 123 bytes")
    return Close(int(code_text), reason)


def _sendable(code: int) -> bool:
    """Codes RFC 6455 lets an endpoint put in a close frame."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


# -- stdin --------------------------------------------------------------------------------


class StdinLines:
    """The lines of stdin, without their newline; None once it has ended."""

    #: Typed at a terminal: its end (Ctrl-D) closes at once, no replies are awaited.
    interactive = False

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()

    async def next(self) -> str | None:
        return await self._queue.get()

    def handled(self) -> None:
        """The last line has been acted on (and echoed): the terminal may prompt again."""

    def close(self) -> None:
        """Stop reading; stdin is left as it was found."""

    def _put(self, line: str | None) -> None:
        """Queue a line from any thread."""
        self._loop.call_soon_threadsafe(self._queue.put_nowait, line)


def read_stdin(console: Console) -> StdinLines:
    """Start reading stdin the way that suits what it is (see the module docstring)."""
    try:
        fd = sys.stdin.fileno()
        mode = os.fstat(fd).st_mode
    except (AttributeError, OSError, ValueError):  # no stdin at all (pythonw, closed)
        lines = StdinLines()
        lines._put(None)
        return lines
    if os.isatty(fd):
        readline = _readline()
        if readline is not None and sys.stdout.isatty():
            return TerminalLines(fd, readline, console)
    elif os.name == "posix" and (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return PipeLines(fd)
    return ThreadLines(fd)


def _readline() -> ModuleType | None:
    try:
        import readline
    except ImportError:  # Windows, or a Python built without it
        return None
    return readline


def _decode(line: bytes) -> str:
    return line.decode(sys.stdin.encoding or "utf-8", errors="replace")


class PipeLines(StdinLines):
    """A pipe or socket, read by the event loop: nothing waits on it once the loop stops.

    Not for files or character devices: epoll cannot watch them.
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self._transport: asyncio.BaseTransport | None = None
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
        pipe = os.fdopen(os.dup(self._fd), "rb", buffering=0)
        try:
            self._transport, _ = await self._loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), pipe
            )
        except (ValueError, OSError):  # not a pipe the loop can watch after all
            pipe.close()
            self._queue.put_nowait(None)
            return
        try:
            while line := await reader.readline():
                self._queue.put_nowait(_decode(line).rstrip("\n"))
        except (ValueError, OSError):  # a line over MAX_LINE_BYTES, a read error: the end
            pass
        self._queue.put_nowait(None)

    def close(self) -> None:
        self._task.cancel()
        if self._transport is not None:
            self._transport.close()
        with contextlib.suppress(OSError):  # the loop made the shared pipe non-blocking
            os.set_blocking(self._fd, True)


class ThreadLines(StdinLines):
    """A file or a console, read by a daemon thread with `os.read`."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self.interactive = os.isatty(fd)
        threading.Thread(target=self._read, name="stdin", daemon=True).start()

    def _read(self) -> None:
        pending = b""
        while chunk := os.read(self._fd, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._put(_decode(line))
        if pending:
            self._put(_decode(pending))
        self._put(None)


class TerminalLines(StdinLines):
    """A terminal, read by a daemon thread calling `input()`: readline edits and remembers.

    After each line the thread erases what was typed and waits until the line has been
    handled, so the echo (`HH:MM:SS > text`) replaces it before the next prompt. It is
    the console's `Prompt`: a message arriving mid-line is printed above the prompt.
    """

    interactive = True

    def __init__(self, fd: int, readline: ModuleType, console: Console) -> None:
        super().__init__()
        self._fd = fd
        self._readline = readline
        self._console = console
        self._reading = False  # input() is on the screen (guarded by console.lock)
        self._closed = False
        self._go_on = threading.Event()
        self._go_on.set()
        self._terminal_mode = _terminal_mode(fd)
        console.prompt = self
        threading.Thread(target=self._read, name="stdin", daemon=True).start()

    def _read(self) -> None:
        while True:
            self._go_on.wait()
            self._go_on.clear()
            with self._console.lock:
                if self._closed:
                    return
                self._reading = True
            try:
                line: str | None = input(PROMPT)
            except EOFError:
                line = None
            with self._console.lock:
                self._reading = False
                if not self._closed:
                    self._erase(line)
            self._put(line)
            if line is None:
                return

    def _erase(self, line: str | None) -> None:
        """Remove the typed line: its echo (or nothing, after Ctrl-D) takes its place."""
        if line is None:  # the cursor is still after the prompt
            sys.stdout.write("\r\x1b[J")
        else:  # readline moved to the next line
            sys.stdout.write(f"\x1b[{_rows(PROMPT + line)}F\x1b[J")
        sys.stdout.flush()

    def handled(self) -> None:
        self._go_on.set()

    def hide(self) -> None:
        if self._reading and not self._closed:
            typed = PROMPT + self._readline.get_line_buffer()
            above = _rows(typed) - 1
            sys.stdout.write("\r" + (f"\x1b[{above}A" if above else "") + "\x1b[J")

    def show(self) -> None:
        # readline.redisplay() draws only what changed, which is nothing as readline sees it.
        if self._reading and not self._closed:
            sys.stdout.write(PROMPT + self._readline.get_line_buffer())
            sys.stdout.flush()

    def close(self) -> None:
        """Clear the prompt and give the terminal back its mode; the thread is abandoned."""
        with self._console.lock:
            self.hide()
            sys.stdout.flush()
            self._closed = True
            self._console.prompt = None
        self._go_on.set()
        if self._terminal_mode is not None:
            import termios

            with contextlib.suppress(OSError, termios.error):
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._terminal_mode)


def _rows(text: str) -> int:
    """How many terminal rows `text` takes."""
    return max(1, math.ceil(len(text) / max(1, shutil.get_terminal_size().columns)))


def _terminal_mode(fd: int) -> list[Any] | None:
    """The terminal's settings, which readline changes while it reads."""
    try:
        import termios
    except ImportError:
        return None
    try:
        return termios.tcgetattr(fd)
    except termios.error:
        return None
