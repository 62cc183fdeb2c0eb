"""Several gateway nodes on one Redis store behave as one gateway.

Real processes only: a redis-server of each test's own (tests/redis_server.py), three
`wsgate serve --store redis://... --node-id NAME` processes on their own ports, clients
(websockets' sync client) spread over them, and boto3's `apigatewaymanagementapi` client
against each node. Redis keys are read with a plain redis client to check what the nodes
leave behind (`{wsgate}:node:NAME`, `{wsgate}:nodes`, `{wsgate}:topic:TOPIC`, ...).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from tests.conftest import TIMEOUT, free_port, recv, ws_connect
from tests.e2e.test_cli import EXAMPLES, RUN_TIMEOUT, WSGATE
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow

#: --node-timeout of every node here: a killed node is purged this long after its last
#: heartbeat (plus one heartbeat interval, a third of it).
NODE_TIMEOUT = 2.0
#: How long a node waits for another's answer (`redis_bus.CALL_TIMEOUT`).
CALL_TIMEOUT = 5.0
KEYS = "{wsgate}:"  # the default key prefix

#: One app for the tests that kill, drain or restart things: direct messages, topics with
#: acknowledgements, and `$disconnect` recorded in a file (one line per call).
NODE_APP = """
import functools
import json

from wsgate import App, GoneError, WsgateError, connections

app = App(name="nodes")
DISCONNECTS = {disconnects!r}


@app.route("whoAmI")
async def who_am_i(event, context):
    await connections.send(event.connection_id, event.connection_id)


@app.route("sendMessage")
async def send_message(event, context):
    try:
        await connections.send(event.json["connectionId"], event.json["message"])
    except GoneError:
        reply = {{"error": "gone"}}
    except WsgateError as exc:
        reply = {{"error": str(exc)}}
    else:
        reply = {{"sent": event.json["connectionId"]}}
    await connections.send(event.connection_id, json.dumps(reply))


@app.route("subscribe")
async def subscribe(event, context):
    await connections.subscribe(event.connection_id, event.json["topic"])
    await connections.send(event.connection_id, "subscribed")


@app.route("publish")
async def publish(event, context):
    count = await connections.publish(event.json["topic"], event.json["data"])
    await connections.send(event.connection_id, f"delivered {{count}}")


@app.route("$disconnect")
async def disconnect(event, context):
    code = event["requestContext"]["disconnectStatusCode"]
    with open(DISCONNECTS, "a") as record:
        record.write(f"{{event.connection_id}} {{code}}\\n")
"""


@dataclass
class Node:
    """One `wsgate serve` process: a node of the gateway."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/dev"

    def connect(self) -> ClientConnection:
        return ws_connect(self.url)

    def management(self) -> Any:
        """boto3's management client against this node (dummy region and credentials)."""
        return boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=f"http://127.0.0.1:{self.port}/dev",
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def listed(self) -> list[str]:
        """`GET /dev/@connections` on this node."""
        url = f"http://127.0.0.1:{self.port}/dev/@connections"
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return sorted(json.load(response)["connections"])

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class Nodes:
    """Starts `wsgate serve` nodes on one Redis store; kills what is left at the end."""

    def __init__(self, app: Path, server: RedisServer, cwd: Path) -> None:
        self.app = app
        self.server = server
        self.cwd = cwd
        self.started: list[Node] = []

    def start(self, *names: str, options: tuple[str, ...] = ()) -> list[Node]:
        """Start a node per name (all at once), and wait until each listens."""
        nodes = [self._launch(name, options) for name in names]
        for node in nodes:
            wait_until(functools.partial(listens, node), RUN_TIMEOUT, f"{node.name} listening")
        return nodes

    def _launch(self, name: str, options: tuple[str, ...]) -> Node:
        port = free_port()
        log = self.cwd / f"node-{name}-{port}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [
                    *WSGATE,
                    "serve",
                    str(self.app),
                    "--store",
                    f"redis://127.0.0.1:{self.server.port}/0",
                    "--node-timeout",
                    str(NODE_TIMEOUT),
                    "--port",
                    str(port),
                    *(("--node-id", name) if name else ()),
                    *options,
                ],
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        node = Node(name, port, process, log)
        self.started.append(node)
        return node

    def close(self) -> None:
        for node in self.started:
            if node.process.poll() is None:
                node.process.kill()
            node.process.wait()


