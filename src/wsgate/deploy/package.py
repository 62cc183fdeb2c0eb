"""The code zip every function of a stack runs: the app, plus wsgate's runtime modules.

One zip for all functions (each picks its route from the event), laid out so that
WSGATE_APP resolves the way `wsgate serve TARGET` does:

- `path/to/app.py[:attr]`: the app's folder is the zip's root, with everything in it
  (minus caches, virtualenvs and hidden folders), so neighbours such as `handlers.py`
  come along; WSGATE_APP is `app.py[:attr]`.
- `package.module:attr`: the module's top-level package (or lone module) at the root;
  WSGATE_APP is the target unchanged.

Handler modules named in a route table that live outside those (and outside the standard
library and site-packages) are added by their top-level package too.

wsgate itself comes as the modules the Lambda adapter imports (see `runtime_modules`):
no `server/`, `cli/`, `deploy/` or `offline/` (aiohttp, click and watchfiles are not in
the Lambda runtime; boto3 is; `offline/` emulates Lambda locally), no SQLite or memory
store. Third-party dependencies of the app are not bundled.

The zip is deterministic: sorted entries, fixed timestamps and modes, so an unchanged
app gives the same bytes, the same S3 key and no stack update.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import io
import os
import sys
import sysconfig
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import wsgate
from wsgate.app import App
from wsgate.exceptions import ConfigError

#: Where the Lambda runtime enters wsgate: the zip holds these and every wsgate module
#: they import, directly or inside functions (so a new runtime module comes along by
#: itself, and a module nothing on AWS imports, such as a benchmark, stays out).
ENTRY_POINTS = ("wsgate", "wsgate.aws.lambda_handler")
#: Never in the zip, even when imported somewhere: the local server and CLI (aiohttp,
#: click and watchfiles are not in the Lambda runtime; boto3 is), deployment, the local
#: emulation of serverless.yml and SAM apps, and the embedded stores `open_store` would
#: only load for other URLs.
NOT_IN_RUNTIME = (
    "wsgate.server",
    "wsgate.cli",
    "wsgate.deploy",
    "wsgate.offline",
    "wsgate.store.memory",
    "wsgate.store.sqlite",
)
#: Without these the functions cannot start on AWS; missing ones are warned about.
REQUIRED_FOR_LAMBDA = ("wsgate.aws.lambda_handler", "wsgate.store.dynamodb")

#: Lambda's limit on a function's unzipped code (and layers).
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024

_SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", "site-packages"})
_SKIPPED_SUFFIXES = (".pyc", ".pyo")
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class Package:
    """A built code zip."""

    data: bytes
    sha256: str
    #: Archive names, sorted.
    files: tuple[str, ...]
    warnings: tuple[str, ...] = ()


def app_target(target: str) -> str:
    """WSGATE_APP for a `wsgate serve`-style TARGET: relative to the zip's root."""
    location, colon, attr = target.partition(":")
    if location.endswith(".py"):
        return Path(location).name + colon + attr
    return target


def build_package(target: str, app: App) -> Package:
    """Zip the app named by `target` (already loaded as `app`) with wsgate's runtime."""
    entries: dict[str, Path] = {}
    warnings: list[str] = []
    location = target.partition(":")[0]
    if location.endswith(".py"):
        root = Path(location).resolve().parent
        _add_tree(entries, root, prefix="")
        covered = [root]
    else:
        unit = _top_level_unit(location.partition(".")[0])
        if unit is None:
            raise ConfigError(f"cannot find the module {location!r} to package it")
        _add_unit(entries, unit)
        covered = [unit]
    for module_name in _handler_modules(app):
        unit = _top_level_unit(module_name.partition(".")[0])
        if unit is None or _is_library(unit) or any(_inside(unit, c) for c in covered):
            continue
        _add_unit(entries, unit)
        covered.append(unit)
    clashes = sorted({name.partition("/")[0] for name in entries} & {"wsgate", "wsgate.py"})
    if clashes:
        raise ConfigError(
            f"the app's folder has its own {clashes[0]}, which would shadow the wsgate "
            "runtime in the zip: move the app or rename it"
        )
    if any(name in entries for name in ("requirements.txt", "pyproject.toml")):
        warnings.append(
            "third-party dependencies are not bundled: the zip holds the app's folder and "
            "wsgate only (boto3 is in the Lambda runtime)"
        )
    runtime = runtime_modules()
    for name, path in runtime.items():
        entries[_archive_name(name, path)] = path
    for required in REQUIRED_FOR_LAMBDA:
        if required not in runtime:
            warnings.append(
                f"{required} is missing from this wsgate installation: the functions "
                "will fail to start on AWS"
            )
    data = _zip(entries)
    return Package(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        files=tuple(sorted(entries)),
        warnings=tuple(warnings),
    )


