"""Load the app a `wsgate serve TARGET` names: `app.py`, `app.py:app` or `package.module:app`."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from wsgate.app import App
from wsgate.exceptions import TargetError


def load_app(target: str) -> App:
    """Import TARGET and return its App; TargetError says exactly what went wrong."""
    location, _, attr = target.partition(":")
    if not location:
        raise TargetError(f"bad target {target!r}: expected path.py, path.py:app or module:app")
    module = _import_file(Path(location)) if location.endswith(".py") else _import_module(location)
    if attr:
        try:
            app = getattr(module, attr)
        except AttributeError:
            raise TargetError(f"{location} has no attribute {attr!r}") from None
        if not isinstance(app, App):
            raise TargetError(f"{target} is a {type(app).__name__}, not a wsgate.App")
        return app
    apps = [value for value in vars(module).values() if isinstance(value, App)]
    if isinstance(getattr(module, "app", None), App):
        return module.app  # type: ignore[no-any-return]
    if len(apps) == 1:
        return apps[0]
    if not apps:
        raise TargetError(f"{location} defines no wsgate.App (expected a variable named 'app')")
    raise TargetError(f"{location} defines several Apps; name one: {location}:NAME")


def reload_app(target: str, folder: Path) -> App:
    """Import TARGET afresh, with every module under `folder` (its own code: not wsgate,
    not an installed package), and return its App: `wsgate serve --reload`.

    Fresh modules, so module-level state starts over, as in a new Lambda container. On any
    error (TargetError, or what an import of a route table's module raised) the modules
    of before are put back, so the running app's later imports still find them.
    """
    folder = folder.resolve()
    before = {name: module for name, module in sys.modules.items() if _is_under(module, folder)}
    for name, module in before.items():
        del sys.modules[name]
        # An edit within the second of the last compile, of the same size, would pass the
        # bytecode cache's check (whole-second mtime, size) and run the code of before.
        with contextlib.suppress(TypeError, OSError):
            os.remove(module.__cached__)
    try:
        return load_app(target)
    except BaseException:
        for name, module in list(sys.modules.items()):
            if _is_under(module, folder):
                del sys.modules[name]
        sys.modules.update(before)
        raise


def _is_under(module: ModuleType | None, folder: Path) -> bool:
    """`module` is the user's code in `folder` (not wsgate's, not an installed package's)."""
    file = getattr(module, "__file__", None)
    if not file or module is None or module.__name__.partition(".")[0] == "wsgate":
        return False
    path = Path(file).resolve()
    if not path.is_relative_to(folder):
        return False
    parts = path.relative_to(folder).parts
    return not any(
        part.startswith(".") or part in ("site-packages", "dist-packages") for part in parts
    )


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise TargetError(f"no such file: {path}")
    path = path.resolve()
    # Like `python path.py`: the file's folder comes first on sys.path, so the app can
    # import its neighbours (and route tables can name "handlers.connect").
    if sys.path[0] != str(path.parent):
        sys.path.insert(0, str(path.parent))
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise TargetError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _import_module(name: str) -> ModuleType:
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            raise TargetError(f"no module named {name!r} (is it on PYTHONPATH?)") from exc
        raise TargetError(f"importing {name} failed: {exc}") from exc
    except Exception as exc:
        raise TargetError(f"importing {name} failed: {type(exc).__name__}: {exc}") from exc
