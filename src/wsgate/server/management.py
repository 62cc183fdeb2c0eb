"""The `@connections` management API, wire-compatible with boto3's `apigatewaymanagementapi`.

A request comes in as (method, raw path, body) and leaves as a `ManagementResponse`; the
HTTP library stays in `server/http.py`. Paths (spec section 6):

    POST   /{stage}/@connections/{id}   PostToConnection: body = the message   -> 200
    GET    /{stage}/@connections/{id}   GetConnection (+ wsgate's `topics`)    -> 200 JSON
    DELETE /{stage}/@connections/{id}   DeleteConnection (close 1000)          -> 204
    GET    /{stage}/@connections        wsgate extension: list open connections, a page
                                        at a time with ?limit=N&nextToken=T

The `/{stage}` prefix may be left out locally, `@` may come as `%40`, and the id is
percent-decoded once (boto3 sends `=` as `%3D`). Errors carry `x-amzn-ErrorType`, which
is what makes boto3 raise `client.exceptions.GoneException` and friends.

`AllowedHosts` decides which `Host` headers the API answers at all (see its docstring).
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote

from wsgate.connection_api import ConnectionsAPI
from wsgate.exceptions import ConfigError, GoneError, PayloadTooLargeError

if TYPE_CHECKING:
    from wsgate.server.gateway import Gateway

_SEGMENTS = ("@connections", "%40connections")
#: What a host name in the allowlist may be made of (IP addresses are checked apart).
_HOST_NAME = re.compile(r"[a-z0-9_.-]+")
#: The most ids one page of `GET @connections` may ask for.
MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class ManagementResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class ManagementPath:
    """A parsed `@connections` path: `connection_id` is None for the collection."""

    connection_id: str | None


def parse_path(raw_path: str, stage: str) -> ManagementPath | None:
    """Parse a raw (still percent-encoded) path; None if it is not a management path."""
    parts = raw_path.split("?", 1)[0].split("/")
    # ["", stage?, "@connections", id?]
    if len(parts) >= 2 and parts[1] not in _SEGMENTS:
        if unquote(parts[1]) != stage:
            return None
        parts = parts[:1] + parts[2:]
    if len(parts) < 2 or parts[1] not in _SEGMENTS:
        return None
    if len(parts) == 2 or (len(parts) == 3 and parts[2] == ""):
        return ManagementPath(None)
    if len(parts) == 3:
        return ManagementPath(unquote(parts[2]))
    return None


def _normal_host(name: str) -> str:
    """A host name lowercased without its final dot; an IP address in its short form."""
    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        return name.lower().rstrip(".")


def _host_of(header: str | None) -> str | None:
    """The host a `Host` header names, without port or brackets (see `_normal_host`).

    None if the header is missing or malformed (a bare IPv6 address, a port that is not
    digits, nothing before the port).
    """
    if not header:
        return None
    if header.startswith("["):
        name, bracket, port = header[1:].partition("]")
        if not bracket or (port and not (port[0] == ":" and port[1:].isdigit())):
            return None
        try:
            return ipaddress.IPv6Address(name).compressed
        except ValueError:
            return None
    name, colon, port = header.partition(":")
    if colon and not port.isdigit():
        return None
    return _normal_host(name) or None


class AllowedHosts:
    """The `Host` headers the management API answers: a guard against DNS rebinding.

    A web page can point a name it controls at 127.0.0.1 and make the user's browser call
    the management API under it; the browser then sends that name as `Host`. Answering
    only loopback names and addresses (`localhost`, 127.0.0.0/8, `::1`), the host the
    server was bound to (unless it is every interface) and the allowlist keeps such pages
    out, whatever the port. Allowlist entries are names or addresses without a port,
    `*.example.com` for its subdomains, or `*` for every host (the check off).
    """

    __slots__ = ("_any", "_names", "_suffixes")

    def __init__(self, allowed: Iterable[str] = (), *, bind_host: str | None = None) -> None:
        if isinstance(allowed, str):
            raise ConfigError(f"allowed hosts must be a list of names, not one string {allowed!r}")
        self._any = False
        self._names: set[str] = {"localhost"}
        self._suffixes: list[str] = []
        for entry in allowed:
            if entry == "*":
                self._any = True
            elif isinstance(entry, str) and entry.startswith("*."):
                self._suffixes.append("." + _allowed_name(entry[2:], entry))
            else:
                self._names.add(_allowed_name(entry, entry))
        if bind_host:
            name = _normal_host(bind_host.strip("[]"))
            if not _is_every_interface(name):
                self._names.add(name)

    def allows(self, header: str | None) -> bool:
        """Whether a request with this `Host` header (None if it had none) is answered."""
        if self._any:
            return True
        host = _host_of(header)
        if host is None:
            return False
        if host in self._names or any(host.endswith(suffix) for suffix in self._suffixes):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


def _allowed_name(name: object, entry: object) -> str:
    """An allowlist name or address, normalised; ConfigError for a port, scheme or space."""
    if isinstance(name, str):
        bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
        try:
            return ipaddress.ip_address(bare).compressed
        except ValueError:
            host = bare.lower().rstrip(".")
            if _HOST_NAME.fullmatch(host):
                return host
    raise ConfigError(
        f"bad allowed host {entry!r}: use a name or address without a port "
        "(every port is answered), '*.example.com' or '*'"
    )


def _is_every_interface(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_unspecified
    except ValueError:
        return False


def _error(status: int, error_type: str, message: str | None) -> ManagementResponse:
    body = b"" if message is None else json.dumps({"message": message}).encode()
    headers = {"x-amzn-ErrorType": error_type}
    if body:
        headers["Content-Type"] = "application/json"
    return ManagementResponse(status, headers, body)


def forbidden(message: str = "Forbidden") -> ManagementResponse:
    return _error(403, "ForbiddenException", message)


def payload_too_large(size: int | None, limit: int) -> ManagementResponse:
    told = "over" if size is None else f"{size} bytes, over"
    return _error(413, "PayloadTooLargeException", f"Data is {told} the {limit}-byte limit")


def bad_request(message: str) -> ManagementResponse:
    return _error(400, "BadRequestException", message)


def _iso(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def _json(status: int, payload: object) -> ManagementResponse:
    return ManagementResponse(
        status, {"Content-Type": "application/json"}, json.dumps(payload).encode()
    )


class ManagementAPI:
    """Answers `@connections` requests against a gateway's connections API and store."""

    def __init__(
        self,
        api: ConnectionsAPI,
        list_ids: Callable[[], Awaitable[list[str]]],
        *,
        stage: str,
        max_message_bytes: int,
    ):
        self.api = api
        self.list_ids = list_ids
        self.stage = stage
        self.max_message_bytes = max_message_bytes

    @classmethod
    def of(cls, gateway: Gateway) -> ManagementAPI:
        """The API over `gateway`'s connections (over HTTP, or in process for tests)."""
        delivery = gateway.delivery
        return cls(
            delivery,
            delivery.connection_ids,
            stage=gateway.stage,
            max_message_bytes=gateway.limits.max_message_bytes,
        )

    async def handle(
        self,
        method: str,
        path: ManagementPath,
        body: bytes,
        query: Mapping[str, str] | None = None,
    ) -> ManagementResponse:
        response = await self._handle(method, path, body, query or {})
        response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
        return response

    async def _handle(
        self, method: str, path: ManagementPath, body: bytes, query: Mapping[str, str]
    ) -> ManagementResponse:
        if path.connection_id is None:
            if method != "GET":
                return forbidden(f"{method} is not supported on @connections; use GET to list")
            return await self._list(query)
        connection_id = path.connection_id
        try:
            if method == "POST":
                if len(body) > self.max_message_bytes:
                    return payload_too_large(len(body), self.max_message_bytes)
                await self.api.send(connection_id, body)
                return ManagementResponse(200)
            if method == "GET":
                info = await self.api.info(connection_id)
                return _json(
                    200,
                    {
                        "connectedAt": _iso(info.connected_at),
                        "identity": {
                            "sourceIp": info.source_ip,
                            "userAgent": info.user_agent or "",
                        },
                        "lastActiveAt": _iso(info.last_active_at),
                        # wsgate extension (boto3 ignores fields it does not know)
                        "topics": list(info.topics),
                    },
                )
            if method == "DELETE":
                await self.api.disconnect(connection_id)
                return ManagementResponse(204)
        except GoneError:
            return _error(410, "GoneException", None)
        except PayloadTooLargeError as exc:
            return _error(413, "PayloadTooLargeException", str(exc))
        return forbidden(
            f"{method} is not supported on @connections/{{id}}; use POST, GET or DELETE"
        )

    async def _list(self, query: Mapping[str, str]) -> ManagementResponse:
        """Ids in order, all of them or a page (`limit`, resumed after `nextToken`), and the
        total: a console over thousands of connections asks for one screen at a time."""
        raw_limit = query.get("limit")
        limit: int | None = None
        if raw_limit is not None:
            if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
                return bad_request(f"limit must be a whole number from 1 to {MAX_PAGE}")
            limit = int(raw_limit)
        ids = sorted(await self.list_ids())
        after = query.get("nextToken")
        # The token is the last id of the previous page: ids are sorted, so a page starts
        # right after it even if that connection has closed since.
        page = [i for i in ids if i > after] if after else ids
        payload: dict[str, object] = {"connections": page[:limit], "count": len(ids)}
        if limit is not None and len(page) > limit:
            payload["nextToken"] = page[limit - 1]
        return _json(200, payload)