def _zip(entries: dict[str, Path]) -> bytes:
    buffer = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name in sorted(entries):
            content = entries[name].read_bytes()
            total += len(content)
            if total > MAX_UNZIPPED_BYTES:
                raise ConfigError(
                    f"the code is over Lambda's {MAX_UNZIPPED_BYTES // 2**20} MB limit "
                    f"(unzipped) at {name}: is a large folder next to the app?"
                )
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so the mode below is honoured
            info.external_attr = 0o100644 << 16
            archive.writestr(info, content, compresslevel=9)
    return buffer.getvalue()


def runtime_modules() -> dict[str, Path]:
    """wsgate's modules the Lambda entry points import, transitively: name -> file."""
    root = Path(wsgate.__file__).resolve().parent
    found: dict[str, Path] = {}
    pending = list(ENTRY_POINTS)
    while pending:
        name = pending.pop()
        if name in found or _not_in_runtime(name):
            continue
        path = _module_file(root, name)
        if path is None:
            continue
        found[name] = path
        parts = name.split(".")
        pending.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        pending.extend(_imports(path, package))
    return dict(sorted(found.items()))


def _not_in_runtime(name: str) -> bool:
    return any(name == excluded or name.startswith(f"{excluded}.") for excluded in NOT_IN_RUNTIME)


def _module_file(root: Path, name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] != "wsgate":
        return None
    base = root.joinpath(*parts[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, package: str) -> Iterator[str]:
    """Every wsgate module `path` may import, at any depth of its code."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            yield module
            # `from wsgate.store import dynamodb` names a module, not an attribute
            yield from (f"{module}.{alias.name}" for alias in node.names)


def _archive_name(name: str, path: Path) -> str:
    stem = name.replace(".", "/")
    return f"{stem}/__init__.py" if path.name == "__init__.py" else f"{stem}.py"


def _add_tree(entries: dict[str, Path], root: Path, *, prefix: str) -> None:
    for path in _walk(root):
        entries[prefix + path.relative_to(root).as_posix()] = path


def _walk(root: Path) -> Iterator[Path]:
    """Files under `root`, without caches, virtualenvs, hidden and symlinked folders."""
    for directory, dirnames, filenames in os.walk(root):
        here = Path(directory)
        dirnames[:] = sorted(
            name
            for name in dirnames
            if not name.startswith(".")
            and name not in _SKIPPED_DIRS
            and not (here / name).is_symlink()
            and not (here / name / "pyvenv.cfg").exists()
        )
        for filename in sorted(filenames):
            path = here / filename
            if filename.startswith(".") or filename.endswith(_SKIPPED_SUFFIXES):
                continue
            if path.is_file():
                yield path


def _add_unit(entries: dict[str, Path], unit: Path) -> None:
    if unit.is_dir():
        _add_tree(entries, unit, prefix=f"{unit.name}/")
    else:
        entries[unit.name] = unit


def _top_level_unit(name: str) -> Path | None:
    """The folder of a top-level package, or the file of a top-level module."""
    module: ModuleType | None = sys.modules.get(name)
    if module is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        if spec.submodule_search_locations:
            return Path(next(iter(spec.submodule_search_locations))).resolve()
        return Path(spec.origin).resolve() if spec.origin and spec.has_location else None
    paths = getattr(module, "__path__", None)
    if paths:
        return Path(next(iter(paths))).resolve()
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file else None


def _handler_modules(app: App) -> Iterable[str]:
    names = {getattr(route.handler, "__module__", None) for route in app.routes.values()}
    return sorted(
        name
        for name in names
        if name and name != "__main__" and name != "wsgate" and not name.startswith("wsgate.")
    )


def _is_library(path: Path) -> bool:
    paths = sysconfig.get_paths()
    roots = {paths.get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    return any(_inside(path, Path(root).resolve()) for root in roots if root)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents
