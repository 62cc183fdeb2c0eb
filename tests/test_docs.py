"""The docs' snippets run, so they cannot rot; their links lead somewhere; the CLI page
names every option; the examples the blocks name exist.

Each page (README.md, docs/*.md) runs in a folder of its own, its fenced `python` and `sh`
blocks in order, as a reader would type them. An HTML comment right before a block changes
that, and says why in the page's source:

    <!-- not run: REASON -->    the block is shown, not run
    <!-- runs as: COMMAND -->   COMMAND runs instead (an install-and-serve line, say, whose
                                install the test suite has done)

- `python`: a block whose first line is `# NAME` (a file name) is written to NAME for
  later blocks and commands; any other block runs as a script from the folder and must
  exit 0.
- `sh`: each command (lines joined on a trailing `\\`) runs with bash and must exit 0.
  `wsgate serve ...`, and `wsgate connect URL` without `-x`, run until stopped: they start
  in the background, as in another terminal (a server counts as started when `/health`
  answers, a client when it says it is connected); a new `wsgate serve` replaces the
  previous one, and the page's end stops them all.
- The folder has the repository's `examples/`, and `.venv/bin/wsgate` and
  `.venv/bin/python` (this interpreter), so commands work as written; `8080` in a block,
  and the port `wsgate serve` and `wsgate connections` default to, mean a free port of the
  page's; the environment has no other `AWS_*` or `WSGATE_*` settings, no AWS config
  files and no pytest plugin but wsgate's, as on a clean machine.

Blocks in other languages (`text`, `yaml`, `json`, ...) or none are shown, never run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import click
import pytest

from tests.conftest import TIMEOUT, free_port
from wsgate.cli import cli

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_LANGUAGES = ("python", "sh")

#: Seconds a foreground command or script may take (most take one).
COMMAND_TIMEOUT = 6 * TIMEOUT

_FENCE = re.compile(r"^```(\S*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*(not run|runs as):\s*(.*?)\s*-->$")
_FILE_NAME = re.compile(r"^# ([\w./-]+\.\w+)$")


@dataclass(frozen=True)
class Block:
    """One fenced block of a page, and what the comment before it says."""

    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    not_run: str | None = None
    runs_as: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of `page`, with the directive of the comment just before each."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and lines[index].rstrip() != "```":
            body.append(lines[index])
            index += 1
        index += 1
        directive = _DIRECTIVE.match(lines[start - 1].strip()) if start else None
        kind, value = directive.groups() if directive else (None, None)
        found.append(
            Block(
                page,
                start + 1,
                opening.group(1),
                "\n".join(body) + "\n",
                not_run=value if kind == "not run" else None,
                runs_as=value if kind == "runs as" else None,
            )
        )
    return found


def commands(text: str) -> list[str]:
    """The shell commands of a block: comment lines dropped, `\\` continuations joined."""
    found: list[str] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        found.append(pending + line)
        pending = ""
    return found


def runs_until_stopped(command: str) -> str | None:
    """`serve` or `connect` for the commands that run until stopped; None for the others."""
    words = shlex.split(command, comments=True)
    if len(words) < 2 or Path(words[0]).name != "wsgate":
        return None
    if words[1] == "serve":
        return "serve"
    if words[1] == "connect" and not {"-x", "--execute"} & set(words):
        return "connect"
    return None


class Reader:
    """Runs one page's blocks in its own folder, as a reader of the page would."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.background: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []
        self.server: subprocess.Popen[bytes] | None = None
        self.env = self._clean_environment()
        bin_dir = folder / ".venv" / "bin"
        bin_dir.mkdir(parents=True)
        # Scripts, not symlinks: a venv's python finds its packages by the path it runs from.
        for name, run in (("python", ""), ("wsgate", " -m wsgate")):
            shim = bin_dir / name
            shim.write_text(f'#!/bin/sh\nexec "{sys.executable}"{run} "$@"\n')
            shim.chmod(0o755)
        (folder / "examples").symlink_to(ROOT / "examples")
        self.env["PATH"] = f"{bin_dir}{os.pathsep}{self.env.get('PATH', '')}"
        # The commands' own defaults of port 8080, moved to the page's port too.
        self.env["WSGATE_SERVE_PORT"] = str(port)
        self.env["WSGATE_CONNECTIONS_URL"] = f"http://127.0.0.1:{port}/dev"
        # pytest with wsgate's plugin only, as where wsgate alone is installed: the dev
        # tools' plugins would make each run of it ten seconds slower.
        self.env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        self.env["PYTEST_PLUGINS"] = "wsgate.pytest_plugin"

    def _clean_environment(self) -> dict[str, str]:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("AWS_", "WSGATE_"))
        }
        env["AWS_CONFIG_FILE"] = str(self.folder / "no-aws-config")
        env["AWS_SHARED_CREDENTIALS_FILE"] = str(self.folder / "no-aws-credentials")
        return env

    def run(self, block: Block) -> None:
        text = block.text.replace("8080", str(self.port))
        if block.runs_as is not None:
            self.shell(block, block.runs_as.replace("8080", str(self.port)))
        elif block.language == "python":
            self.python(block, text)
        else:
            for command in commands(text):
                self.shell(block, command)

    def python(self, block: Block, text: str) -> None:
        first_line = text.split("\n", 1)[0]
        named = _FILE_NAME.match(first_line)
        if named:
            path = (self.folder / named.group(1)).resolve()
            assert path.is_relative_to(self.folder.resolve()), f"{block.where}: writes outside"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return
        script = self.folder / "_snippet.py"
        script.write_text(text)
        self.foreground(block, [sys.executable, str(script)], text)

    def shell(self, block: Block, command: str) -> None:
        kind = runs_until_stopped(command)
        if kind is None:
            self.foreground(block, ["bash", "-c", command], command)
            return
        if kind == "serve" and self.server is not None:
            self.stop(self.server)
        log = (self.folder / f"background-{len(self.background)}.log").open("w+b")
        process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=self.folder,
            env=self.env,
            stdin=subprocess.PIPE,  # kept open: an interactive client stays connected
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.background.append((process, log))
        if kind == "serve":
            self.server = process
            self.wait_until(block, process, log, self.serving)
        else:
            self.wait_until(block, process, log, lambda: b"connected to" in _read(log))

    def foreground(self, block: Block, argv: list[str], shown: str) -> None:
        try:
            result = subprocess.run(
                argv,
                cwd=self.folder,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=COMMAND_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"{block.where}: still running after {COMMAND_TIMEOUT} s:\n{shown}")
        assert result.returncode == 0, (
            f"{block.where}: exit status {result.returncode}:\n{shown}\n"
            f"{result.stdout.decode(errors='replace')}{result.stderr.decode(errors='replace')}"
            f"{self.background_logs()}"
        )

    def serving(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1):
                return True
        except (urllib.error.URLError, OSError):
            return False

    def wait_until(
        self,
        block: Block,
        process: subprocess.Popen[bytes],
        log: IO[bytes],
        ready: Callable[[], bool],
    ) -> None:
        deadline = time.monotonic() + 4 * TIMEOUT
        while not ready():
            if process.poll() is not None:
                pytest.fail(f"{block.where}: exited with {process.returncode}:\n{_read(log)!r}")
            if time.monotonic() > deadline:
                pytest.fail(f"{block.where}: not started in time:\n{_read(log)!r}")
            time.sleep(0.05)

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdin is not None:
            process.stdin.close()

    def stop_all(self) -> None:
        for process, log in reversed(self.background):
            self.stop(process)
            log.close()

    def background_logs(self) -> str:
        return "".join(
            f"\n-- background {process.args}:\n{_read(log).decode(errors='replace')}"
            for process, log in self.background
        )


