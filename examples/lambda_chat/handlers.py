"""Chat as plain Lambda functions: one function per route, `handler(event, context)`.

Nothing here imports the app: these are the functions a serverless.yml would name
(`handler: handlers.on_message`), returning what API Gateway expects.
"""

import json
import logging

from wsgate import connections

log = logging.getLogger(__name__)


def connect(event, context):
    name = (event.get("queryStringParameters") or {}).get("name", "anonymous")
    log.info("%s joined as %s", event["requestContext"]["connectionId"], name)
    return {"statusCode": 200, "body": "Connected."}


def disconnect(event, context):
    log.info("%s left", event["requestContext"]["connectionId"])
    return {"statusCode": 200, "body": "Disconnected."}


def on_message(event, context):
    """{"action": "onMessage", "data": X}: rebroadcast X to every connection, as JSON."""
    body = json.loads(event["body"])
    if "data" not in body:
        return reply_error(event, "onMessage needs 'data'")
    sent = connections.broadcast(json.dumps(body["data"]))
    return {"statusCode": 200, "body": f"Data sent to {sent}."}


def default(event, context):
    return reply_error(event, 'send {"action": "onMessage", "data": ...}')


def reply_error(event, message):
    connections.send(event["requestContext"]["connectionId"], json.dumps({"error": message}))
    return {"statusCode": 400, "body": message}
