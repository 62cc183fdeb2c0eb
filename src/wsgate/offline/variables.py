"""Serverless Framework variables (`${...}`) in one serverless.yml, resolved on demand.

Only the keys a loader asks for are resolved (`wsgate.offline.serverless` asks for the few
it reads), so a variable elsewhere in the file that needs AWS never stops a local run.

Supported: `${self:path}`, `${opt:stage}` (the --stage option), `${sls:stage}`,
`${opt:region}` (no option: falls back), `${env:NAME}`, `${file(path):sub.path}`,
`${aws:region}`, `${aws:accountId}`, `${strToBool(...)}`, fallbacks (`${opt:stage, 'dev'}`,
`${opt:stage, self:provider.stage}`) and nesting; `${param:KEY}` from `--param KEY=VALUE`
(as `serverless --param`). `${ssm:...}`, `${cf:...}` and `${s3:...}` need AWS: their
fallback is used, or a value given as `--param 'ssm:/path=VALUE'` (the variable's own
text before `=`). A value that cannot be resolved is a ConfigError naming the key, the
variable and how to supply it. `${AWS::Region}` and other
CloudFormation placeholders are left alone for `Fn::Sub`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsgate.exceptions import ConfigError
from wsgate.offline.cloudformation import load_document
from wsgate.offline.spec import DEFAULT_REGION, LOCAL_ACCOUNT_ID

#: Sources a `${source:address}` may name. Others are CloudFormation placeholders.
_SOURCES = frozenset(
    {"self", "opt", "sls", "env", "file", "aws", "ssm", "cf", "s3", "param", "strToBool"}
)
#: Sources that need AWS: unavailable locally, so only their fallback can be used.
_REMOTE_SOURCES = frozenset({"ssm", "cf", "s3"})
_ADDRESS = re.compile(r"^(\w+)(?::(.*)|\((.*)\)(?::(.*))?)$", re.DOTALL)
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")

#: A variable that resolved to nothing (so a fallback is tried).
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class _Quoted:
    text: str


@dataclass(frozen=True, slots=True)
class _Var:
    """`${part, fallback, ...}`; each part is a sequence of text, quoted text and variables."""

    parts: tuple[tuple[str | _Quoted | _Var, ...], ...]
    raw: str


def _parse(text: str) -> list[str | _Var]:
    """Split a string into literal text and `${...}` variables (nested ones included)."""
    nodes: list[str | _Var] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        parsed = _parse_var(text, i) if text.startswith("${", i) else None
        if parsed is None:
            literal.append(text[i])
            i += 1
            continue
        if literal:
            nodes.append("".join(literal))
            literal = []
        nodes.append(parsed[0])
        i = parsed[1]
    if literal:
        nodes.append("".join(literal))
    return nodes


def _parse_var(text: str, start: int) -> tuple[_Var, int] | None:
    parts: list[tuple[str | _Quoted | _Var, ...]] = []
    current: list[str | _Quoted | _Var] = []
    chars: list[str] = []

    def flush() -> None:
        if chars:
            current.append("".join(chars))
            chars.clear()

    i = start + 2
    while i < len(text):
        char = text[i]
        if text.startswith("${", i):
            inner = _parse_var(text, i)
            if inner is None:
                return None
            flush()
            current.append(inner[0])
            i = inner[1]
        elif char in "'\"":
            end = text.find(char, i + 1)
            if end < 0:
                return None
            flush()
            current.append(_Quoted(text[i + 1 : end]))
            i = end + 1
        elif char in ",}":
            flush()
            parts.append(tuple(current))
            current = []
            i += 1
            if char == "}":
                return _Var(tuple(parts), text[start:i]), i
        else:
            chars.append(char)
            i += 1
    return None


def _source_of(part: tuple[str | _Quoted | _Var, ...]) -> str | None:
    first = part[0] if part else None
    if not isinstance(first, str):
        return None
    match = re.match(r"\s*(\w+)[:(]", first)
    if match is None or first.lstrip().startswith(match.group(1) + "::"):
        return None
    return match.group(1) if match.group(1) in _SOURCES else None


class VariableResolver:
    """Serverless variables in one serverless.yml, resolved on demand."""

    def __init__(
        self,
        doc: Mapping[str, Any],
        path: Path,
        stage: str | None,
        environ: Mapping[str, str],
        params: Mapping[str, str] | None = None,
    ) -> None:
        self.doc = doc
        #: `--param KEY=VALUE`: `${param:KEY}`, and values for `${ssm:...}`/`${cf:...}`.
        self.params = params or {}
        self.path = path
        self.source = path.name
        self.option_stage = stage
        self.environ = environ
        self._files: dict[Path, Any] = {}
        self._active: list[str] = []
        self._stage: str | None = None
        self._region: str | None = None

    def error(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {where}: {message}")

    # -- values at paths ---------------------------------------------------------------

    def walk(self, path: str, where: str | None = None) -> Any:
        """The node at `path` (dotted), variables resolved on the way but not inside it."""
        node: Any = self.doc
        walked: list[str] = []
        for step in path.split(".") if path else []:
            node = self.shallow(node, ".".join(walked) or "(root)")
            if isinstance(node, dict) and step in node:
                node = node[step]
            elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
                node = node[int(step)]
            else:
                return _MISSING
            walked.append(step)
        if isinstance(node, str):
            if path in self._active:
                chain = " -> ".join([*self._active, path])
                raise self.error(where or path, f"circular variable reference: {chain}")
            self._active.append(path)
            try:
                node = self.shallow(node, path)
            finally:
                self._active.pop()
        return node

    def get(self, path: str, default: Any = None) -> Any:
        """The value at `path` with every variable in it resolved; `default` if absent."""
        node = self.walk(path)
        return default if node is _MISSING or node is None else self.deep(node, path)

    def items(self, path: str) -> list[Any]:
        """The list at `path`, its items' variables not resolved (so an event that needs
        AWS, such as an SQS queue's `${cf:...}` ARN, is never resolved unless asked for)."""
        node = self.walk(path)
        if node is _MISSING or node is None:
            return []
        if not isinstance(node, list):
            raise self.error(path, f"expected a list, got {type(node).__name__}")
        return node

    def keys(self, path: str) -> list[str]:
        node = self.walk(path)
        if node is _MISSING or node is None:
            return []
        if not isinstance(node, dict):
            raise self.error(path, f"expected a mapping, got {type(node).__name__}")
        return [str(key) for key in node]

    def deep(self, value: Any, where: str) -> Any:
        value = self.shallow(value, where)
        if isinstance(value, dict):
            return {key: self.deep(item, f"{where}.{key}") for key, item in value.items()}
        if isinstance(value, list):
            return [self.deep(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return value

    def shallow(self, value: Any, where: str) -> Any:
        """A string's variables resolved (the result may be a mapping or list, unresolved)."""
        if not isinstance(value, str) or "${" not in value:
            return value
        nodes = _parse(value)
        if len(nodes) == 1 and isinstance(nodes[0], _Var) and self._is_variable(nodes[0]):
            return self._resolve(nodes[0], where)
        out: list[str] = []
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
            elif not self._is_variable(node):
                out.append(node.raw)
            else:
                out.append(self._embed(self._resolve(node, where), node, where))
        return "".join(out)

    def _is_variable(self, var: _Var) -> bool:
        return bool(var.parts) and _source_of(var.parts[0]) is not None

    def _embed(self, value: Any, var: _Var, where: str) -> str:
        if isinstance(value, dict | list):
            raise self.error(
                where, f"{var.raw} is a {type(value).__name__}; it cannot be part of a string"
            )
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    # -- variables ---------------------------------------------------------------------

    def _resolve(self, var: _Var, where: str) -> Any:
        reasons: list[str] = []
        for index, part in enumerate(var.parts):
            value = self._part(part, where, reasons, first=index == 0)
            if value is not _MISSING and value is not None:
                return value
        raise self.error(where, f"cannot resolve {var.raw}: {'; '.join(reasons)}")

    def _part(
        self, part: tuple[str | _Quoted | _Var, ...], where: str, reasons: list[str], first: bool
    ) -> Any:
        pieces = [p for p in part if not (isinstance(p, str) and not p.strip())]
        if len(pieces) == 1 and isinstance(pieces[0], _Quoted):
            return pieces[0].text
        if len(pieces) == 1 and isinstance(pieces[0], _Var):
            inner = pieces[0]
            return self._resolve(inner, where) if self._is_variable(inner) else inner.raw
        text = "".join(
            p
            if isinstance(p, str)
            else p.text
            if isinstance(p, _Quoted)
            else self._embed(self._resolve(p, where), p, where)
            for p in part
        ).strip()
        match = _ADDRESS.match(text)
        if match is None or match.group(1) not in _SOURCES:
            if first:
                reasons.append(f"{text!r} is not a variable")
                return _MISSING
            if text in ("true", "false"):
                return text == "true"
            if _NUMBER.match(text):
                return float(text) if "." in text else int(text)
            return text  # a bare fallback word: `${opt:stage, dev}`
        source, address, argument, subpath = match.groups()
        return self._source(source, address, argument, subpath, where, reasons)

    def _source(
        self,
        source: str,
        address: str | None,
        argument: str | None,
        subpath: str | None,
        where: str,
        reasons: list[str],
    ) -> Any:
        address = (address or "").strip()
        if source == "self":
            value = self.walk(address, where)
            if value is _MISSING and address in ("provider.stage", "provider.region"):
                # The framework fills these in (dev, us-east-1) before resolving variables.
                return self.stage if address == "provider.stage" else self.region
            if value is _MISSING:
                reasons.append(f"self:{address} does not exist")
            return value
        if source == "opt":
            if address == "stage" and self.option_stage is not None:
                return self.option_stage
            reasons.append(f"no --{address} option was given")
            return _MISSING
        if source == "sls":
            if address == "stage":
                return self.stage
            if address == "instanceId":
                return "wsgate-local"
            reasons.append(f"sls:{address} is not supported")
            return _MISSING
        if source == "env":
            value = self.environ.get(address)
            if value is None:
                reasons.append(f"environment variable {address} is not set")
                return _MISSING
            return value
        if source == "aws":
            if address == "region":
                return self.region
            if address == "accountId":
                return LOCAL_ACCOUNT_ID
            reasons.append(f"aws:{address} is not supported")
            return _MISSING
        if source == "file":
            return self._file((argument or "").strip(), (subpath or "").strip(), where, reasons)
        if source == "strToBool":
            return (argument or "").strip().lower() in ("true", "1")
        if source == "param":
            if address in self.params:
                return self.params[address]
            reasons.append(f"no --param {address}=VALUE was given")
            return _MISSING
        if source in _REMOTE_SOURCES:
            key = f"{source}:{address}"
            if key in self.params:
                return self.params[key]
            reasons.append(
                f"{key} needs AWS and is not available offline: give its value with "
                f"--param '{key}=VALUE', or add a fallback (${{{key}, 'value'}})"
            )
            return _MISSING
        reasons.append(f"{source}: is not supported")
        return _MISSING

    def _file(self, name: str, subpath: str, where: str, reasons: list[str]) -> Any:
        path = (self.path.parent / name).resolve()
        if path.suffix not in (".yml", ".yaml", ".json"):
            reasons.append(f"file({name}): only YAML and JSON files are supported")
            return _MISSING
        if path not in self._files:
            if not path.is_file():
                reasons.append(f"file({name}) does not exist")
                return _MISSING
            self._files[path] = load_document(path)
        node = self._files[path]
        for step in subpath.split(".") if subpath else []:
            node = self.shallow(node, f"{where} (file({name}))")
            if not isinstance(node, dict) or step not in node:
                reasons.append(f"file({name}):{subpath} does not exist")
                return _MISSING
            node = node[step]
        return self.shallow(node, where)

    # -- stage and region --------------------------------------------------------------

    @property
    def stage(self) -> str:
        """--stage, else provider.stage (which may use `${opt:stage, ...}`), else dev."""
        if self._stage is None:
            if self.option_stage is not None:
                self._stage = self.option_stage
            else:
                self._stage = "dev"  # what provider.stage sees if it refers to sls:stage
                self._stage = str(self.get("provider.stage", "dev"))
        return self._stage

    @property
    def region(self) -> str:
        if self._region is None:
            self._region = DEFAULT_REGION
            self._region = str(self.get("provider.region", DEFAULT_REGION))
        return self._region
