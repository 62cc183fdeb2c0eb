"""DynamoDB table layout, shared by the DynamoDB store and the deployment template.

Dependency-free on purpose: `wsgate.deploy` imports it to declare the same table it will
query at run time, so the two can never disagree.

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


def connection_key(connection_id: str) -> str:
    return f"conn#{connection_id}"


def topic_key(topic: str) -> str:
    return f"topic#{topic}"
