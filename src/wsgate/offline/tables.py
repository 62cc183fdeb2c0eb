"""The DynamoDB tables an app declares, created on a local DynamoDB (moto, DynamoDB Local).

Done at start-up, as serverless-dynamodb-local does (and `sam local` users do by hand), so
the handlers find their tables under the names their environment gives them.
"""

from __future__ import annotations

from wsgate.exceptions import ConfigError
from wsgate.offline.environment import DUMMY_ACCESS_KEY_ID, DUMMY_SECRET_ACCESS_KEY
from wsgate.offline.spec import TableSpec


def create_tables(
    tables: tuple[TableSpec, ...], *, endpoint: str, region: str, dummy_credentials: bool
) -> list[str]:
    """Create the tables missing at `endpoint` (a local DynamoDB); return their names."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=DUMMY_ACCESS_KEY_ID if dummy_credentials else None,
        aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY if dummy_credentials else None,
    )
    created: list[str] = []
    name = ""
    try:
        existing: set[str] = set()
        for page in client.get_paginator("list_tables").paginate():
            existing.update(page.get("TableNames", []))
        for table in tables:
            name = table.name
            if name in existing:
                continue
            try:
                client.create_table(**table.create_params)
            except client.exceptions.ResourceInUseException:
                continue
            client.get_waiter("table_exists").wait(
                TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
            )
            if table.ttl_attribute:
                client.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
                )
            created.append(name)
    except (BotoCoreError, ClientError) as exc:
        what = f"table {name}" if name else "tables"
        raise ConfigError(f"cannot create DynamoDB {what} at {endpoint}: {exc}") from exc
    finally:
        client.close()
    return created
