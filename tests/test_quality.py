"""The code base stays lint-clean and type-clean: part of the suite, so CI enforces it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_ruff_clean() -> None:
    """ruff finds nothing in src, tests and examples."""
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "src", "tests", "examples"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_ruff_format_clean() -> None:
    """src, tests and examples are as `ruff format` writes them (one style, no diffs of
    whitespace in reviews)."""
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "src", "tests", "examples"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)  # a cold cache on a busy machine takes over a minute
def test_mypy_strict_clean() -> None:
    """mypy --strict finds nothing in src."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_layers_kept() -> None:
    """import-linter's contracts in pyproject.toml hold: the core is pure, stores import only
    the core, what runs on Lambda imports no local server, bench and the CLI are leaves."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
