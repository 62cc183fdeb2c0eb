"""The gateway answers a real client end to end."""

import json

from tests.conftest import recv, run_gateway, ws_connect
from wsgate import App, connections


def test_echo_through_default_route() -> None:
    """A message routed to $default is sent back by the handler."""
    app = App()

    @app.default
    async def echo(event, context):
        await connections.send(event.connection_id, event["body"])

    with run_gateway(app) as server, ws_connect(server.url) as ws:
        ws.send(json.dumps({"hello": "world"}))
        assert json.loads(recv(ws)) == {"hello": "world"}
