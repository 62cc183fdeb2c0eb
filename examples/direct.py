"""Direct messages: learn your connection id, then message another connection.

{"action": "whoAmI"}                                         -> your connection id
{"action": "sendMessage", "connectionId": ID, "message": M}  -> ID receives M

An id that is not open (never was, or has left) raises GoneError, the 410 of API Gateway's
`PostToConnection`; the sender is told so.

    wsgate serve examples/direct.py
"""

import json

from wsgate import App, GoneError, connections

app = App(name="direct")  # routes on $request.body.action


@app.route("whoAmI")
async def who_am_i(event, context):
    await connections.send(event.connection_id, event.connection_id)


@app.route("sendMessage")
async def send_message(event, context):
    body = event.json
    target, message = body.get("connectionId"), body.get("message")
    if not isinstance(target, str) or message is None:
        error = "sendMessage needs 'connectionId' (a string) and 'message'"
    else:
        try:
            await connections.send(target, message)
            return
        except GoneError:
            error = "no open connection with that id"
    await connections.send(
        event.connection_id, json.dumps({"error": error, "connectionId": target})
    )
