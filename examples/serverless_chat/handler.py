"""A chat as Python Lambda functions: one function per route, connections in DynamoDB.

Plain Lambda code, nothing from wsgate: the same file deploys with serverless.yml or
template.yaml, and `wsgate serve` runs it unchanged from either.

- $connect stores the connection id; $disconnect deletes it.
- {"action": "onMessage", "data": X} sends X, as JSON, to every stored connection through
  the @connections API at https://{domainName}/{stage}; connections that are gone (410)
  are deleted from the table.
- anything else ($default, a two-way route) answers the sender with how to chat.
"""

import json
import logging
import os
from functools import lru_cache

import boto3
from botocore.exceptions import ClientError

logger = logging.getLogger()
logger.setLevel(logging.INFO)

# Module scope: created once per execution environment and reused while it is warm.
table = boto3.resource("dynamodb").Table(os.environ["CONNECTIONS_TABLE"])


@lru_cache(maxsize=8)
def management_api(domain_name, stage):
    return boto3.client("apigatewaymanagementapi", endpoint_url=f"https://{domain_name}/{stage}")


def connect(event, context):
    connection_id = event["requestContext"]["connectionId"]
    try:
        table.put_item(Item={"connectionId": connection_id})
    except ClientError as err:
        return {"statusCode": 500, "body": f"Failed to connect: {err}"}
    return {"statusCode": 200, "body": json.dumps({"connectionId": connection_id})}


def disconnect(event, context):
    connection_id = event["requestContext"]["connectionId"]
    try:
        table.delete_item(Key={"connectionId": connection_id})
    except ClientError as err:
        return {"statusCode": 500, "body": f"Failed to disconnect: {err}"}
    return {"statusCode": 200, "body": "Disconnected."}


def connection_ids():
    scan = {"ProjectionExpression": "connectionId"}
    while True:
        page = table.scan(**scan)
        for item in page["Items"]:
            yield item["connectionId"]
        if "LastEvaluatedKey" not in page:
            return
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def on_message(event, context):
    request = event["requestContext"]
    message = json.dumps(json.loads(event["body"]).get("data"))
    api = management_api(request["domainName"], request["stage"])
    try:
        for connection_id in list(connection_ids()):
            try:
                api.post_to_connection(ConnectionId=connection_id, Data=message.encode())
            except api.exceptions.GoneException:
                logger.info("Found stale connection, deleting %s", connection_id)
                table.delete_item(Key={"connectionId": connection_id})
    except ClientError as err:
        logger.exception("onMessage failed")
        return {"statusCode": 500, "body": str(err)}
    return {"statusCode": 200}


def default(event, context):
    usage = {"error": 'send {"action": "onMessage", "data": ...}'}
    return {"statusCode": 400, "body": json.dumps(usage)}
