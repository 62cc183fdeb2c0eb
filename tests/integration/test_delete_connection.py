"""After DeleteConnection returns, the connection is gone for every caller at once, while
its socket finishes closing (docs/compatibility.md §6)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import management_client, recv, run_gateway, ws_connect
from wsgate import App, connections


def test_a_deleted_connection_is_gone_at_once() -> None:
    """GetConnection and PostToConnection answer 410 right after DeleteConnection, every
    time (the client has not answered the close frame yet)."""
    app = App(name="delete")

    @app.route("whoAmI")
    async def who_am_i(event: Any, context: Any) -> None:
        await connections.send(event.connection_id, event.connection_id)

    with run_gateway(app) as server:
        api = management_client(server)
        for _ in range(20):
            with ws_connect(server.url) as ws:
                ws.send(json.dumps({"action": "whoAmI"}))
                connection_id = str(recv(ws))
                api.delete_connection(ConnectionId=connection_id)
                with pytest.raises(api.exceptions.GoneException):
                    api.get_connection(ConnectionId=connection_id)
                with pytest.raises(api.exceptions.GoneException):
                    api.post_to_connection(ConnectionId=connection_id, Data=b"late")
                with pytest.raises(api.exceptions.GoneException):
                    api.delete_connection(ConnectionId=connection_id)
