"""DynamoDB store: connections and subscriptions in one table, shared by many gateways.

    store = open_store("dynamodb://wsgate?region=eu-west-1")
    store = open_store("dynamodb://wsgate?endpoint=http://127.0.0.1:5000&create=true")  # local

The table layout is `wsgate.store.keys` (one item per connection, one per subscription),
the same one the deployment declares. Nothing on the hot path scans: subscribers of a topic
are a Query on the table, topics of a connection and the list of connections a Query on the
global secondary index. Every item carries `ttl`, so a connection whose `$disconnect` never
came (a killed gateway, a lost Lambda invocation) expires by itself.

Unlike the SQLite store, `open()` never purges: several gateways (or Lambda functions) share
one table, and another gateway's connections are alive. Stale items go away by TTL, or at
the first send that finds the connection gone (410), which removes it and its subscriptions.

boto3 is synchronous, so its calls run on a dedicated thread pool (boto3 clients are
thread-safe) and the event loop never waits on the network. boto3 is imported only when a
DynamoDB store is built, so `import wsgate` never needs it.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from wsgate.exceptions import ConfigError, StoreError
from wsgate.store.base import ConnectionRecord
from wsgate.store.keys import (
    ALL_CONNECTIONS,
    CONNECTION_SORT_KEY,
    GSI_NAME,
    GSI_PARTITION_KEY,
    GSI_SORT_KEY,
    MAX_CONNECTION_SECONDS,
    PARTITION_KEY,
    SORT_KEY,
    TTL_ATTRIBUTE,
    TTL_GRACE_SECONDS,
    connection_key,
    table_schema,
    time_to_live,
    topic_key,
)

if TYPE_CHECKING:
    from botocore.exceptions import ClientError
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        TableDescriptionTypeDef,
        WaiterConfigTypeDef,
        WriteRequestTypeDef,
        WriteRequestUnionTypeDef,
    )

log = logging.getLogger("wsgate.store")

T = TypeVar("T")
Item = dict[str, "AttributeValueTypeDef"]

URL_FORM = "dynamodb://TABLE[?endpoint=URL&region=REGION&create=true]"
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")

#: Threads (and HTTP connections) per store. Calls wait on the network, not the CPU.
WORKERS = 16
#: touch() spreads its updates over at most this many threads, leaving the rest for
#: subscribe/publish lookups that a client is waiting on.
_TOUCH_THREADS = WORKERS // 2
_BATCH_WRITE_LIMIT = 25  # DynamoDB's BatchWriteItem maximum
_BATCH_ATTEMPTS = 8
_CONFLICT_ATTEMPTS = 5
_WAIT: WaiterConfigTypeDef = {"Delay": 2, "MaxAttempts": 90}  # table creation: up to 3 min


class DynamoDBStore:
    """Connections and subscriptions in a DynamoDB table (see `wsgate.store.keys`)."""

    def __init__(
        self,
        table: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        create: bool = False,
    ) -> None:
        """`region` defaults to AWS_REGION, AWS_DEFAULT_REGION, then us-east-1; no
        `endpoint_url` means AWS itself. `create=True` lets `open()` create the table."""
        if not _TABLE_NAME.fullmatch(table):
            raise ConfigError(
                f"bad DynamoDB table name {table!r}: 3 to 255 letters, digits, '_', '-' or '.'"
            )
        if endpoint_url is not None and not re.match(r"https?://[^/?#]+", endpoint_url):
            raise ConfigError(
                f"bad DynamoDB endpoint {endpoint_url!r}: expected http://host:port or https://…"
            )
        _require_boto3()
        self.table = table
        self.region = (
            region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        ) or "us-east-1"
        self.endpoint_url = endpoint_url
        self.create = create
        self._client: DynamoDBClient | None = None
        self._executor: ThreadPoolExecutor | None = None
        #: Query page size. None lets DynamoDB fill 1 MB pages; tests make it tiny to
        #: exercise pagination.
        self._page_size: int | None = None

    @classmethod
    def from_url(cls, url: str) -> DynamoDBStore:
        """A store for `dynamodb://TABLE?endpoint=URL&region=REGION&create=true`."""
        parts = urlsplit(url)
        if parts.scheme != "dynamodb" or not parts.netloc or parts.path not in ("", "/"):
            raise ConfigError(f"DynamoDB store URL is {URL_FORM}, got {url!r}")
        params = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(params) - {"endpoint", "region", "create"})
        if unknown:
            raise ConfigError(
                f"unknown option {', '.join(unknown)} in store URL {url!r}: use {URL_FORM}"
            )
        repeated = sorted(name for name, values in params.items() if len(values) > 1)
        if repeated:
            raise ConfigError(f"option {', '.join(repeated)} given twice in store URL {url!r}")
        option = {name: values[0] for name, values in params.items()}
        create = option.get("create", "false").lower()
        if create not in _TRUE + _FALSE:
            raise ConfigError(f"create={option['create']} in store URL {url!r}: use true or false")
        return cls(
            parts.netloc,
            region=option.get("region") or None,
            endpoint_url=option.get("endpoint") or None,
            create=create in _TRUE,
        )

    def __repr__(self) -> str:
        return f"DynamoDBStore({self.table!r}, region={self.region!r}, endpoint={self._where})"

    # -- plumbing: threads, errors ---------------------------------------------------

    @property
    def _where(self) -> str:
        return self.endpoint_url or f"AWS {self.region}"

    async def _call(self, fn: Callable[[DynamoDBClient], T]) -> T:
        """Run `fn(client)` on the store's threads; botocore errors become StoreError."""
        client, executor = self._client, self._executor
        if client is None or executor is None:
            raise StoreError(f"DynamoDB store {self.table} is not open")
        with self._errors():
            return await asyncio.get_running_loop().run_in_executor(executor, fn, client)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """The one place botocore errors become StoreErrors a person can act on."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            HTTPClientError,
            NoCredentialsError,
        )

        try:
            yield
        except ClientError as exc:
            raise StoreError(self._explain(exc)) from exc
        except NoCredentialsError as exc:
            raise StoreError(
                f"no AWS credentials for the DynamoDB store {self.table} ({self._where}): set "
                "AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (any non-empty "
                "values work with a local endpoint such as moto or DynamoDB Local)"
            ) from exc
        except (ConnectionError, HTTPClientError) as exc:
            raise StoreError(
                f"DynamoDB store {self.table}: cannot reach DynamoDB at {self._where} "
                f"(is the endpoint right and running?): {exc}"
            ) from exc
        except BotoCoreError as exc:
            raise StoreError(f"DynamoDB store {self.table} ({self._where}): {exc}") from exc

    def _explain(self, exc: ClientError) -> str:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "?"), error.get("Message", str(exc))
        table, where, operation = self.table, self._where, exc.operation_name
        if code == "ResourceNotFoundException":
            return (
                f"DynamoDB table {table!r} does not exist ({where}): add create=true to the "
                f"store URL (dynamodb://{table}?create=true) to create it, or create it with "
                f"the layout of wsgate.store.keys ({message})"
            )
        if code in (
            "UnrecognizedClientException",
            "InvalidSignatureException",
            "ExpiredTokenException",
        ):
            return (
                f"AWS refused the credentials for DynamoDB table {table!r} ({where}): {code}: "
                f"{message}; check AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
            )
        if code == "AccessDeniedException":
            return (
                f"not allowed to {operation} on DynamoDB table {table!r} ({where}): grant "
                f"dynamodb:{operation} on the table and its indexes ({message})"
            )
        if code in (
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "RequestLimitExceeded",
        ):
            return (
                f"DynamoDB table {table!r} ({where}) throttled {operation} even after retries: "
                f"use on-demand capacity (PAY_PER_REQUEST) or raise its limits ({message})"
            )
        return f"DynamoDB {operation} on table {table!r} ({where}) failed: {code}: {message}"

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, check the table's layout, and create the table if `create` allows.

        Never purges: other gateways sharing the table have live connections. Connections a
        stopped gateway left behind expire by TTL, or go at the first send that finds them
        gone (410). Creating waits until the table is active and enables TTL on `ttl`.
        """
        if self._client is not None:
            return
        executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="wsgate-dynamodb")
        self._executor = executor
        try:
            with self._errors():
                self._client = await asyncio.get_running_loop().run_in_executor(
                    executor, self._new_client
                )
            await self._call(self._prepare_table)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Wait for calls in flight, then release the threads and HTTP connections."""
        client, executor = self._client, self._executor
        self._client = self._executor = None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)
        if client is not None:
            client.close()

    def _new_client(self) -> DynamoDBClient:
        import boto3
        from botocore.config import Config

        config = Config(
            retries={"mode": "standard", "total_max_attempts": 5},
            max_pool_connections=WORKERS,
            connect_timeout=5,
            read_timeout=10,
            user_agent_extra="wsgate",
        )
        session = boto3.session.Session(region_name=self.region)
        return session.client("dynamodb", endpoint_url=self.endpoint_url, config=config)

    def _prepare_table(self, client: DynamoDBClient) -> None:
        try:
            table = client.describe_table(TableName=self.table)["Table"]
        except client.exceptions.ResourceNotFoundException:
            if not self.create:
                raise  # explained by _errors: the table name and how to create it
            table = self._create_table(client)
        self._check_layout(table)
        status = table.get("TableStatus")
        if status == "CREATING":
            client.get_waiter("table_exists").wait(TableName=self.table, WaiterConfig=_WAIT)
        elif status not in ("ACTIVE", "UPDATING"):
            raise StoreError(f"DynamoDB table {self.table!r} ({self._where}) is {status}")
        self._check_ttl(client)

    def _create_table(self, client: DynamoDBClient) -> TableDescriptionTypeDef:
        try:
            client.create_table(TableName=self.table, **table_schema())
            log.info("created DynamoDB table %s (%s)", self.table, self._where)
        except client.exceptions.ResourceInUseException:
            pass  # another gateway is creating it at this moment: wait for it as well
        client.get_waiter("table_exists").wait(TableName=self.table, WaiterConfig=_WAIT)
        return client.describe_table(TableName=self.table)["Table"]

    def _check_layout(self, table: TableDescriptionTypeDef) -> None:
        """Refuse a table of another application rather than writing wsgate items into it."""

        def schema(key_schema: Sequence[Mapping[str, Any]]) -> set[tuple[str, str]]:
            return {(key["AttributeName"], key["KeyType"]) for key in key_schema}

        wanted = table_schema()
        (wanted_index,) = wanted["GlobalSecondaryIndexes"]
        indexes = {index["IndexName"]: index for index in table.get("GlobalSecondaryIndexes", [])}
        index = indexes.get(GSI_NAME)
        if schema(table.get("KeySchema", [])) != schema(wanted["KeySchema"]) or (
            index is None or schema(index.get("KeySchema", [])) != schema(wanted_index["KeySchema"])
        ):
            raise StoreError(
                f"DynamoDB table {self.table!r} ({self._where}) is not laid out for wsgate: it "
                f"needs key {PARTITION_KEY} (hash) + {SORT_KEY} (range) and a global secondary "
                f"index {GSI_NAME} on {GSI_PARTITION_KEY} + {GSI_SORT_KEY} (wsgate.store.keys); "
                "use another table name, or create=true on a new one"
            )

    def _check_ttl(self, client: DynamoDBClient) -> None:
        ttl = client.describe_time_to_live(TableName=self.table)["TimeToLiveDescription"]
        status, attribute = ttl.get("TimeToLiveStatus"), ttl.get("AttributeName")
        if status in ("ENABLED", "ENABLING") and attribute == TTL_ATTRIBUTE:
            return
        if status in ("DISABLED", None) and self.create:
            try:
                client.update_time_to_live(
                    TableName=self.table,
                    TimeToLiveSpecification=time_to_live(),
                )
                return
            except client.exceptions.ClientError as exc:
                # Another gateway enabled it between our two calls: fine if it is ours.
                again = client.describe_time_to_live(TableName=self.table)
                if again["TimeToLiveDescription"].get("AttributeName") != TTL_ATTRIBUTE:
                    raise exc
                return
        log.warning(
            "TTL of DynamoDB table %s is %s on %r, not enabled on %r: connections whose "
            "$disconnect is lost will never expire (enable TTL on %r, or open with create=true)",
            self.table,
            status,
            attribute,
            TTL_ATTRIBUTE,
            TTL_ATTRIBUTE,
        )

    # -- connections -----------------------------------------------------------------

    async def add_connection(self, record: ConnectionRecord) -> None:
        """Put the connection item; subscriptions are separate items, so they survive."""
        item = _connection_item(record)
        await self._call(lambda client: client.put_item(TableName=self.table, Item=item))

    async def touch(self, activity: dict[str, int]) -> None:
        """Set lastActiveAt, only on items that exist: a touch never resurrects a removed
        connection (and never extends its TTL). Updates run on several threads."""
        if not activity:
            return
        pairs = list(activity.items())
        lanes = min(len(pairs), _TOUCH_THREADS)
        await asyncio.gather(
            *(self._call(partial(self._touch_many, pairs[lane::lanes])) for lane in range(lanes))
        )

    def _touch_many(self, pairs: Sequence[tuple[str, int]], client: DynamoDBClient) -> None:
        for connection_id, at in pairs:
            self._touch_one(client, connection_id, at)

    def _touch_one(self, client: DynamoDBClient, connection_id: str, at: int) -> None:
        try:
            _retry_conflicts(
                lambda: client.update_item(
                    TableName=self.table,
                    Key=_connection_key(connection_id),
                    UpdateExpression="SET lastActiveAt = :at",
                    ConditionExpression="attribute_exists(#pk)",
                    ExpressionAttributeNames={"#pk": PARTITION_KEY},
                    ExpressionAttributeValues={":at": {"N": str(at)}},
                )
            )
        except client.exceptions.ConditionalCheckFailedException:
            pass  # removed meanwhile: nothing to update

    async def remove_connection(self, connection_id: str) -> bool:
        """Delete the connection item first (so no new subscription can join it), then
        every subscription the index lists for it, in batches.

        The index is eventually consistent: a subscription written a moment before may be
        missed. It carries the connection's `ttl`, so it expires with it, and the first
        publish that reaches it removes the connection again (410), this time fully."""
        return await self._call(partial(self._remove, connection_id))

    def _remove(self, connection_id: str, client: DynamoDBClient) -> bool:
        old = _retry_conflicts(
            lambda: client.delete_item(
                TableName=self.table, Key=_connection_key(connection_id), ReturnValues="ALL_OLD"
            )
        )
        subscriptions = self._query(
            client, connection_key(connection_id), index=True, attributes=(PARTITION_KEY, SORT_KEY)
        )
        self._delete_all(client, [{"DeleteRequest": {"Key": item}} for item in subscriptions])
        return bool(old.get("Attributes"))

    def _delete_all(self, client: DynamoDBClient, requests: list[WriteRequestTypeDef]) -> None:
        """BatchWriteItem in chunks of 25, retrying what DynamoDB leaves unprocessed."""
        for start in range(0, len(requests), _BATCH_WRITE_LIMIT):
            pending: Sequence[WriteRequestUnionTypeDef] = requests[
                start : start + _BATCH_WRITE_LIMIT
            ]
            for attempt in range(_BATCH_ATTEMPTS):
                result = client.batch_write_item(RequestItems={self.table: pending})
                pending = result.get("UnprocessedItems", {}).get(self.table, [])
                if not pending:
                    break
                time.sleep(random.uniform(0, min(1.0, 0.05 * 2**attempt)))
            else:
                raise StoreError(
                    f"DynamoDB table {self.table!r} ({self._where}) left {len(pending)} "
                    f"deletions unprocessed after {_BATCH_ATTEMPTS} attempts (throttled?); "
                    "they will expire by TTL"
                )

    async def get_connection(self, connection_id: str) -> ConnectionRecord | None:
        result = await self._call(
            lambda client: client.get_item(
                TableName=self.table, Key=_connection_key(connection_id), ConsistentRead=True
            )
        )
        item = result.get("Item")
        return None if not item else _record(item)

    async def connection_ids(self) -> list[str]:
        items = await self._call(
            lambda client: self._query(
                client, ALL_CONNECTIONS, index=True, attributes=[GSI_SORT_KEY]
            )
        )
        prefix = connection_key("")
        return [item[GSI_SORT_KEY]["S"].removeprefix(prefix) for item in items]

    # -- subscriptions ---------------------------------------------------------------

    async def subscribe(self, connection_id: str, topic: str) -> bool:
        """Put the subscription in a transaction that checks the connection item exists,
        so a connection removed meanwhile never gets an orphan subscription. The
        subscription expires with its connection (same `ttl`)."""
        return await self._call(partial(self._subscribe, connection_id, topic))

    def _subscribe(self, connection_id: str, topic: str, client: DynamoDBClient) -> bool:
        key = _connection_key(connection_id)
        found = client.get_item(
            TableName=self.table,
            Key=key,
            ConsistentRead=True,
            ProjectionExpression="#pk, #ttl",
            ExpressionAttributeNames={"#pk": PARTITION_KEY, "#ttl": TTL_ATTRIBUTE},
        ).get("Item")
        if not found:
            return False
        expires = found.get(TTL_ATTRIBUTE, {}).get("N") or str(_expires_at(_now_ms()))
        subscription: Item = {
            PARTITION_KEY: {"S": topic_key(topic)},
            SORT_KEY: {"S": connection_key(connection_id)},
            GSI_PARTITION_KEY: {"S": connection_key(connection_id)},
            GSI_SORT_KEY: {"S": topic_key(topic)},
            TTL_ATTRIBUTE: {"N": expires},
        }
        try:
            _retry_conflicts(
                lambda: client.transact_write_items(
                    TransactItems=[
                        {
                            "ConditionCheck": {
                                "TableName": self.table,
                                "Key": key,
                                "ConditionExpression": "attribute_exists(#pk)",
                                "ExpressionAttributeNames": {"#pk": PARTITION_KEY},
                            }
                        },
                        {"Put": {"TableName": self.table, "Item": subscription}},
                    ]
                )
            )
        except client.exceptions.TransactionCanceledException as exc:
            if _reasons(exc)[:1] == ["ConditionalCheckFailed"]:
                return False  # the connection went between the read and the write
            raise
        return True

    async def unsubscribe(self, connection_id: str, topic: str) -> bool:
        key: Item = {
            PARTITION_KEY: {"S": topic_key(topic)},
            SORT_KEY: {"S": connection_key(connection_id)},
        }
        result = await self._call(
            lambda client: _retry_conflicts(
                lambda: client.delete_item(TableName=self.table, Key=key, ReturnValues="ALL_OLD")
            )
        )
        return bool(result.get("Attributes"))

    async def subscribers(self, topic: str) -> list[str]:
        """A strongly consistent Query of the topic's partition: a publish right after a
        subscribe reaches the new subscriber."""
        items = await self._call(
            lambda client: self._query(client, topic_key(topic), index=False, attributes=[SORT_KEY])
        )
        prefix = connection_key("")
        return [item[SORT_KEY]["S"].removeprefix(prefix) for item in items]

    async def topics(self, connection_id: str) -> list[str]:
        """A Query of the index (eventually consistent, as every global secondary index)."""
        items = await self._call(
            lambda client: self._query(
                client, connection_key(connection_id), index=True, attributes=[GSI_SORT_KEY]
            )
        )
        prefix = topic_key("")
        return sorted(item[GSI_SORT_KEY]["S"].removeprefix(prefix) for item in items)

    def _query(
        self, client: DynamoDBClient, partition: str, *, index: bool, attributes: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Every item of one partition of the table or of the index, page after page."""
        key = GSI_PARTITION_KEY if index else PARTITION_KEY
        names = {f"#a{i}": name for i, name in enumerate(attributes)}
        names["#key"] = key
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#key = :key",
            "ProjectionExpression": ", ".join(name for name in names if name != "#key"),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":key": {"S": partition}},
        }
        if index:
            params["IndexName"] = GSI_NAME
        else:
            params["ConsistentRead"] = True
        if self._page_size is not None:
            params["Limit"] = self._page_size
        items: list[dict[str, Any]] = []
        while True:
            page = client.query(**params)
            items.extend(page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            if not last:
                return items
            params["ExclusiveStartKey"] = last


# -- items ---------------------------------------------------------------------------


def _connection_key(connection_id: str) -> Item:
    return {
        PARTITION_KEY: {"S": connection_key(connection_id)},
        SORT_KEY: {"S": CONNECTION_SORT_KEY},
    }


def _expires_at(connected_at_ms: int) -> int:
    """Epoch seconds after which the item belongs to a connection API Gateway has closed."""
    return connected_at_ms // 1000 + MAX_CONNECTION_SECONDS + TTL_GRACE_SECONDS


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _connection_item(record: ConnectionRecord) -> Item:
    key = connection_key(record.connection_id)
    item: Item = {
        PARTITION_KEY: {"S": key},
        SORT_KEY: {"S": CONNECTION_SORT_KEY},
        GSI_PARTITION_KEY: {"S": ALL_CONNECTIONS},
        GSI_SORT_KEY: {"S": key},
        TTL_ATTRIBUTE: {"N": str(_expires_at(record.connected_at))},
        "connectionId": {"S": record.connection_id},
        "connectedAt": {"N": str(record.connected_at)},
        "lastActiveAt": {"N": str(record.last_active_at)},
        "sourceIp": {"S": record.source_ip},
        "stage": {"S": record.stage},
        "domainName": {"S": record.domain_name},
        "node": {"S": record.node},
    }
    if record.user_agent is not None:
        item["userAgent"] = {"S": record.user_agent}
    if record.authorizer is not None:
        # JSON text round-trips exactly (a DynamoDB map would turn numbers into Decimals
        # and refuse floats).
        item["authorizer"] = {"S": json.dumps(record.authorizer)}
    return item


def _record(item: Mapping[str, Any]) -> ConnectionRecord:
    def text(name: str) -> str:
        return str(item[name]["S"]) if name in item else ""

    return ConnectionRecord(
        connection_id=text("connectionId"),
        connected_at=int(item["connectedAt"]["N"]),
        source_ip=text("sourceIp"),
        last_active_at=int(item["lastActiveAt"]["N"]) if "lastActiveAt" in item else 0,
        user_agent=item["userAgent"]["S"] if "userAgent" in item else None,
        stage=text("stage"),
        domain_name=text("domainName"),
        node=text("node"),
        authorizer=json.loads(item["authorizer"]["S"]) if "authorizer" in item else None,
    )


# -- errors and retries --------------------------------------------------------------


def _require_boto3() -> None:
    try:
        importlib.import_module("boto3")
    except ImportError as exc:
        raise ConfigError(
            f"the DynamoDB store needs boto3, which is not installed ({exc}): "
            "pip install 'wsgate[aws]'"
        ) from exc


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _reasons(exc: ClientError) -> list[str]:
    """Why a transaction was cancelled, one code per item ("None" for the fine ones)."""
    reasons = exc.response.get("CancellationReasons", [])
    return [str(reason.get("Code", "None")) for reason in reasons]


def _retry_conflicts(call: Callable[[], T]) -> T:
    """Run a write again when a concurrent transaction held its item.

    Two subscribes of one connection (each checking the connection item), or a touch
    during a subscribe, conflict that way; botocore does not retry it by itself.
    """
    from botocore.exceptions import ClientError

    for attempt in range(_CONFLICT_ATTEMPTS):
        try:
            return call()
        except ClientError as exc:
            conflict = _code(exc) == "TransactionConflictException" or (
                _code(exc) == "TransactionCanceledException"
                and "TransactionConflict" in _reasons(exc)
            )
            if not conflict or attempt == _CONFLICT_ATTEMPTS - 1:
                raise
        time.sleep(random.uniform(0, 0.02 * 2**attempt))
    raise AssertionError("unreachable")
