"""What is specific to the DynamoDB store, against a real moto server over HTTP.

The behaviour every store shares is in test_store_contract.py (which runs on DynamoDB too).
Here: the table it creates, its items (keys, TTL), pagination, the conditional writes that
keep subscriptions from outliving connections, errors a person can act on, store URLs, and
the gateway itself serving a topics app on DynamoDB.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest

from tests.conftest import TIMEOUT, free_port, recv, run_gateway, ws_connect
from tests.moto_server import (
    dynamodb_url,
    isolate_aws_config,
    unique_table,
    use_fake_credentials,
)
from wsgate import App, Event, connections
from wsgate.exceptions import ConfigError, StoreError
from wsgate.store import ConnectionRecord, open_store
from wsgate.store.dynamodb import DynamoDBStore
from wsgate.store.keys import (
    ALL_CONNECTIONS,
    CONNECTION_SORT_KEY,
    GSI_NAME,
    MAX_CONNECTION_SECONDS,
    TTL_GRACE_SECONDS,
    connection_key,
    topic_key,
)

T = TypeVar("T")

CONNECTED_AT = 1_705_751_697_419


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_fake_credentials(monkeypatch, tmp_path)


@pytest.fixture
def raw(moto_endpoint: str) -> Any:
    """A plain boto3 DynamoDB client on the moto server, to look at what the store wrote."""
    return boto3.client(
        "dynamodb",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def table() -> str:
    return unique_table()


def new_store(endpoint: str, table: str, *, create: bool = True) -> DynamoDBStore:
    store = open_store(dynamodb_url(endpoint, table, create=create))
    assert isinstance(store, DynamoDBStore)
    return store


def run(store: DynamoDBStore, scenario: Callable[[DynamoDBStore], Awaitable[T]]) -> T:
    """Open `store`, run `scenario` against it, close it."""

    async def main() -> T:
        await store.open()
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(main())


def record(connection_id: str, **fields: Any) -> ConnectionRecord:
    values: dict[str, Any] = {"connected_at": CONNECTED_AT, "source_ip": "10.0.0.1"}
    values.update(fields)
    return ConnectionRecord(connection_id, **values)


def item(raw: Any, table: str, pk: str, sk: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = raw.get_item(
        TableName=table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
    ).get("Item")
    return found


def all_items(raw: Any, table: str) -> list[dict[str, Any]]:
    """Every item of the table (a Scan: fine in a test, never done by the store)."""
    items: list[dict[str, Any]] = []
    for page in raw.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        items.extend(page["Items"])
    return items


def count_calls(store: DynamoDBStore, operation: str) -> list[str]:
    """A list that grows by one each time the store's client sends `operation`."""
    calls: list[str] = []
    assert store._client is not None
    store._client.meta.events.register(
        f"after-call.dynamodb.{operation}", lambda **_: calls.append(operation)
    )
    return calls


# -- the table --------------------------------------------------------------------------


def test_create_true_creates_the_table(moto_endpoint: str, table: str, raw: Any) -> None:
    """create=true makes an on-demand table keyed pk/sk, the gsi1 index, and TTL on `ttl`."""

    async def nothing(store: DynamoDBStore) -> None:
        pass

    run(new_store(moto_endpoint, table), nothing)
    description = raw.describe_table(TableName=table)["Table"]
    assert description["TableStatus"] == "ACTIVE"
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert {(k["AttributeName"], k["KeyType"]) for k in description["KeySchema"]} == {
        ("pk", "HASH"),
        ("sk", "RANGE"),
    }
    (index,) = description["GlobalSecondaryIndexes"]
    assert index["IndexName"] == GSI_NAME
    assert {(k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]} == {
        ("gsi1pk", "HASH"),
        ("gsi1sk", "RANGE"),
    }
    ttl = raw.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "ttl"}


def test_missing_table_is_a_clear_error(moto_endpoint: str, table: str, raw: Any) -> None:
    """Without create, a missing table is a StoreError naming it and how to create it."""
    store = new_store(moto_endpoint, table, create=False)
    with pytest.raises(StoreError, match=rf"table '{table}' does not exist.*create=true"):
        run(store, lambda store: asyncio.sleep(0))
    assert table not in raw.list_tables()["TableNames"]
    with pytest.raises(StoreError, match="not open"):
        asyncio.run(store.connection_ids())


