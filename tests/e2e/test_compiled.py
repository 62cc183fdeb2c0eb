"""The compiled build (mypyc, see setup.py) behaves as the pure one: a test of the wheel.

Builds the wheel users install from a copy of this checkout into a venv of its own, kept
under ~/.cache/wsgate-tests/compiled/<hash of the sources> so that only a changed source
builds again (a build is one to two minutes of mypyc and gcc on 2 cores; a cached run is
the tests alone). The venv gets the wheel, its dependencies and the test tools from pip's
cache, then runs a named part of this suite with the installed wheel as `wsgate` (the
checkout's `src` is not on the path). The part: tests/unit (every compiled module's own
tests) and the integration tests of what a message passes through, the gateway and the
front door: about a minute. Not the whole suite, which would not fit the ten minutes a
test may take with a build, and not test_examples, whose DynamoDB runs need moto's server
in the venv too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wsgate-tests/compiled"
BUILD_FILES = ["setup.py", "pyproject.toml", "README.md"]
SUITE = [
    "tests/unit",
    "tests/integration/test_gateway.py",
    "tests/integration/test_front_door.py",
]
TOOLS = ["setuptools>=68", "mypy>=2.4", "pytest>=8", "pytest-timeout>=2.2", "hypothesis>=6"]


def _sources() -> list[Path]:
    return [ROOT / name for name in BUILD_FILES] + sorted((ROOT / "src").rglob("*.py"))


def _source_hash() -> str:
    digest = hashlib.sha256()
    for path in _sources():
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _run(*args: str | Path, cwd: Path = ROOT, timeout: float = 400) -> str:
    done = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WSGATE_PURE")},
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def _compiled_venv() -> Path:
    """A venv with the compiled wheel of these sources installed: built once per hash."""
    home = CACHE / _source_hash()
    ready = home / "ready"
    if ready.exists():
        return home / "venv"
    for stale in CACHE.glob("*"):  # older sources' venvs, and a build cut short
        shutil.rmtree(stale, ignore_errors=True)
    source = home / "source"  # a copy: the build writes build/ and *.egg-info beside it
    for path in _sources():
        target = source / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    python = home / "venv/bin/python"
    _run(sys.executable, "-m", "venv", home / "venv")
    _run(python, "-m", "pip", "install", "-q", *TOOLS)
    # No build isolation: the venv's mypy builds it, nothing is downloaded again.
    _run(python, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", home / "wheels", source, timeout=600)  # fmt: skip
    (wheel,) = (home / "wheels").glob("wsgate-*.whl")
    _run(python, "-m", "pip", "install", "-q", f"{wheel}[testing,aws]")
    ready.touch()
    return home / "venv"


def test_the_compiled_wheel_passes_the_hot_path_tests() -> None:
    """`wsgate --version` says compiled, `wsgate` is the wheel's, the named tests pass."""
    venv = _compiled_venv()
    python = venv / "bin/python"
    assert "compiled (mypyc)" in _run(venv / "bin/wsgate", "--version")
    where = _run(
        python, "-c", "import wsgate, wsgate.core.routing as r; print(wsgate.__file__, r.__file__)"
    )
    assert where.startswith(str(venv)), where
    assert where.split()[1].endswith(".so"), where
    _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *SUITE, timeout=480)
