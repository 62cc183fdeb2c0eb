"""Optional dependencies (the `bench` extra), imported only when present.

They are loaded through importlib and typed as Any on purpose: the test suite and mypy
run without them (the `dev` extra does not install them), and a module that mypy sees
as typed in one environment and missing in another cannot be checked the same in both.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from collections.abc import Callable
from typing import Any


def load(name: str) -> Any | None:
    """The module `name`, or None if it is not installed (or fails to import)."""
    if importlib.util.find_spec(name.partition(".")[0]) is None:
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def version(name: str) -> str | None:
    """The installed distribution's version, or None."""
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version(name)
    except PackageNotFoundError:
        return None


def loop_factory() -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """uvloop's loop factory when installed (the load generator must not be the bottleneck)."""
    uvloop = load("uvloop")
    if uvloop is None:
        return "asyncio", None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return "uvloop", factory
