"""What a deployment is made of, before it becomes CloudFormation.

Plain frozen dataclasses, so the analyser, the template writer and the tests share one
vocabulary and the template is a pure function of these values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The `@connections` verbs each `wsgate.connections` operation uses
#: (docs/compatibility.md §6.1).
POST = "POST"
GET = "GET"
DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Grant:
    """Permissions one function needs, by resource.

    `table` actions apply to the table's ARN, `index` actions to `${TableArn}/index/*`,
    and `manage` lists the `@connections` verbs granted `execute-api:ManageConnections`.
    """

    table: frozenset[str] = frozenset()
    index: frozenset[str] = frozenset()
    manage: frozenset[str] = frozenset()

    def __or__(self, other: Grant) -> Grant:
        return Grant(
            table=self.table | other.table,
            index=self.index | other.index,
            manage=self.manage | other.manage,
        )

    @property
    def empty(self) -> bool:
        return not (self.table or self.index or self.manage)


@dataclass(frozen=True, slots=True)
class Analysis:
    """What the analyser found in one handler.

    `complete` is False when it could not see everything the handler may call (source
    unavailable, `connections` passed around or looked up by name): the grant is then
    the full set, and `warnings` says why.
    """

    ops: frozenset[str]
    complete: bool
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Function:
    """One route's Lambda function, its role and its wiring into the API."""

    route_key: str
    #: Prefix of every logical id of this route's resources (`Connect`, `OnSendMessage`).
    logical_id: str
    #: `module.qualname` of the handler, for humans reading the template.
    handler: str
    return_response: bool
    analysis: Analysis
    grant: Grant
    #: The Lambda authorizer of `route_key` rather than its integration.
    authorizes: bool = False


@dataclass(frozen=True, slots=True)
class Authorizer:
    """The `$connect` route's Lambda REQUEST authorizer: its function, and the identity
    sources API Gateway checks before invoking it (docs/compatibility.md §7.2)."""

    function: Function
    identity_sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Api:
    """A whole WebSocket API: what `wsgate template` turns into one stack."""

    name: str
    route_selection: str
    stage: str
    #: WSGATE_APP: the TARGET relative to the zip's root (`topics.py`, `pkg.app:app`).
    app_target: str
    functions: tuple[Function, ...]
    warnings: tuple[str, ...] = field(default=())
    authorizer: Authorizer | None = None
    #: `$connect`'s authorization besides a custom authorizer: "NONE" or "AWS_IAM".
    connect_authorization: str = "NONE"
