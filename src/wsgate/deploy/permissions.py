"""Least privilege per function: which AWS actions a handler can need, read from its code.

Seed 002 gives each Lambda function its own role with only what it calls. wsgate handlers
reach AWS only through `wsgate.connections`, so the analyser reads each handler's source
(`ast` over `inspect.getsource`) for `connections.<op>` uses and maps the operations to
DynamoDB actions and `execute-api:ManageConnections` verbs. It never runs handler code.

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

#: A 410 during a send makes the adapter forget the connection and its subscriptions:
#: delete the connection item, find its topics on the index, batch-delete them.
_GONE_CLEANUP = Grant(table=frozenset({_DELETE, _BATCH_WRITE}), index=frozenset({_QUERY}))

#: What each `wsgate.connections` operation does in AWS (the Lambda adapter's store calls).
OPERATION_GRANTS: Mapping[str, Grant] = {
    "send": Grant(manage=frozenset({POST})) | _GONE_CLEANUP,
    # every open connection: Query(gsi1pk="connections") on the index
    "broadcast": Grant(index=frozenset({_QUERY}), manage=frozenset({POST})) | _GONE_CLEANUP,
    # subscribers of a topic: Query(pk="topic#...") on the table
    "publish": Grant(table=frozenset({_QUERY}), manage=frozenset({POST})) | _GONE_CLEANUP,
    # TransactWriteItems: check the connection exists, put the subscription
    "subscribe": Grant(table=frozenset({_CONDITION_CHECK, _PUT})),
    "unsubscribe": Grant(table=frozenset({_DELETE})),
    # the connection item, and its topics on the index; GetConnection for the live data
    "info": Grant(table=frozenset({_GET}), index=frozenset({_QUERY}), manage=frozenset({GET})),
    "disconnect": Grant(manage=frozenset({DELETE})),
}

#: What the adapter itself writes for a route kind, whatever the handler does.
ROUTE_GRANTS: Mapping[str, Grant] = {
    CONNECT: Grant(table=frozenset({_PUT})),
    # forget the connection and its subscriptions
    DISCONNECT: Grant(
        table=frozenset({_DELETE, _QUERY, _BATCH_WRITE}), index=frozenset({_QUERY})
    ),
}


def grant_for(route_key: str, ops: Iterable[str]) -> Grant:
    """The grant a function for `route_key` needs when its handler uses `ops`."""
    grant = ROUTE_GRANTS.get(route_key, Grant())
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
    return isinstance(obj, Connections)


def _is_app_code(obj: Any) -> bool:
    """A function or class written by the app's author, worth reading."""
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        return False
    module = getattr(obj, "__module__", None) or ""
    if module == "wsgate" or module.startswith("wsgate.") or module in sys.builtin_module_names:
        return False
    try:
        source_file = inspect.getsourcefile(obj)
    except TypeError:
        return False
    if source_file is None:
        return inspect.isfunction(obj)  # source unavailable: let the analyser say so
    resolved = str(Path(source_file).resolve())
    return not any(resolved.startswith(prefix) for prefix in _LIBRARY_PATHS)


class _Analyser:
    """A worklist over app code reachable from one handler."""

    def __init__(self, handler: Callable[..., Any]) -> None:
        self.handler = handler
        self.ops: set[str] = set()
        self.problems: list[str] = []
        self.seen: set[int] = set()
        self.queue: deque[Any] = deque()

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
                self._note_op(obj.__name__, where=_describe(obj))
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
        if _is_app_code(type(obj)):
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
            source = textwrap.dedent(inspect.getsource(target))
            tree = ast.parse(source)
        except (OSError, TypeError, SyntaxError) as exc:
            self.problems.append(f"cannot read the source of {_describe(obj)}: {exc}")
            return
        namespace = self._namespace(obj)
        self._add_imports(tree, namespace)
        self._walk(tree, namespace, where=_describe(obj))

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

    @staticmethod
    def _add_imports(tree: ast.AST, namespace: dict[str, Any]) -> None:
        """Imports inside the function: resolve them against already imported modules."""
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                module = sys.modules.get(node.module)
                for alias in node.names:
                    value = getattr(module, alias.name, _UNKNOWN) if module else _UNKNOWN
                    if value is _UNKNOWN:
                        value = sys.modules.get(f"{node.module}.{alias.name}", _UNKNOWN)
                    namespace[alias.asname or alias.name] = value
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        namespace[alias.asname] = sys.modules.get(alias.name, _UNKNOWN)
                    else:
                        top = alias.name.partition(".")[0]
                        namespace[top] = sys.modules.get(top, _UNKNOWN)

    def _walk(self, tree: ast.AST, namespace: Mapping[str, Any], *, where: str) -> None:
        parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                parents[child] = node
        for node in ast.walk(tree):
            if not isinstance(node, ast.Name | ast.Attribute):
                continue
            value = _resolve(node, namespace)
            if value is _UNKNOWN:
                continue
            if _is_connections(value):
                self._connections_use(node, parents, where=where)
            elif inspect.ismethod(value) and _is_connections(value.__self__):
                self._note_op(value.__name__, where=where)
            else:
                self._follow(value)

    def _connections_use(
        self, node: ast.AST, parents: Mapping[ast.AST, ast.AST], *, where: str
    ) -> None:
        """`connections` itself: only `connections.<op>` tells what it does."""
        parent = parents.get(node)
        if isinstance(parent, ast.Attribute) and parent.value is node:
            self._note_op(parent.attr, where=where)
            return
        line = getattr(node, "lineno", "?")
        self.problems.append(
            f"{where} uses wsgate.connections in a way the analyser cannot follow "
            f"(line {line} of its source: {ast.unparse(parent or node)!r})"
        )

    def _note_op(self, name: str, *, where: str) -> None:
        if name in OPERATIONS:
            self.ops.add(name)
        else:
            self.problems.append(f"{where} uses wsgate.connections.{name}, not a known operation")

    def _follow(self, value: Any) -> None:
        """Queue app code a name refers to (functions, classes, instances, containers)."""
        if _is_app_code(value):
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
        elif not isinstance(value, types.ModuleType) and _is_app_code(type(value)):
            self._enqueue(type(value))

    def _follow_shallow(self, item: Any) -> None:
        if _is_connections(item):
            self.problems.append("wsgate.connections is stored in a container the app reads")
        elif inspect.ismethod(item) and _is_connections(item.__self__):
            self._note_op(item.__name__, where="a container the app reads")
        elif _is_app_code(item):
            self._enqueue(item)


def _resolve(node: ast.AST, namespace: Mapping[str, Any]) -> Any:
    """The object a dotted name denotes, looking only into modules and classes."""
    if isinstance(node, ast.Name):
        return namespace.get(node.id, _UNKNOWN)
    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, namespace)
        if isinstance(base, types.ModuleType) or inspect.isclass(base):
            return getattr(base, node.attr, _UNKNOWN)
    return _UNKNOWN
