"""Least privilege per function: which AWS actions a handler can need, read from its code.

Each Lambda function gets its own role with only what it calls. wsgate handlers reach AWS
only through `wsgate.connections`, so the analyser reads each handler's source (`ast` over
`inspect.getsource`) for `connections.<op>` uses and maps the operations to DynamoDB
actions and `execute-api:ManageConnections` verbs. It never runs handler code.

What it follows: the handler, every module-level function, class or instance of the app's
own code it names (helpers such as `reply_error`), transitively; a decorator's wrapper and
the function it wraps. What makes it give up and grant the full set, with a warning: source
it cannot read, and `connections` used in any way but `connections.<op>` (`getattr`,
passed as an argument, stored). Code reached only dynamically (`getattr(module, name)`,
objects handed in at run time) is invisible: `--full-permissions` covers those apps.
"""

from __future__ import annotations

import ast
import functools
import inspect
import sys
import sysconfig
import textwrap
import types
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsgate.connection_api import Connections
from wsgate.core.routing import CONNECT, DISCONNECT
from wsgate.deploy.model import DELETE, GET, POST, Analysis, Grant

OPERATIONS = ("send", "broadcast", "subscribe", "unsubscribe", "publish", "info", "disconnect")

_PUT = "dynamodb:PutItem"
_GET = "dynamodb:GetItem"
_DELETE = "dynamodb:DeleteItem"
_QUERY = "dynamodb:Query"
_BATCH_WRITE = "dynamodb:BatchWriteItem"
_CONDITION_CHECK = "dynamodb:ConditionCheckItem"

# The grants below follow what `wsgate.aws` and `wsgate.store.dynamodb` actually call;
# change them together.

#: Every function opens the store on a cold start: the store checks the table's key
#: layout (DescribeTable) and that TTL is on (DescribeTimeToLive).
BASE_GRANT = Grant(table=frozenset({"dynamodb:DescribeTable", "dynamodb:DescribeTimeToLive"}))

#: A 410 from `@connections` makes the adapter read the connection item and, unless it is
#: still connecting, forget it: delete the item, find its topics on the index, batch-delete.
_GONE_CLEANUP = Grant(table=frozenset({_GET, _DELETE, _BATCH_WRITE}), index=frozenset({_QUERY}))

#: What each `wsgate.connections` operation does in AWS (the Lambda adapter's store calls).
OPERATION_GRANTS: Mapping[str, Grant] = {
    "send": Grant(manage=frozenset({POST})) | _GONE_CLEANUP,
    # every open connection: Query(gsi1pk="connections") on the index
    "broadcast": Grant(index=frozenset({_QUERY}), manage=frozenset({POST})) | _GONE_CLEANUP,
    # subscribers of a topic: Query(pk="topic#...") on the table
    "publish": Grant(table=frozenset({_QUERY}), manage=frozenset({POST})) | _GONE_CLEANUP,
    # read the connection item, then TransactWriteItems: check it exists, put the
    # subscription (TransactWriteItems is authorised per item action)
    "subscribe": Grant(table=frozenset({_GET, _CONDITION_CHECK, _PUT})),
    "unsubscribe": Grant(table=frozenset({_DELETE})),
    # GetConnection, then the connection item and its topics (on the index)
    "info": Grant(table=frozenset({_GET}), index=frozenset({_QUERY}), manage=frozenset({GET}))
    | _GONE_CLEANUP,
    "disconnect": Grant(manage=frozenset({DELETE})) | _GONE_CLEANUP,
}

#: What the adapter itself writes for a route kind, whatever the handler does.
ROUTE_GRANTS: Mapping[str, Grant] = {
    # the connection item, once the handler accepted
    CONNECT: Grant(table=frozenset({_PUT})),
    # forget the connection, then its subscriptions (listed by the index) in batches
    DISCONNECT: Grant(table=frozenset({_DELETE, _BATCH_WRITE}), index=frozenset({_QUERY})),
}


def grant_for(route_key: str, ops: Iterable[str]) -> Grant:
    """The grant a function for `route_key` needs when its handler uses `ops`."""
    grant = BASE_GRANT | ROUTE_GRANTS.get(route_key, Grant())
    for op in sorted(set(ops)):
        grant = grant | OPERATION_GRANTS[op]
    return grant


FULL_ANALYSIS = Analysis(ops=frozenset(OPERATIONS), complete=False)


