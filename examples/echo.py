"""Echo (seed 000): every message comes back to its sender, unchanged.

wsgate serve examples/echo.py
wsgate connect ws://127.0.0.1:8080/dev
"""

from wsgate import App, connections

app = App(name="echo")


@app.default
async def echo(event, context):
    await connections.send(event.connection_id, event["body"])