def _read(log: IO[bytes]) -> bytes:
    log.flush()
    log.seek(0)
    return log.read()


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[Reader]:
    page_reader = Reader(tmp_path, free_port())
    try:
        yield page_reader
    finally:
        page_reader.stop_all()


def test_reading_rules() -> None:
    """Blocks, their directives and their commands are read as the docstring says."""
    page = ROOT / "README.md"
    first, second = blocks(page)[:2]
    assert first.runs_as == ".venv/bin/wsgate serve" and first.not_run is None
    assert second.not_run and second.runs_as is None
    assert commands("# a comment\nwsgate connect URL \\\n  -x hi  # says hi\n\nls\n") == [
        "wsgate connect URL    -x hi  # says hi",
        "ls",
    ]
    assert runs_until_stopped(".venv/bin/wsgate serve app.py --reload") == "serve"
    assert runs_until_stopped("wsgate connect ws://127.0.0.1:8080/dev") == "connect"
    assert runs_until_stopped("wsgate connect URL -x hi -w 1") is None
    assert runs_until_stopped("echo hi | wsgate connect URL") is None
    assert runs_until_stopped("wsgate template app.py") is None


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_snippets_run(page: Path, reader: Reader) -> None:
    """Every python and sh block of the page runs as written, or says why it does not."""
    for block in blocks(page):
        if block.language not in RUN_LANGUAGES:
            continue
        if block.not_run is not None:
            assert block.not_run, f"{block.where}: `not run:` needs a reason"
            continue
        reader.run(block)


# -- links ------------------------------------------------------------------------------

_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """The heading anchors of a page, as GitHub makes them."""
    found: set[str] = set()
    in_fence = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        if in_fence or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def links(page: Path) -> Iterator[str]:
    in_fence = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        if not in_fence:
            yield from _LINK.findall(line)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_lead_somewhere(page: Path) -> None:
    """Each relative link names a file of the repository, and an anchor it has."""
    broken = []
    for target in links(page):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto: ...: outside the repository
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.is_relative_to(ROOT) or not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_example_paths_exist(page: Path) -> None:
    """Each `examples/...` path a python or sh block names exists, run or not."""
    missing = [
        f"{block.where}: {path}"
        for block in blocks(page)
        if block.language in RUN_LANGUAGES
        for path in re.findall(r"\bexamples/[\w./-]*\w", block.text)
        if not (ROOT / path).exists()
    ]
    assert not missing, f"no such file: {missing}"


# -- the CLI page -----------------------------------------------------------------------


def test_cli_page_names_every_command_and_option() -> None:
    """docs/cli.md names every `wsgate` command and every option its `--help` lists."""
    page = (ROOT / "docs" / "cli.md").read_text()
    assert isinstance(cli, click.Group)
    missing = []
    context = click.Context(cli)
    names = cli.list_commands(context)
    assert {"serve", "connect", "connections", "bench", "template", "deploy"} <= set(names)
    for name in names:
        command = cli.get_command(context, name)
        assert command is not None
        if f"wsgate {name}" not in page:
            missing.append(f"wsgate {name}")
        for param in command.params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            for option in [*param.opts, *param.secondary_opts]:
                if option in ("-h", "--help"):
                    continue
                if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", page):
                    missing.append(f"wsgate {name} {option}")
    assert not missing, f"docs/cli.md does not name: {missing}"