def analyse(handler: Callable[..., Any]) -> Analysis:
    """Which `wsgate.connections` operations `handler` (and the app code it names) uses."""
    return _Analyser(handler).run()


# -- the analyser --------------------------------------------------------------------------

_UNKNOWN: Any = object()

#: Code we never follow: the standard library, installed packages, wsgate itself.
_LIBRARY_PATHS = tuple(
    {
        str(Path(p).resolve())
        for name in ("stdlib", "platstdlib", "purelib", "platlib")
        if (p := sysconfig.get_paths().get(name))
    }
)


def _describe(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "?"
    name = getattr(obj, "__qualname__", None) or type(obj).__name__
    return f"{module}.{name}"


def _is_connections(obj: Any) -> bool:
    """The `connections` object, or its class (whose methods take it explicitly)."""
    return isinstance(obj, Connections) or (inspect.isclass(obj) and issubclass(obj, Connections))


def _top_package(obj: Any) -> str:
    return (getattr(obj, "__module__", None) or "").partition(".")[0]


def _is_app_code(obj: Any, app_packages: frozenset[str] = frozenset()) -> bool:
    """A function or class written by the app's author, worth reading.

    Library code is skipped by location (standard library, site-packages), except the
    handler's own top-level package, which may well be pip-installed.
    """
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        return False
    module = getattr(obj, "__module__", None) or ""
    if module == "wsgate" or module.startswith("wsgate.") or module in sys.builtin_module_names:
        return False
    if _top_package(obj) in app_packages:
        return True
    try:
        source_file = inspect.getsourcefile(obj)
    except TypeError:
        return False
    if source_file is None:
        return inspect.isfunction(obj)  # source unavailable: let the analyser say so
    resolved = str(Path(source_file).resolve())
    return not any(resolved.startswith(prefix) for prefix in _LIBRARY_PATHS)


def _shown_path(file: str | None) -> str:
    """A source file as the user would type it: relative to the working directory."""
    if file is None:
        return "?"
    try:
        return Path(file).resolve().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return file


@dataclass(frozen=True, slots=True)
class _Source:
    """The source being read, to point at a line in warnings."""

    name: str
    file: str
    lines: list[str]
    first: int

    def at(self, node: ast.AST) -> str:
        line = getattr(node, "lineno", 1)
        text = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
        return f"{self.file}:{self.first + line - 1}: {text}"


class _Analyser:
    """A worklist over app code reachable from one handler."""

    def __init__(self, handler: Callable[..., Any]) -> None:
        self.handler = handler
        self.app_packages = frozenset({_top_package(inspect.unwrap(handler))} - {""})
        self.ops: set[str] = set()
        self.problems: list[str] = []
        self.seen: set[int] = set()
        self.queue: deque[Any] = deque()
        self.source = _Source(_describe(handler), "?", [], 1)

    def run(self) -> Analysis:
        self._enqueue_callable(self.handler, root=True)
        while self.queue and not self.problems:
            self._read(self.queue.popleft())
        if self.problems:
            return Analysis(
                ops=frozenset(OPERATIONS), complete=False, warnings=tuple(self.problems)
            )
        return Analysis(ops=frozenset(self.ops), complete=True)

    def _enqueue_callable(self, obj: Any, *, root: bool = False) -> None:
        """Queue what calling `obj` runs; note a problem if that cannot be read."""
        if isinstance(obj, functools.partial):
            self._enqueue_callable(obj.func, root=root)
            return
        if inspect.ismethod(obj):
            if _is_connections(obj.__self__):
                self.note_op(obj.__name__)
                return
            obj = obj.__func__
        if inspect.isfunction(obj) or inspect.isclass(obj):
            self._enqueue(obj)
            return
        if root:
            self.problems.append(
                f"cannot read the source of {_describe(obj)}: a {type(obj).__name__} "
                "is not a plain function"
            )
            return
        # an instance of the app's own class: what it runs lives in its class
        if _is_app_code(type(obj), self.app_packages):
            self._enqueue(type(obj))

    def _enqueue(self, obj: Any) -> None:
        if id(obj) in self.seen:
            return
        self.seen.add(id(obj))
        self.queue.append(obj)
        wrapped = getattr(obj, "__wrapped__", None)
        if wrapped is not None:
            self._enqueue_callable(wrapped)

    def _read(self, obj: Any) -> None:
        """Parse one function or class and walk it."""
        try:
            # a function's own code object: inspect.getsource(function) would follow
            # __wrapped__ and hide a decorator's wrapper
            target = obj.__code__ if inspect.isfunction(obj) else obj
            lines, first = inspect.getsourcelines(target)
            tree = ast.parse(textwrap.dedent("".join(lines)))
        except (OSError, TypeError, SyntaxError) as exc:
            self.problems.append(f"cannot read the source of {_describe(obj)}: {exc}")
            return
        file = _shown_path(inspect.getsourcefile(target))
        self.source = _Source(_describe(obj), file, lines, max(first, 1))
        _Walker(self, self._namespace(obj)).visit(tree)

    @staticmethod
    def _namespace(obj: Any) -> dict[str, Any]:
        """Names visible to `obj`: its module's globals, then its closure's cells."""
        if inspect.isclass(obj):
            module = sys.modules.get(obj.__module__)
            return dict(vars(module)) if module is not None else {}
        namespace = dict(obj.__globals__)
        for name, cell in zip(obj.__code__.co_freevars, obj.__closure__ or (), strict=False):
            try:
                namespace[name] = cell.cell_contents
            except ValueError:  # an empty cell
                continue
        return namespace

    def found(self, value: Any, node: ast.AST) -> None:
        """A name or dotted name at `node` denotes `value`."""
        if _is_connections(value):
            self.problems.append(
                f"{self.source.name} uses wsgate.connections in a way the analyser cannot "
                f"follow, at {self.source.at(node)}"
            )
        elif _is_connections(getattr(value, "__self__", None)):
            # A bound method; not inspect.ismethod when the compiled build's Connections has it.
            self.note_op(value.__name__, node)
        else:
            self._follow(value)

    def note_op(self, name: str, node: ast.AST | None = None) -> None:
        if name in OPERATIONS:
            self.ops.add(name)
        else:
            where = self.source.at(node) if node is not None else _describe(self.handler)
            self.problems.append(
                f"{self.source.name} uses wsgate.connections.{name}, not a known operation, "
                f"at {where}"
            )

    def _follow(self, value: Any) -> None:
        """Queue app code a name refers to (functions, classes, instances, containers)."""
        if _is_app_code(value, self.app_packages):
            self._enqueue(value)
        elif isinstance(value, functools.partial):
            self._follow(value.func)
        elif inspect.ismethod(value):
            self._follow(value.__func__)
        elif isinstance(value, dict):
            for item in list(value.values()):
                self._follow_shallow(item)
        elif isinstance(value, list | tuple | set | frozenset):
            for item in list(value):
                self._follow_shallow(item)
        elif not isinstance(value, types.ModuleType) and _is_app_code(
            type(value), self.app_packages
        ):
            self._enqueue(type(value))

    def _follow_shallow(self, item: Any) -> None:
        if _is_connections(item):
            self.problems.append("wsgate.connections is stored in a container the app reads")
        elif inspect.ismethod(item) and _is_connections(item.__self__):
            self.note_op(item.__name__)
        elif _is_app_code(item, self.app_packages):
            self._enqueue(item)


_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)


