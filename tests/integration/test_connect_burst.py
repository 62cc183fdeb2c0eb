"""A burst of connects while the event loop is busy: the listen backlog must hold them.

The kernel completes TCP handshakes into the listen queue without the gateway; when the
queue is full it drops SYNs, and each dropped client retries a second later. `serve()`
asks for the system's maximum backlog (`backlog=socket.SOMAXCONN`), as uvicorn does, so a
burst waits for the loop in the queue instead of in SYN retries.
"""

from __future__ import annotations

import selectors
import socket
import time
from contextlib import ExitStack

from tests.conftest import run_gateway, ws_connect
from wsgate import App


def busy_app(busy: float) -> App:
    """An app whose `$default` blocks the event loop for `busy` seconds."""
    app = App(name="busy")

    @app.default
    async def default(event: object, context: object) -> None:
        time.sleep(busy)  # on purpose: nothing else runs on the loop meanwhile

    return app


def connect_all(port: int, count: int, within: float) -> int:
    """Start `count` connects at once; how many complete their handshake within `within`."""
    connected = 0
    with ExitStack() as stack, selectors.DefaultSelector() as selector:
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            selector.register(sock, selectors.EVENT_WRITE)
        deadline = time.monotonic() + within
        while connected < count and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                selector.unregister(sock)
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    connected += 1
    return connected


def test_300_connects_complete_their_handshake_while_the_loop_is_busy() -> None:
    """With asyncio's default backlog of 100, two thirds would wait for a SYN retry (1 s)."""
    with run_gateway(busy_app(2.0)) as server, ws_connect(server.url) as ws:
        ws.send("block the loop")
        time.sleep(0.2)  # the handler is running
        assert connect_all(server.port, 300, within=1.0) == 300


def test_serve_passes_its_backlog_to_the_listener() -> None:
    """`serve(backlog=N)` reaches the listening socket: a queue of 2 holds 3 connects
    (Linux keeps backlog + 1), so a fourth waits for a SYN retry."""
    with run_gateway(busy_app(2.0), backlog=2) as server, ws_connect(server.url) as ws:
        ws.send("block the loop")
        time.sleep(0.2)
        assert connect_all(server.port, 6, within=0.5) < 6
