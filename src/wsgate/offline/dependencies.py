"""A function's `requirements.txt`, installed once into a cached folder of its own.

On AWS a function's packages sit in its deployment package, next to its code (`sam build`
and serverless-python-requirements put them there). Locally they go to
`~/.cache/wsgate/requirements/<hash>` (or under `WSGATE_CACHE_DIR`), one folder per
distinct file content and Python version, installed with `pip install --target` and put
on the function process's `sys.path` right after its code: what one app pins never leaks
into wsgate's environment or another app's, and an unchanged file is not installed again.

The file is the function's own (a SAM `CodeUri` folder) or else the service's, next to
serverless.yml or the template. `--no-install` skips all this.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from wsgate.exceptions import ConfigError
from wsgate.offline.spec import AppSpec

log = logging.getLogger("wsgate.offline")

REQUIREMENTS = "requirements.txt"
#: Written last into a folder whose install finished: a folder without it is redone.
_COMPLETE = ".wsgate-complete"


def cache_root() -> Path:
    base = os.environ.get("WSGATE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "wsgate"
    )
    return Path(base) / "requirements"


def requirements_file(code_dir: Path, service_dir: Path) -> Path | None:
    """The requirements.txt a function uses: its code folder's, else the service's."""
    for folder in (code_dir, service_dir):
        candidate = folder / REQUIREMENTS
        if candidate.is_file():
            return candidate
    return None


def install_dependencies(spec: AppSpec) -> dict[str, Path]:
    """Install each function's requirements.txt (cached); FunctionSpec.name -> its folder."""
    installed: dict[Path, Path] = {}
    folders: dict[str, Path] = {}
    for fn in spec.functions:
        requirements = requirements_file(fn.code_dir, spec.source.parent.resolve())
        if requirements is None:
            continue
        if requirements not in installed:
            installed[requirements] = _install(requirements)
        folders[fn.name] = installed[requirements]
    return folders


def _install(requirements: Path) -> Path:
    content = requirements.read_bytes()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    key = hashlib.sha256(content + b"\0python" + version.encode()).hexdigest()[:20]
    target = cache_root() / key
    if (target / _COMPLETE).exists():
        log.info("%s: packages from %s", requirements, target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("%s: installing its packages into %s (once)", requirements, target)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--target",
        str(staging),
        "--requirement",
        str(requirements),
    ]
    # Relative paths in the file are the file's folder's, as when `sam build` runs there.
    result = subprocess.run(
        command, cwd=requirements.parent, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise ConfigError(
            f"cannot install {requirements}: {detail[-1] if detail else 'pip failed'} "
            "(--no-install skips it)"
        )
    (staging / _COMPLETE).write_text("")
    shutil.rmtree(target, ignore_errors=True)
    try:
        staging.rename(target)
    except OSError:  # another wsgate installed the same file meanwhile
        shutil.rmtree(staging, ignore_errors=True)
    return target