class _Scope:
    """Names a function, class or comprehension binds itself, which hide the globals."""

    def __init__(self, *, is_class: bool = False) -> None:
        self.is_class = is_class
        #: name -> what it denotes: an import's object, or _UNKNOWN for a plain local
        self.bindings: dict[str, Any] = {}
        self.declared_global: set[str] = set()
        self.declared_nonlocal: set[str] = set()

    def done(self) -> _Scope:
        """Names declared global or nonlocal are not this scope's own."""
        for name in self.declared_global | self.declared_nonlocal:
            self.bindings.pop(name, None)
        return self

    def bind(self, name: str, value: Any = _UNKNOWN) -> None:
        if self.bindings.get(name, _UNKNOWN) is _UNKNOWN:
            self.bindings[name] = value


class _Walker:
    """Walks one parsed source with Python's scoping rules, reporting what names denote.

    Without scopes a parameter called `message` would look like the module's `message`
    handler, and its permissions would leak into every function that names it.
    """

    def __init__(self, analyser: _Analyser, namespace: Mapping[str, Any]) -> None:
        self.analyser = analyser
        self.namespace = namespace

    def visit(self, node: ast.AST, scopes: tuple[_Scope, ...] = ()) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            self._visit_function(node, scopes)
        elif isinstance(node, ast.ClassDef):
            for child in (*node.decorator_list, *node.bases, *node.keywords):
                self.visit(child, scopes)
            scope = _Scope(is_class=True)
            _collect(node.body, scope)
            scope.done()
            for statement in node.body:
                self.visit(statement, (*scopes, scope))
        elif isinstance(node, _COMPREHENSIONS):
            scope = _Scope()
            for generator in node.generators:
                for target in ast.walk(generator.target):
                    if isinstance(target, ast.Name):
                        scope.bind(target.id)
            for child in ast.iter_child_nodes(node):
                self.visit(child, (*scopes, scope))
        elif isinstance(node, ast.Name | ast.Attribute):
            self._visit_reference(node, scopes)
        else:
            for child in ast.iter_child_nodes(node):
                self.visit(child, scopes)

    def _visit_function(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, scopes: tuple[_Scope, ...]
    ) -> None:
        # decorators and defaults run in the enclosing scope
        outer: list[ast.AST] = [*node.args.defaults, *filter(None, node.args.kw_defaults)]
        if not isinstance(node, ast.Lambda):
            outer.extend(node.decorator_list)
        for child in outer:
            self.visit(child, scopes)
        scope = _Scope()
        arguments = node.args
        for arg in (
            *arguments.posonlyargs,
            *arguments.args,
            *arguments.kwonlyargs,
            *filter(None, (arguments.vararg, arguments.kwarg)),
        ):
            scope.bind(arg.arg)
        body: list[ast.AST] = [node.body] if isinstance(node, ast.Lambda) else list(node.body)
        _collect(body, scope)
        scope.done()
        # a function does not see the class body it is defined in
        visible = (*(s for s in scopes if not s.is_class), scope)
        for statement in body:
            self.visit(statement, visible)

    def _visit_reference(self, node: ast.Name | ast.Attribute, scopes: tuple[_Scope, ...]) -> None:
        if isinstance(node, ast.Attribute):
            base = self._resolve(node.value, scopes)
            if _is_connections(base):
                self.analyser.note_op(node.attr, node)
                return
        value = self._resolve(node, scopes)
        if value is not _UNKNOWN:
            self.analyser.found(value, node)
        if isinstance(node, ast.Attribute):
            self.visit(node.value, scopes)

    def _resolve(self, node: ast.AST, scopes: tuple[_Scope, ...]) -> Any:
        """The object a (dotted) name denotes, looking only into modules and classes."""
        if isinstance(node, ast.Name):
            for scope in reversed(scopes):
                if node.id in scope.declared_global:
                    break
                if node.id in scope.bindings:
                    return scope.bindings[node.id]
            return self.namespace.get(node.id, _UNKNOWN)
        if isinstance(node, ast.Attribute):
            base = self._resolve(node.value, scopes)
            if isinstance(base, types.ModuleType) or inspect.isclass(base):
                return getattr(base, node.attr, _UNKNOWN)
        return _UNKNOWN


