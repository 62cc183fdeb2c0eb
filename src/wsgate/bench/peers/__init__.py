"""The peers: what a user would pick instead of wsgate to self-host the app in Python.

Each peer is an app in this folder, written the way that framework's users write it, and
run with the python of a virtual environment the benchmark creates on first use in its
cache folder (beside serverless-offline's, see `node.cache_dir`), never the test suite.
The versions are pinned so that runs compare; the folder is reinstalled when they change.

Starlette stands for FastAPI too: FastAPI's WebSocket is Starlette's, and FastAPI adds
only dependency resolution when a connection opens, so Starlette is the cheaper of the two
(the choice favours the peer). Every peer runs on uvicorn with uvloop, as wsgate runs on
uvloop; Django Channels too, rather than daphne, so that only the framework differs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from wsgate.bench.node import Unavailable, cache_dir

#: The peers' pinned releases (uvicorn[standard] brings uvloop, httptools and websockets,
#: its default WebSocket implementation; Django 5.2 is the newest for Python 3.11).
PINS = (
    "starlette==1.10.0",
    "uvicorn[standard]==0.55.0",
    "websockets==17.4",
    "wsproto==1.3.2",
    "uvloop==0.23.0",
    "httptools==0.9.0",
    "python-socketio==5.18.1",
    "python-engineio==4.15.1",
    "django==5.2.19",
    "channels==4.3.2",
)
INSTALL_TIMEOUT = 600.0
#: Written once pip has installed PINS: its text is what the folder holds.
MARKER = "wsgate-bench-pins.txt"
#: Where the apps are: run by path with the peers' python (they import nothing of wsgate).
APPS = Path(__file__).parent


def root() -> Path:
    """The virtual environment's folder (one per Python minor version, as venvs are)."""
    major, minor = sys.version_info[:2]
    return cache_dir() / f"python-peers-{major}.{minor}"


def python(folder: Path) -> Path:
    """The virtual environment's interpreter."""
    return folder / "bin" / "python"


def venv_command(base_python: str, folder: Path) -> list[str]:
    """Create the virtual environment (with pip)."""
    return [base_python, "-m", "venv", str(folder)]


def install_command(folder: Path) -> list[str]:
    """Install the pinned releases; fail fast without a network rather than retry for long."""
    return [
        str(python(folder)),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--retries",
        "1",
        "--timeout",
        "30",
        *PINS,
    ]


def installed(folder: Path) -> bool:
    """Whether `folder` holds exactly PINS (installed and not since changed)."""
    marker = folder / MARKER
    return marker.exists() and marker.read_text() == "\n".join(PINS) + "\n"


def prepare(base_python: str = sys.executable) -> Path:
    """The peers' python, creating their environment on first use (minutes, from PyPI).

    Raises Unavailable with the reason, and the log's path, if creating it fails.
    """
    folder = root()
    if installed(folder):
        return python(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    log = folder.parent / f"{folder.name}-install.log"
    with log.open("wb") as out:
        steps = {
            "python -m venv": venv_command(base_python, folder),
            "pip install": install_command(folder),
        }
        for label, step in steps.items():
            out.write(("$ " + " ".join(step) + "\n").encode())
            out.flush()
            try:
                done = subprocess.run(
                    step,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=INSTALL_TIMEOUT,
                )
            except subprocess.TimeoutExpired:
                raise Unavailable(
                    f"{label} took over {INSTALL_TIMEOUT:.0f}s (log: {log})"
                ) from None
            except OSError as exc:
                raise Unavailable(f"cannot run {step[0]}: {exc}") from exc
            if done.returncode != 0:
                out.flush()
                lines = log.read_text(errors="replace").strip().splitlines() or ["no output"]
                raise Unavailable(f"{label} failed ({done.returncode}): {lines[-1]} (log: {log})")
    (folder / MARKER).write_text("\n".join(PINS) + "\n")
    return python(folder)
