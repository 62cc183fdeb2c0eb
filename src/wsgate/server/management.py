"""The `@connections` management API, wire-compatible with boto3's `apigatewaymanagementapi`.

A request comes in as (method, raw path, body) and leaves as a `ManagementResponse`; the
HTTP library stays in `server/http.py`. Paths (spec section 6):

    POST   /{stage}/@connections/{id}   PostToConnection: body = the message   -> 200
    GET    /{stage}/@connections/{id}   GetConnection                          -> 200 JSON
    DELETE /{stage}/@connections/{id}   DeleteConnection (close 1000)          -> 204
    GET    /{stage}/@connections        wsgate extension: list open connections

The `/{stage}` prefix may be left out locally, `@` may come as `%40`, and the id is
percent-decoded once (boto3 sends `=` as `%3D`). Errors carry `x-amzn-ErrorType`, which
is what makes boto3 raise `client.exceptions.GoneException` and friends.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote

from wsgate.connection_api import ConnectionsAPI
from wsgate.exceptions import GoneError, PayloadTooLargeError

_SEGMENTS = ("@connections", "%40connections")


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

    async def handle(self, method: str, path: ManagementPath, body: bytes) -> ManagementResponse:
        response = await self._handle(method, path, body)
        response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
        return response

    async def _handle(self, method: str, path: ManagementPath, body: bytes) -> ManagementResponse:
        if path.connection_id is None:
            if method != "GET":
                return forbidden(f"{method} is not supported on @connections; use GET to list")
            ids = sorted(await self.list_ids())
            return _json(200, {"connections": ids})
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