def _collect(body: Iterable[ast.AST], scope: _Scope) -> None:
    """Record the names `body` binds in `scope`, without entering nested scopes."""
    pending = list(body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            scope.bind(node.name)
            # decorators, defaults and bases belong to this scope; bodies do not
            pending.extend(getattr(node, "decorator_list", []))
            pending.extend(getattr(node, "bases", []))
            continue
        if isinstance(node, (ast.Lambda, *_COMPREHENSIONS)):
            continue
        if isinstance(node, ast.Global):
            scope.declared_global.update(node.names)
            continue
        if isinstance(node, ast.Nonlocal):
            scope.declared_nonlocal.update(node.names)
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            scope.bind(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            scope.bind(node.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    scope.bind(alias.asname, sys.modules.get(alias.name, _UNKNOWN))
                else:
                    top = alias.name.partition(".")[0]
                    scope.bind(top, sys.modules.get(top, _UNKNOWN))
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            module = sys.modules.get(node.module)
            for alias in node.names:
                value = getattr(module, alias.name, _UNKNOWN) if module else _UNKNOWN
                if value is _UNKNOWN:
                    value = sys.modules.get(f"{node.module}.{alias.name}", _UNKNOWN)
                scope.bind(alias.asname or alias.name, value)
        pending.extend(ast.iter_child_nodes(node))
