"""Builds wsgate with the modules every message passes through compiled by mypyc.

A wheel (`pip install .`, `pip wheel .`, `python -m build`) is compiled: the same typed
source, turned into C extensions, takes less CPU per message. The source stays plain
Python that imports as it is, so an editable install (`pip install -e .`, for working on
wsgate) is pure Python, and so is any build with WSGATE_PURE=1 or without a C compiler.
`wsgate --version` says which one is running.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from typing import Any

from setuptools import setup

# The modules a message passes through, from the frame callback to the transport's send,
# chosen by profiling `python -m wsgate.bench.hotpath` (docs/benchmarks.md). The
# connection is compiled because picows calls it through a pure `FrameListener`
# (server/upgrade.py): a compiled class must not subclass picows' Cython WSListener. Not
# context.py: a LambdaContext keeps the settings it is given in its __dict__, over
# class-level defaults, which a compiled class has no room for.
HOT_PATH = [
    "src/wsgate/core/events.py",
    "src/wsgate/core/ids.py",
    "src/wsgate/core/messages.py",
    "src/wsgate/core/responses.py",
    "src/wsgate/core/routing.py",
    "src/wsgate/connection_api.py",
    "src/wsgate/dispatch.py",
    "src/wsgate/server/connection.py",
    "src/wsgate/server/delivery.py",
    "src/wsgate/server/gateway.py",
    "src/wsgate/server/invoker.py",
]


def _why_pure() -> str | None:
    """Why this build stays pure Python, or None to compile it."""
    if os.environ.get("WSGATE_PURE") == "1":
        return "WSGATE_PURE=1"
    if {"develop", "editable_wheel"} & set(sys.argv):
        return "an editable install runs the source as it is"
    if not {"bdist_wheel", "build", "build_ext", "install"} & set(sys.argv):
        return "not a build"  # metadata only (egg_info, dist_info, sdist): no need for mypyc
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    return None


def _extensions() -> dict[str, Any]:
    why_pure = _why_pure()
    if why_pure is not None:
        if why_pure != "not a build":
            print(f"wsgate: building pure Python ({why_pure})", file=sys.stderr)
        return {}
    # Imported only here: mypy is a build requirement of the compiled build alone.
    from mypyc.build import mypycify

    # One C file per module, so build_ext compiles them on every core.
    # The typing is checked strictly by the test suite's mypy run; what the build checks
    # again is only what mypyc needs, with or without the dependencies installed beside it
    # (an isolated build has only setuptools and mypy: their types are then Any).
    tolerant = [
        "--ignore-missing-imports",
        "--follow-imports=silent",
        "--allow-subclassing-any",
        "--no-warn-return-any",
        "--no-warn-unused-ignores",
    ]
    return {
        "ext_modules": mypycify(tolerant + HOT_PATH, opt_level="3", multi_file=True),
        "options": {"build_ext": {"parallel": os.cpu_count() or 1}},
    }


setup(**_extensions())