@contextmanager
def gateway(app: Path, tmp_path: Path, *names: str) -> Iterator[tuple[RedisServer, Nodes]]:
    """A redis-server of the test's own and nodes `names` on it (started, listening)."""
    with RedisServer() as server:
        nodes = Nodes(app, server, tmp_path)
        try:
            nodes.start(*names)
            yield server, nodes
        finally:
            nodes.close()


def listens(node: Node) -> bool:
    """Whether `node` accepts TCP connections (fails at once if it exited)."""
    assert node.process.poll() is None, f"node {node.name} exited:\n{node.output()}"
    try:
        socket.create_connection(("127.0.0.1", node.port), timeout=0.2).close()
    except OSError:
        return False
    return True


def node_app(tmp_path: Path) -> tuple[Path, Path]:
    """NODE_APP in tmp_path, and the file its `$disconnect` appends to."""
    disconnects = tmp_path / "disconnects.txt"
    app = tmp_path / "nodes_app.py"
    app.write_text(NODE_APP.format(disconnects=str(disconnects)))
    return app, disconnects


def raw_redis(server: RedisServer) -> redis.Redis:
    return redis.Redis(port=server.port, decode_responses=True, socket_timeout=TIMEOUT)


def who_am_i(ws: ClientConnection) -> str:
    ws.send(json.dumps({"action": "whoAmI"}))
    return str(recv(ws))


def send_message(ws: ClientConnection, connection_id: str, message: str) -> None:
    ws.send(
        json.dumps({"action": "sendMessage", "connectionId": connection_id, "message": message})
    )


def subscribe(ws: ClientConnection, topic: str) -> None:
    ws.send(json.dumps({"action": "subscribe", "topic": topic}))
    assert recv(ws) == "subscribed"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `condition` until true; how long it took (fails after `timeout` seconds)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"not within {timeout:g} s: {what}"
        time.sleep(0.02)
    return time.monotonic() - started


def subscriber_count(db: redis.Redis, topic: str) -> int:
    """How many connections are subscribed to `topic`, on every node (the store's sets)."""
    nodes = db.smembers(f"{KEYS}topic:{topic}")
    return sum(int(db.scard(f"{KEYS}subs:{node}:{topic}")) for node in nodes)  # type: ignore[union-attr]


def node_records(db: redis.Redis, node: str, topic: str, ids: list[str]) -> list[str]:
    """What Redis still holds of `node` and of its connections `ids` (empty: nothing)."""
    keys = [
        f"{KEYS}node:{node}",
        f"{KEYS}subs:{node}:{topic}",
        *(f"{KEYS}conn:{connection_id}" for connection_id in ids),
        *(f"{KEYS}topics:{connection_id}" for connection_id in ids),
    ]
    members = [
        (f"{KEYS}nodes", node),
        (f"{KEYS}topic:{topic}", node),
        *((f"{KEYS}conns", connection_id) for connection_id in ids),
    ]
    left = [key for key in keys if db.exists(key)]
    left += [f"{key} has {member}" for key, member in members if db.sismember(key, member)]
    return left