def test_shared_table_is_never_purged(moto_endpoint: str, table: str) -> None:
    """A second gateway opening the table (without create) sees, and keeps, the first's data."""

    async def scenario(first: DynamoDBStore) -> None:
        await first.add_connection(record("a"))
        assert await first.subscribe("a", "room")
        second = new_store(moto_endpoint, table, create=False)
        await second.open()
        try:
            assert await second.connection_ids() == ["a"]
            assert await second.subscribers("room") == ["a"]
            await second.add_connection(record("b"))
        finally:
            await second.close()
        assert sorted(await first.connection_ids()) == ["a", "b"]

    run(new_store(moto_endpoint, table), scenario)


def test_foreign_table_refused(moto_endpoint: str, table: str, raw: Any) -> None:
    """A table with another key schema is refused before anything is written to it."""
    raw.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    with pytest.raises(StoreError, match=rf"'{table}'.*not laid out for wsgate.*gsi1"):
        run(new_store(moto_endpoint, table), lambda store: asyncio.sleep(0))
    assert all_items(raw, table) == []


def test_existing_table_without_ttl(
    moto_endpoint: str, table: str, raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A table without TTL works but is warned about; create=true enables TTL on it."""
    keys = ("pk", "sk", "gsi1pk", "gsi1sk")
    raw.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in keys],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "gsi1",
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )

    async def use(store: DynamoDBStore) -> list[str]:
        await store.add_connection(record("a"))
        assert await store.subscribe("a", "room")
        return await store.topics("a")

    with caplog.at_level(logging.WARNING, logger="wsgate.store"):
        assert run(new_store(moto_endpoint, table, create=False), use) == ["room"]
    assert "never expire" in caplog.text
    assert raw.describe_time_to_live(TableName=table)["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "DISABLED"
    }
    run(new_store(moto_endpoint, table, create=True), lambda store: asyncio.sleep(0))
    ttl = raw.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "ttl"}


# -- items ------------------------------------------------------------------------------


def test_items_follow_the_layout_and_carry_ttl(moto_endpoint: str, table: str, raw: Any) -> None:
    """Connection and subscription items have keys.py's keys and the same `ttl`:
    connected_at + the 2-hour API Gateway maximum + the grace period, in epoch seconds."""

    async def scenario(store: DynamoDBStore) -> None:
        await store.add_connection(record("a", user_agent="ua/1", authorizer={"p": 1.5}))
        assert await store.subscribe("a", "news")

    run(new_store(moto_endpoint, table), scenario)
    expires = str(CONNECTED_AT // 1000 + MAX_CONNECTION_SECONDS + TTL_GRACE_SECONDS)
    connection = item(raw, table, connection_key("a"), CONNECTION_SORT_KEY)
    assert connection is not None
    assert connection["gsi1pk"] == {"S": ALL_CONNECTIONS}
    assert connection["gsi1sk"] == {"S": connection_key("a")}
    assert connection["ttl"] == {"N": expires}
    assert connection["connectedAt"] == {"N": str(CONNECTED_AT)}
    assert connection["userAgent"] == {"S": "ua/1"}
    subscription = item(raw, table, topic_key("news"), connection_key("a"))
    assert subscription is not None
    assert subscription["gsi1pk"] == {"S": connection_key("a")}
    assert subscription["gsi1sk"] == {"S": topic_key("news")}
    assert subscription["ttl"] == {"N": expires}


def test_queries_paginate(moto_endpoint: str, table: str) -> None:
    """Every read that queries follows LastEvaluatedKey to the last page."""

    async def scenario(store: DynamoDBStore) -> None:
        store._page_size = 2
        queries = count_calls(store, "Query")
        ids = [f"c{i}" for i in range(7)]
        for cid in ids:
            await store.add_connection(record(cid))
            assert await store.subscribe(cid, "room")
        topics = [f"t{i}" for i in range(5)]
        for topic in topics:
            assert await store.subscribe("c0", topic)

        queries.clear()
        assert sorted(await store.connection_ids()) == ids
        assert len(queries) >= 4
        queries.clear()
        assert sorted(await store.subscribers("room")) == ids
        assert len(queries) >= 4
        queries.clear()
        assert await store.topics("c0") == ["room", *topics]
        assert len(queries) >= 3
        queries.clear()
        assert await store.remove_connection("c0")
        assert len(queries) >= 3
        assert await store.subscribers("t0") == []
        assert sorted(await store.subscribers("room")) == ids[1:]

    run(new_store(moto_endpoint, table), scenario)


# -- conditional writes -----------------------------------------------------------------


def test_subscribe_unknown_connection_writes_nothing(
    moto_endpoint: str, table: str, raw: Any
) -> None:
    """subscribe of an unknown (or removed) connection is False and leaves no item."""

    async def scenario(store: DynamoDBStore) -> None:
        assert await store.subscribe("ghost", "room") is False
        await store.add_connection(record("a"))
        assert await store.remove_connection("a")
        assert await store.subscribe("a", "room") is False

    run(new_store(moto_endpoint, table), scenario)
    assert all_items(raw, table) == []


def test_subscribe_racing_a_removal_leaves_no_orphan(
    moto_endpoint: str, table: str, raw: Any
) -> None:
    """A connection removed between subscribe's read and its write: the transaction's
    condition check refuses the write, so no subscription outlives the connection."""

    async def scenario(store: DynamoDBStore) -> None:
        await store.add_connection(record("a"))
        assert store._client is not None

        def remove_first(**_: Any) -> None:
            # Another gateway handles the $disconnect right now.
            raw.delete_item(
                TableName=table,
                Key={"pk": {"S": connection_key("a")}, "sk": {"S": CONNECTION_SORT_KEY}},
            )

        store._client.meta.events.register("before-call.dynamodb.TransactWriteItems", remove_first)
        transactions = count_calls(store, "TransactWriteItems")
        assert await store.subscribe("a", "room") is False
        assert transactions == ["TransactWriteItems"]

    run(new_store(moto_endpoint, table), scenario)
    assert all_items(raw, table) == []


def test_concurrent_subscribes(moto_endpoint: str, table: str) -> None:
    """Many subscribes of one connection at once (the store's threads) all land."""
    topics = sorted(f"topic-{i:02}" for i in range(24))

    async def scenario(store: DynamoDBStore) -> None:
        await store.add_connection(record("a"))
        results = await asyncio.gather(*(store.subscribe("a", topic) for topic in topics))
        assert all(results)
        assert await store.topics("a") == topics

    run(new_store(moto_endpoint, table), scenario)


def test_touch_never_resurrects(moto_endpoint: str, table: str, raw: Any) -> None:
    """touch updates the known connections (many at once) and never recreates a removed
    or unknown one."""
    ids = [f"c{i:02}" for i in range(30)]

    async def scenario(store: DynamoDBStore) -> None:
        for cid in ids:
            await store.add_connection(record(cid, last_active_at=1))
        assert await store.remove_connection("c00")
        await store.touch({cid: 5000 + n for n, cid in enumerate(ids)} | {"ghost": 9})
        for n, cid in enumerate(ids[1:], start=1):
            got = await store.get_connection(cid)
            assert got == record(cid, last_active_at=5000 + n)
        assert await store.get_connection("c00") is None
        assert await store.get_connection("ghost") is None

    run(new_store(moto_endpoint, table), scenario)
    assert item(raw, table, connection_key("c00"), CONNECTION_SORT_KEY) is None
    assert item(raw, table, connection_key("ghost"), CONNECTION_SORT_KEY) is None
    assert len(all_items(raw, table)) == len(ids) - 1


def test_remove_deletes_every_subscription(moto_endpoint: str, table: str, raw: Any) -> None:
    """remove_connection deletes the connection and all its subscriptions, more than one
    BatchWriteItem's worth, and nothing of other connections."""
    topics = [f"t{i:02}" for i in range(30)]

    async def scenario(store: DynamoDBStore) -> None:
        await store.add_connection(record("a"))
        await store.add_connection(record("b"))
        for topic in topics:
            assert await store.subscribe("a", topic)
        assert await store.subscribe("b", "t00")
        batches = count_calls(store, "BatchWriteItem")
        assert await store.remove_connection("a") is True
        assert len(batches) == 2
        assert await store.remove_connection("a") is False

    run(new_store(moto_endpoint, table), scenario)
    left = {(i["pk"]["S"], i["sk"]["S"]) for i in all_items(raw, table)}
    assert left == {
        (connection_key("b"), CONNECTION_SORT_KEY),
        (topic_key("t00"), connection_key("b")),
    }


# -- configuration and errors -----------------------------------------------------------


def test_store_url_options() -> None:
    """endpoint, region and create come from the URL; region and create have defaults."""
    store = open_store(
        "dynamodb://my.table_1?endpoint=http://localhost:8000&region=eu-west-1&create=true"
    )
    assert isinstance(store, DynamoDBStore)
    assert (store.table, store.endpoint_url, store.region, store.create) == (
        "my.table_1",
        "http://localhost:8000",
        "eu-west-1",
        True,
    )
    plain = open_store("dynamodb://wsgate")
    assert isinstance(plain, DynamoDBStore)
    assert (plain.endpoint_url, plain.region, plain.create) == (None, "us-east-1", False)


def test_region_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without region in the URL: AWS_REGION, then AWS_DEFAULT_REGION."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    store = open_store("dynamodb://wsgate")
    assert isinstance(store, DynamoDBStore) and store.region == "ap-south-1"
    monkeypatch.setenv("AWS_REGION", "sa-east-1")
    store = open_store("dynamodb://wsgate")
    assert isinstance(store, DynamoDBStore) and store.region == "sa-east-1"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("dynamodb://", "dynamodb://TABLE"),
        ("dynamodb://wsgate/extra", "dynamodb://TABLE"),
        ("dynamodb://ab", "bad DynamoDB table name"),
        ("dynamodb://wsgate?endpont=http://x", "unknown option endpont"),
        ("dynamodb://wsgate?create=maybe", "use true or false"),
        ("dynamodb://wsgate?region=a&region=b", "region given twice"),
        ("dynamodb://wsgate?endpoint=localhost:8000", "bad DynamoDB endpoint"),
    ],
)
def test_bad_store_urls(url: str, message: str) -> None:
    """A wrong DynamoDB URL is a ConfigError saying what is wrong."""
    with pytest.raises(ConfigError, match=message):
        open_store(url)


