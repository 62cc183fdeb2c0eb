"""The DynamoDB connections table, defined once for the DynamoDB store and the deployment.

The store creates the table from `table_schema()` and `time_to_live()` (with `create=true`)
and the stack declares its `AWS::DynamoDB::Table` from the same two, so a table wsgate
creates and one it deploys are the same table. Standard library only on purpose:
`wsgate.deploy` reads it without boto3.

Single-table design (one item per connection, one per subscription):

| item         | pk                 | sk                 | gsi1pk             | gsi1sk             |
| ------------ | ------------------ | ------------------ | ------------------ | ------------------ |
| connection   | `conn#<id>`        | `conn`             | `connections`      | `conn#<id>`        |
| subscription | `topic#<topic>`    | `conn#<id>`        | `conn#<id>`        | `topic#<topic>`    |

- a connection by id: GetItem(pk=`conn#<id>`, sk=`conn`);
- subscribers of a topic: Query(pk=`topic#<topic>`), no Scan;
- topics of a connection, and every open connection: Query on the GSI
  (gsi1pk=`conn#<id>`, or gsi1pk=`connections`);
- every item carries `ttl` (epoch seconds): API Gateway closes a connection after 2 hours
  at most, so an item outliving that by `TTL_GRACE_SECONDS` belongs to a lost `$disconnect`.
"""

from __future__ import annotations

from typing import Any, TypedDict

PARTITION_KEY = "pk"
SORT_KEY = "sk"
GSI_NAME = "gsi1"
GSI_PARTITION_KEY = "gsi1pk"
GSI_SORT_KEY = "gsi1sk"
TTL_ATTRIBUTE = "ttl"

CONNECTION_SORT_KEY = "conn"
ALL_CONNECTIONS = "connections"

MAX_CONNECTION_SECONDS = 2 * 60 * 60
TTL_GRACE_SECONDS = 10 * 60

#: On demand: a connections table's traffic follows its clients, with nothing to provision.
BILLING_MODE = "PAY_PER_REQUEST"


class TimeToLive(TypedDict):
    """DynamoDB's TimeToLiveSpecification, in UpdateTimeToLive and in CloudFormation."""

    AttributeName: str
    Enabled: bool


def table_schema() -> dict[str, Any]:
    """Billing, keys and index, as CreateTable's parameters (all but TableName).

    CloudFormation's `AWS::DynamoDB::Table` spells these properties the same way. A new
    dict on each call: callers may add to it.
    """
    return {
        "BillingMode": BILLING_MODE,
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": "S"}
            for name in (PARTITION_KEY, SORT_KEY, GSI_PARTITION_KEY, GSI_SORT_KEY)
        ],
        "KeySchema": [
            {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": GSI_NAME,
                "KeySchema": [
                    {"AttributeName": GSI_PARTITION_KEY, "KeyType": "HASH"},
                    {"AttributeName": GSI_SORT_KEY, "KeyType": "RANGE"},
                ],
                # Reads of the index need keys only, and touch() then never writes to it
                # (lastActiveAt is not projected).
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    }


def time_to_live() -> TimeToLive:
    """Items expire through `ttl` (CreateTable cannot say so: UpdateTimeToLive does)."""
    return {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}


def connection_key(connection_id: str) -> str:
    return f"conn#{connection_id}"


def topic_key(topic: str) -> str:
    return f"topic#{topic}"