def closed_with(ws: ClientConnection) -> int | None:
    """The close code the server sent, once the connection is closed."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            recv(ws)
    return None if closed.value.rcvd is None else closed.value.rcvd.code


# -- a gateway of three nodes ----------------------------------------------------------


def test_send_message_crosses_nodes(tmp_path: Path) -> None:
    """direct.py's sendMessage reaches a client connected to another node, and back; a
    client that left its node is reported unknown (API Gateway's 410) at once."""
    with (
        gateway(EXAMPLES / "direct.py", tmp_path, "a", "b", "c") as (_, nodes),
        nodes.started[0].connect() as alice,
        nodes.started[2].connect() as carol,
    ):
        alice_id, carol_id = who_am_i(alice), who_am_i(carol)
        send_message(alice, carol_id, "hello carol")
        assert recv(carol) == "hello carol"
        send_message(carol, alice_id, "hello alice")
        assert recv(alice) == "hello alice"

        carol.close()
        started = time.monotonic()
        send_message(alice, carol_id, "too late")
        answer = json.loads(recv(alice))
        took = time.monotonic() - started
        assert answer == {"error": "no open connection with that id", "connectionId": carol_id}
        assert took < 2.0, f"a 410 across nodes took {took:.2f} s"
        print(f"410 for a closed connection on another node: {took * 1000:.0f} ms")


def test_publish_reaches_each_subscriber_once_in_order(tmp_path: Path) -> None:
    """topics.py: a publish reaches the other subscribers on every node exactly once, a
    client's messages arrive in the order it sent them, the publisher does not hear its
    own, and a publish is one Redis message per node with subscribers, however many."""
    with ExitStack() as stack:
        server, nodes = stack.enter_context(
            gateway(EXAMPLES / "topics.py", tmp_path, "a", "b", "c")
        )
        a, b, c = nodes.started
        publisher = stack.enter_context(a.connect())
        subscribers = [stack.enter_context(node.connect()) for node in (a, b, b, c, c)]
        db = stack.enter_context(raw_redis(server))
        for ws in (publisher, *subscribers):
            ws.send(json.dumps({"type": "subscribe", "topic": "news"}))
        wait_until(lambda: subscriber_count(db, "news") == 6, TIMEOUT, "6 subscribers")

        sent = [f"message {n}" for n in range(50)]
        for data in sent:
            publisher.send(json.dumps({"type": "message", "topic": "news", "data": data}))
        for ws in subscribers:
            assert [json.loads(recv(ws))["data"] for _ in sent] == sent
        # Someone else's message is the first the publisher hears: not its own.
        subscribers[-1].send(json.dumps({"type": "message", "topic": "news", "data": "end"}))
        assert json.loads(recv(publisher)) == {"topic": "news", "data": "end"}
        for ws in subscribers[:-1]:
            assert json.loads(recv(ws))["data"] == "end"

        # One message per node that has subscribers, and one answer each: the count of
        # PUBLISH commands Redis ran does not grow with the number of subscribers.
        def publishes() -> int:
            stats = db.info("commandstats").get("cmdstat_publish", {"calls": 0})
            return int(stats["calls"])

        def publish_counted(listeners: list[ClientConnection]) -> int:
            before = publishes()
            publisher.send(json.dumps({"type": "message", "topic": "quiet", "data": "hi"}))
            for ws in listeners:
                assert json.loads(recv(ws)) == {"topic": "quiet", "data": "hi"}
            wait_until(lambda: publishes() - before >= 4, TIMEOUT, "2 requests, 2 answers")
            time.sleep(0.2)  # nothing more comes
            return publishes() - before

        quiet = [stack.enter_context(node.connect()) for node in (b, c)]
        for ws in quiet:
            ws.send(json.dumps({"type": "subscribe", "topic": "quiet"}))
        wait_until(lambda: subscriber_count(db, "quiet") == 2, TIMEOUT, "2 subscribers")
        with_two = publish_counted(quiet)
        quiet += [stack.enter_context(node.connect()) for node in (b, c) * 4]
        for ws in quiet[2:]:
            ws.send(json.dumps({"type": "subscribe", "topic": "quiet"}))
        wait_until(lambda: subscriber_count(db, "quiet") == 10, TIMEOUT, "10 subscribers")
        with_ten = publish_counted(quiet)
        assert with_two == with_ten == 4, (with_two, with_ten)


def test_broadcast_reaches_every_node(tmp_path: Path) -> None:
    """broadcast.py's onMessage reaches every client on every node, the sender included."""
    with ExitStack() as stack:
        _, nodes = stack.enter_context(gateway(EXAMPLES / "broadcast.py", tmp_path, "a", "b", "c"))
        clients = [stack.enter_context(node.connect()) for node in nodes.started * 2]
        clients[1].send(json.dumps({"action": "onMessage", "data": {"hello": "all"}}))
        for ws in clients:
            assert json.loads(recv(ws)) == {"hello": "all"}


def test_management_api_on_every_node(tmp_path: Path) -> None:
    """boto3 against any node posts to, gets and deletes a connection another node holds,
    and `GET @connections` on any node lists the connections of every node."""
    with ExitStack() as stack:
        _, nodes = stack.enter_context(gateway(EXAMPLES / "direct.py", tmp_path, "a", "b", "c"))
        clients = [stack.enter_context(node.connect()) for node in nodes.started]
        ids = [who_am_i(ws) for ws in clients]
        for node in nodes.started:
            assert node.listed() == sorted(ids)
        for n, node in enumerate(nodes.started):
            api = node.management()
            for m in (n + 1) % 3, (n + 2) % 3:  # the connections the other nodes hold
                api.post_to_connection(ConnectionId=ids[m], Data=f"from {node.name}".encode())
                assert recv(clients[m]) == f"from {node.name}"
                got = api.get_connection(ConnectionId=ids[m])
                assert got["Identity"]["SourceIp"] == "127.0.0.1"
                assert got["ConnectedAt"] and got["LastActiveAt"]

        a, b, c = nodes.started
        a.management().delete_connection(ConnectionId=ids[2])
        assert closed_with(clients[2]) == 1000
        wait_until(lambda: b.listed() == sorted(ids[:2]), TIMEOUT, "c's client unlisted")
        for node in nodes.started:
            api = node.management()
            with pytest.raises(api.exceptions.GoneException):
                api.post_to_connection(ConnectionId=ids[2], Data=b"too late")


# -- nodes that die, drain, or lose Redis ----------------------------------------------


def test_a_killed_node(tmp_path: Path) -> None:
    """kill -9 of one node: the clients of the others lose nothing; a send to a client of
    the dead node is a 410 at once; the survivors purge its records within --node-timeout
    (and a heartbeat); a node restarted under the same id starts clean and serves."""
    app, _ = node_app(tmp_path)
    with ExitStack() as stack:
        server, nodes = stack.enter_context(gateway(app, tmp_path, "a", "b", "c"))
        a, b, c = nodes.started
        db = stack.enter_context(raw_redis(server))
        clients = {
            node.name: [stack.enter_context(node.connect()) for _ in range(2)] for node in (a, b, c)
        }
        ids = {name: [who_am_i(ws) for ws in wss] for name, wss in clients.items()}
        for wss in clients.values():
            for ws in wss:
                subscribe(ws, "news")

        os.kill(c.process.pid, signal.SIGKILL)
        c.process.wait()
        killed = time.monotonic()

        # The clients of the live nodes keep everything.
        publisher = clients["a"][0]
        for n in range(5):
            publisher.send(json.dumps({"action": "publish", "topic": "news", "data": f"m{n}"}))
            assert recv(publisher) == f"m{n}"
            for ws in (clients["a"][1], *clients["b"]):
                assert recv(ws) == f"m{n}"
            assert recv(publisher) == "delivered 4"

        # A client of the dead node is gone (410) at once, through any live node.
        for node in (a, b):
            api = node.management()
            started = time.monotonic()
            with pytest.raises(api.exceptions.GoneException):
                api.post_to_connection(ConnectionId=ids["c"][0], Data=b"anyone?")
            took = time.monotonic() - started
            assert took < CALL_TIMEOUT + 1, f"410 took {took:.2f} s"
            print(f"410 for a connection of a killed node, via {node.name}: {took * 1000:.0f} ms")

        # The survivors purge it: its connections, its place in the node and topic sets.
        wait_until(
            lambda: not node_records(db, "c", "news", ids["c"]),
            NODE_TIMEOUT + NODE_TIMEOUT / 3 + 2.0,
            "the dead node's records purged",
        )
        print(f"dead node purged {time.monotonic() - killed:.2f} s after kill -9")
        assert "node c is dead" in a.output() + b.output()
        assert sorted(a.listed()) == sorted(ids["a"] + ids["b"])

        # The same node id again: clean, and serving.
        (c2,) = nodes.start("c")
        assert not node_records(db, "c", "news", ids["c"])
        with c2.connect() as carol:
            carol_id = who_am_i(carol)
            assert db.smembers(f"{KEYS}node:c") == {carol_id}
            send_message(clients["a"][0], carol_id, "welcome back")
            assert recv(carol) == "welcome back"
            assert json.loads(recv(clients["a"][0])) == {"sent": carol_id}
            send_message(carol, ids["b"][0], "hello b")
            assert recv(clients["b"][0]) == "hello b"
            assert json.loads(recv(carol)) == {"sent": ids["b"][0]}
            with pytest.raises(c2.management().exceptions.GoneException):
                c2.management().post_to_connection(ConnectionId=ids["c"][1], Data=b"old")


def test_a_drained_node(tmp_path: Path) -> None:
    """SIGTERM drains a node: its clients are closed with 1001 and `$disconnect` runs once
    for each; the other nodes keep serving; nothing of the drained node is left in Redis."""
    app, disconnects = node_app(tmp_path)
    with ExitStack() as stack:
        server, nodes = stack.enter_context(gateway(app, tmp_path, "a", "b", "c"))
        a, b, c = nodes.started
        db = stack.enter_context(raw_redis(server))
        clients = {
            node.name: [stack.enter_context(node.connect()) for _ in range(2)] for node in (a, b, c)
        }
        ids = {name: [who_am_i(ws) for ws in wss] for name, wss in clients.items()}
        for wss in clients.values():
            for ws in wss:
                subscribe(ws, "news")

        b.process.send_signal(signal.SIGTERM)
        for ws in clients["b"]:
            assert closed_with(ws) == 1001
        assert b.process.wait(timeout=RUN_TIMEOUT) == 0
        recorded = disconnects.read_text().splitlines()
        assert sorted(recorded) == sorted(f"{connection_id} 1001" for connection_id in ids["b"])
        assert not node_records(db, "b", "news", ids["b"])
        assert "b" not in db.zrange(f"{KEYS}heartbeats", 0, -1)

        publisher = clients["a"][0]
        publisher.send(json.dumps({"action": "publish", "topic": "news", "data": "still here"}))
        for ws in (*clients["a"], *clients["c"]):
            assert recv(ws) == "still here"
        assert recv(publisher) == "delivered 4"
        send_message(clients["c"][0], ids["a"][1], "hello a")
        assert recv(clients["a"][1]) == "hello a"
        assert json.loads(recv(clients["c"][0])) == {"sent": ids["a"][1]}
        assert "does not answer" not in a.output() + c.output()


def test_redis_restart(tmp_path: Path) -> None:
    """Redis stops, then comes back on the same port: while it is down, a send across
    nodes fails soon with a clear error (no hang); once it is back the nodes reconnect by
    themselves and new connections reach each other across nodes. The restarted Redis is
    empty (it runs without persistence, as tests/redis_server.py starts it): what it held
    about the connections opened before is lost, so those are not reachable across nodes
    any more; no node process crashes."""
    app, _ = node_app(tmp_path)
    with ExitStack() as stack:
        server, nodes = stack.enter_context(gateway(app, tmp_path, "a", "b", "c"))
        a, b, c = nodes.started
        alice, carol = stack.enter_context(a.connect()), stack.enter_context(c.connect())
        carol_id = who_am_i(carol)

        server.stop()
        started = time.monotonic()
        send_message(alice, carol_id, "anyone?")
        answer = json.loads(recv(alice, timeout=CALL_TIMEOUT + 5))
        took = time.monotonic() - started
        assert "cannot reach Redis at 127.0.0.1" in answer["error"], answer
        print(f"send while Redis is down failed in {took:.2f} s: {answer['error']}")

        server.start_again()
        back = wait_until(
            lambda: all("is back" in node.output() for node in nodes.started),
            3 * TIMEOUT,
            "every node logs that Redis is back",
        )
        print(f"nodes listening again {back:.2f} s after Redis restarted")
        dave, erin = stack.enter_context(a.connect()), stack.enter_context(c.connect())
        dave_id, erin_id = who_am_i(dave), who_am_i(erin)
        send_message(dave, erin_id, "hello erin")
        assert recv(erin) == "hello erin"
        assert json.loads(recv(dave)) == {"sent": erin_id}
        send_message(erin, dave_id, "hello dave")
        assert recv(dave) == "hello dave"
        assert json.loads(recv(erin)) == {"sent": dave_id}
        bob = stack.enter_context(b.connect())
        subscribe(bob, "news")
        subscribe(erin, "news")
        dave.send(json.dumps({"action": "publish", "topic": "news", "data": "hi"}))
        assert recv(bob) == recv(erin) == "hi"
        assert recv(dave) == "delivered 2"
        time.sleep(NODE_TIMEOUT)  # long enough for a survivor's purge to have happened
        send_message(dave, erin_id, "still there?")
        assert recv(erin) == "still there?"
        for node in nodes.started:
            assert node.process.poll() is None, node.output()
            assert "is dead" not in node.output(), node.output()


def test_workers_on_redis_are_nodes(tmp_path: Path) -> None:
    """`--workers 2` with a Redis store: each worker is a node of its own on the shared
    port; connections held by different workers message each other, and `GET
    @connections` lists both workers' connections."""
    with ExitStack() as stack:
        server = stack.enter_context(RedisServer())
        nodes = Nodes(EXAMPLES / "direct.py", server, tmp_path)
        stack.callback(nodes.close)
        (supervisor,) = nodes.start("w", options=("--workers", "2"))
        db = stack.enter_context(raw_redis(server))

        clients: list[ClientConnection] = []
        ids: list[str] = []
        holders: list[str] = []
        while len(set(holders)) < 2:
            assert len(clients) < 60, f"every connection went to one worker: {holders}"
            ws = stack.enter_context(supervisor.connect())
            clients.append(ws)
            ids.append(who_am_i(ws))
            holders.append(str(db.hget(f"{KEYS}conn:{ids[-1]}", "node")))
        assert set(holders) == {"w-0", "w-1"}
        first, second = holders.index("w-0"), holders.index("w-1")
        send_message(clients[first], ids[second], "to w-1")
        assert recv(clients[second]) == "to w-1"
        send_message(clients[second], ids[first], "to w-0")
        assert recv(clients[first]) == "to w-0"
        assert supervisor.listed() == sorted(ids)
