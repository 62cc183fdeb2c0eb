"""`wsgate.connections` on AWS: sends through the `@connections` API, state in the store.

What Lambda WebSocket handlers usually write by hand: look up ids in DynamoDB,
`postToConnection` each, and delete the ones that answer 410. boto3 is synchronous, so
calls run on an executor; fan-out runs them concurrently, at most `max_concurrency` at a
time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import Any, TypeVar

from wsgate.connection_api import ConnectionInfo, Data, StoreBackedConnections
from wsgate.core.responses import outbound_frame
from wsgate.exceptions import ConfigError, GoneError, PayloadTooLargeError
from wsgate.store.base import Store

log = logging.getLogger("wsgate.aws")
T = TypeVar("T")

#: API Gateway's message payload quota, which `PostToConnection` enforces too.
MAX_MESSAGE_BYTES = 128 * 1024
#: A 410 this soon after `$connect` may be a connection whose handshake is still finishing
#: (the record is written before API Gateway sends the 101): keep its record.
CONNECTING_GRACE_MS = 10_000


def management_client(endpoint_url: str) -> Any:
    """A boto3 `apigatewaymanagementapi` client for `endpoint_url`.

    A plain-HTTP endpoint is wsgate's local gateway, which checks no signature: the client
    gets a region and placeholder credentials there, so Lambda mode needs no AWS setup.
    """
    try:
        import boto3
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "sending through the @connections API needs boto3: pip install 'wsgate[aws]'"
        ) from None
    if endpoint_url.startswith("http://"):
        return boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="wsgate-local",
            aws_secret_access_key="wsgate-local",
        )
    return boto3.client("apigatewaymanagementapi", endpoint_url=endpoint_url)


class ApiGatewayConnections(StoreBackedConnections):
    """`ConnectionsAPI` on Lambda: API Gateway's `@connections` HTTP API, and a `Store`.

    The HTTP calls go through boto3's `apigatewaymanagementapi` client.
    """

    def __init__(
        self,
        store: Store,
        client: Callable[[], Any],
        executor: Executor,
        *,
        max_concurrency: int = 32,
    ) -> None:
        self.store = store
        self._make_client = client  # made on first use: $connect and most routes never send
        self._client: Any = None
        self.executor = executor
        self.max_concurrency = max_concurrency

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    async def _call(self, fn: Callable[..., T], **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(**kwargs))

    def _is(self, exc: Exception, name: str) -> bool:
        error_class = getattr(self.client.exceptions, name, None)
        return error_class is not None and isinstance(exc, error_class)

    async def _gone(self, connection_id: str) -> GoneError:
        record = await self.store.get_connection(connection_id)
        if record is None or time.time() * 1000 - record.connected_at > CONNECTING_GRACE_MS:
            await self.store.remove_connection(connection_id)
        return GoneError(connection_id)

    def send_from_thread(self, connection_id: str, data: Data) -> bool:
        """Every send is an HTTP call here: the waiting path it is."""
        return False

    async def send(self, connection_id: str, data: Data) -> None:
        _, raw = outbound_frame(data, MAX_MESSAGE_BYTES)
        try:
            await self._call(self.client.post_to_connection, ConnectionId=connection_id, Data=raw)
        except Exception as exc:
            if self._is(exc, "GoneException"):
                raise await self._gone(connection_id) from exc
            if self._is(exc, "PayloadTooLargeException"):
                raise PayloadTooLargeError(len(raw), MAX_MESSAGE_BYTES) from exc
            raise

    async def _fan_out(self, targets: Iterable[str], data: Data, exclude: Iterable[str]) -> int:
        outbound_frame(data, MAX_MESSAGE_BYTES)  # fail once, before any send
        skip = set(exclude)
        limit = asyncio.Semaphore(self.max_concurrency)

        async def deliver(connection_id: str) -> bool:
            async with limit:
                try:
                    await self.send(connection_id, data)
                except GoneError:
                    return False
                return True

        results = await asyncio.gather(*(deliver(c) for c in targets if c not in skip))
        return sum(results)

    async def info(self, connection_id: str) -> ConnectionInfo:
        try:
            described = await self._call(self.client.get_connection, ConnectionId=connection_id)
        except Exception as exc:
            if self._is(exc, "GoneException"):
                raise await self._gone(connection_id) from exc
            raise
        record = await self.store.get_connection(connection_id)
        identity = described.get("Identity", {})
        return ConnectionInfo(
            connection_id=connection_id,
            connected_at=_epoch_ms(described["ConnectedAt"]),
            last_active_at=_epoch_ms(described.get("LastActiveAt", described["ConnectedAt"])),
            source_ip=identity.get("SourceIp", ""),
            user_agent=identity.get("UserAgent") or None,
            stage=record.stage if record else "",
            topics=tuple(await self.store.topics(connection_id)),
            authorizer=record.authorizer if record else None,
        )

    async def disconnect(self, connection_id: str) -> None:
        try:
            await self._call(self.client.delete_connection, ConnectionId=connection_id)
        except Exception as exc:
            if self._is(exc, "GoneException"):
                raise await self._gone(connection_id) from exc
            raise


def _epoch_ms(moment: Any) -> int:
    return int(moment.timestamp() * 1000)
