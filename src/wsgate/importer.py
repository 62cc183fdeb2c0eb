"""Load the app a `wsgate serve TARGET` names: `app.py`, `app.py:app` or `package.module:app`."""

from __future__ import annotations

import importlib
import importlib.util
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


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise TargetError(f"no such file: {path}")
    path = path.resolve()
    # Like `python path.py`: the file's folder comes first on sys.path, so the app can
    # import its neighbours (and route tables can name "handlers.connect").
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