def test_without_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without boto3 installed, the store says which extra to install."""
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(ConfigError, match=r"pip install 'wsgate\[aws\]'"):
        open_store("dynamodb://wsgate")


def test_without_credentials(
    moto_endpoint: str, table: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No credentials anywhere: a StoreError that says how to provide them."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    isolate_aws_config(monkeypatch, tmp_path)
    with pytest.raises(StoreError, match="no AWS credentials.*AWS_ACCESS_KEY_ID"):
        run(new_store(moto_endpoint, table), lambda store: asyncio.sleep(0))


def test_unreachable_endpoint(table: str) -> None:
    """Nothing listens at the endpoint: a StoreError naming it."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StoreError, match=f"cannot reach DynamoDB at {endpoint}"):
        run(new_store(endpoint, table), lambda store: asyncio.sleep(0))


# -- the gateway on DynamoDB ------------------------------------------------------------


def topics_app() -> App:
    """Topic pub/sub, as examples/topics.py, with a reply once a subscription is stored."""
    app = App(route_selection="$request.body.type")

    @app.route("subscribe", return_response=True)
    async def subscribe(event: Event, context: Any) -> dict[str, str]:
        await connections.subscribe(event.connection_id, event.json["topic"])
        return {"statusCode": 200, "body": json.dumps({"subscribed": event.json["topic"]})}

    @app.route("message")
    async def message(event: Event, context: Any) -> None:
        payload = json.dumps({"topic": event.json["topic"], "data": event.json["data"]})
        await connections.publish(event.json["topic"], payload, exclude=[event.connection_id])

    return app


