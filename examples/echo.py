"""Echo: every message comes back to its sender, unchanged.

The smallest app: one `$default` route, so every message goes to it, JSON or not.
Run it and connect:

    wsgate serve examples/echo.py
    wsgate connect ws://127.0.0.1:8080/dev
"""

from wsgate import App, connections

app = App(name="echo")


@app.default
async def echo(event, context):
    await connections.send(event.connection_id, event["body"])
