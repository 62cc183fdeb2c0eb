"""Broadcast: what one client says, every open connection hears.

    {"action": "onMessage", "data": X}  -> everyone, the sender included, receives X as JSON
    anything else                       -> everyone receives the message text unchanged

A Lambda chat keeps connection ids in a DynamoDB table, scans it to broadcast and deletes
the ids that answer 410. wsgate's store does all three: `broadcast` reaches every open
connection and forgets the ones that are gone.

    wsgate serve examples/broadcast.py
"""

import json

from wsgate import App, connections

app = App(name="broadcast")  # routes on $request.body.action


@app.route("onMessage")
async def on_message(event, context):
    await connections.broadcast(json.dumps(event.json["data"]))


@app.default
async def default(event, context):
    await connections.broadcast(event["body"])