def eventually(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_gateway_pub_sub_on_dynamodb(moto_endpoint: str, table: str, raw: Any) -> None:
    """Two real clients through the real gateway, with its connections and subscriptions
    in DynamoDB: a message published by one reaches the other, and closed connections
    leave the table."""

    def subscription_pairs() -> set[tuple[str, str]]:
        return {
            (i["pk"]["S"], i["sk"]["S"]) for i in all_items(raw, table) if i["sk"]["S"] != "conn"
        }

    with run_gateway(topics_app(), store=dynamodb_url(moto_endpoint, table)) as server:
        with ws_connect(server.url) as alice, ws_connect(server.url) as bob:
            for ws in (alice, bob):
                ws.send(json.dumps({"type": "subscribe", "topic": "news"}))
                assert json.loads(recv(ws)) == {"subscribed": "news"}
            assert len(subscription_pairs()) == 2

            bob.send(json.dumps({"type": "message", "topic": "news", "data": "hello"}))
            assert json.loads(recv(alice)) == {"topic": "news", "data": "hello"}
            alice.send(json.dumps({"type": "message", "topic": "news", "data": "hi"}))
            assert json.loads(recv(bob)) == {"topic": "news", "data": "hi"}

            alice.close()
            eventually(lambda: len(subscription_pairs()) == 1)
            bob.send(json.dumps({"type": "message", "topic": "news", "data": "anyone?"}))
            bob.send(json.dumps({"type": "subscribe", "topic": "sync"}))
            assert json.loads(recv(bob)) == {"subscribed": "sync"}
        eventually(lambda: all_items(raw, table) == [])
