"""Redis store: connections and subscriptions shared by every gateway node that uses it.

    store = open_store("redis://127.0.0.1:6379/0?prefix=wsgate")
    store = RedisStore("rediss://:PASSWORD@redis.example:6380", node="gw-1")

Layout. Every key starts with the hash-tagged prefix `{P}:`, P being the URL's `prefix`
(`{wsgate}:` by default):

| key | type | holds |
| --- | --- | --- |
| `{P}:conn:ID` | hash | the record: connectedAt, lastActiveAt, sourceIp, stage, domainName, |
| | | node; userAgent and authorizer (JSON) only when set |
| `{P}:conns` | set | every connection id |
| `{P}:node:NODE` | set | ids of the connections NODE holds |
| `{P}:nodes` | set | nodes that hold at least one connection |
| `{P}:topics:ID` | set | topics of connection ID |
| `{P}:topic:TOPIC` | set | nodes with at least one subscriber to TOPIC |
| `{P}:subs:NODE:TOPIC` | set | ids of NODE's connections subscribed to TOPIC |
| `{P}:heartbeats` | sorted set | node -> when its heartbeat expires (ms, Redis' clock) |

A publish reads `{P}:topic:TOPIC` and then, per node, `{P}:subs:NODE:TOPIC`: what it
reads is what it delivers, never a scan. Node ids may not contain `:`, so `subs:NODE:TOPIC`
is unambiguous whatever the topic holds.

Atomicity. Every write is one Lua script: `remove_connection` drops the record, its
topics and its place in every set together; `subscribe` checks that the connection exists
in the same step; `touch` writes lastActiveAt for many ids in one round trip and only to
records that exist, so it never brings back a removed connection; replacing a record that
moved to another node moves its subscriptions with it.

Cluster. All keys of one prefix share the hash tag `{P}`, so they live in one slot and a
script may touch any of them. Each script declares `{P}:conns` as its key, which routes it
to that slot; the other keys it builds from the prefix are in the same slot. What is
checked (tests/integration/test_store_redis.py): every key the store writes starts with
`{P}:` and hashes (CRC16, as Redis Cluster does) to the slot of `{P}:conns`. What is not:
running against a Redis Cluster, since the store connects to one server (or the master
the Sentinels name) and does not speak the cluster protocol. One prefix is one slot.

Heartbeats are entries of a sorted set scored by their expiry on Redis' own clock (`TIME`)
rather than one key with a TTL per node, so `live_nodes()` is one read, not a scan, and the
gateway nodes' clocks never matter. Each heartbeat forgets the entries that have expired;
a dead node is one in `nodes()` but not in `live_nodes()`.

Reconnecting. A command on a connection that broke (a restarted or failed-over server) is
sent once more on a fresh one, and redis-py reloads a script the server forgot; the store
keeps working without being reopened. Errors become `StoreError`. Past `max_connections`
(100 by default) a call waits for a free connection rather than failing.

Event loops. redis-py's asyncio connections belong to the loop that opened them, and the
Lambda mode calls the store from a loop per invocation thread. The store therefore keeps a
client per loop: the one it was opened on, and one more for each other loop that calls it,
opened on first use and closed on that loop by `close()`.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

from wsgate.exceptions import ConfigError, StoreError
from wsgate.store.base import ConnectionRecord

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.sentinel import Sentinel
    from redis.commands.core import AsyncScript

URL_FORM = (
    "redis://[:PASSWORD@]HOST[:PORT][/DB][?prefix=NAME], rediss://… (TLS) or "
    "redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT…]/SERVICE[/DB][?prefix=NAME]"
)
#: Read when the URL has no password, so it need not be written in a URL.
PASSWORD_VARIABLE = "WSGATE_REDIS_PASSWORD"
DEFAULT_PREFIX = "wsgate"
#: redis-py options the URL may carry besides `prefix`.
_PASSED_OPTIONS = frozenset(
    {
        "db",
        "socket_timeout",
        "socket_connect_timeout",
        "max_connections",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
    }
)
#: A dead server should fail a call in seconds, not hang the handler that made it.
_TIMEOUTS = {"socket_connect_timeout": 5.0, "socket_timeout": 10.0}
#: Connections to Redis per process (the URL's `max_connections` overrides). Past it a
#: call waits for a free one (up to socket_timeout) instead of failing: a burst of
#: handlers (fifty publishes from one client) must not fail with "Too many connections".
_POOL_SIZE = 100
#: Connections purge_node() drops per script run, so Redis is never blocked for long.
PURGE_BATCH = 200

# -- Lua --------------------------------------------------------------------------------
# Every script gets KEYS[1] = {P}:conns (it routes the script to the prefix's slot) and
# ARGV[1] = "{P}:"; the keys it builds from ARGV[1] share KEYS[1]'s hash tag.

_DROP = """
local function drop(p, id)
  local conn = p .. 'conn:' .. id
  local node = redis.call('HGET', conn, 'node')
  if not node then return 0 end
  local topics = p .. 'topics:' .. id
  for _, topic in ipairs(redis.call('SMEMBERS', topics)) do
    local subs = p .. 'subs:' .. node .. ':' .. topic
    redis.call('SREM', subs, id)
    if redis.call('SCARD', subs) == 0 then redis.call('SREM', p .. 'topic:' .. topic, node) end
  end
  redis.call('DEL', conn, topics)
  redis.call('SREM', p .. 'conns', id)
  local held = p .. 'node:' .. node
  redis.call('SREM', held, id)
  if redis.call('SCARD', held) == 0 then redis.call('SREM', p .. 'nodes', node) end
  return 1
end
"""

# ARGV: prefix, id, node, then field, value, ... (node among them)
_ADD = """
local p, id, node = ARGV[1], ARGV[2], ARGV[3]
local conn = p .. 'conn:' .. id
local old = redis.call('HGET', conn, 'node')
redis.call('DEL', conn)
redis.call('HSET', conn, unpack(ARGV, 4))
redis.call('SADD', KEYS[1], id)
redis.call('SADD', p .. 'node:' .. node, id)
redis.call('SADD', p .. 'nodes', node)
if old and old ~= node then
  local held = p .. 'node:' .. old
  redis.call('SREM', held, id)
  if redis.call('SCARD', held) == 0 then redis.call('SREM', p .. 'nodes', old) end
  for _, topic in ipairs(redis.call('SMEMBERS', p .. 'topics:' .. id)) do
    local subs = p .. 'subs:' .. old .. ':' .. topic
    redis.call('SREM', subs, id)
    if redis.call('SCARD', subs) == 0 then redis.call('SREM', p .. 'topic:' .. topic, old) end
    redis.call('SADD', p .. 'subs:' .. node .. ':' .. topic, id)
    redis.call('SADD', p .. 'topic:' .. topic, node)
  end
end
return 1
"""

# ARGV: prefix, then id, epoch ms, id, epoch ms, ...
_TOUCH = """
local p = ARGV[1]
for i = 2, #ARGV, 2 do
  local conn = p .. 'conn:' .. ARGV[i]
  if redis.call('EXISTS', conn) == 1 then redis.call('HSET', conn, 'lastActiveAt', ARGV[i + 1]) end
end
return 1
"""

# ARGV: prefix, id
_REMOVE = _DROP + "return drop(ARGV[1], ARGV[2])\n"

# ARGV: prefix, id, topic
_SUBSCRIBE = """
local p, id, topic = ARGV[1], ARGV[2], ARGV[3]
local node = redis.call('HGET', p .. 'conn:' .. id, 'node')
if not node then return 0 end
redis.call('SADD', p .. 'topics:' .. id, topic)
redis.call('SADD', p .. 'subs:' .. node .. ':' .. topic, id)
redis.call('SADD', p .. 'topic:' .. topic, node)
return 1
"""

# ARGV: prefix, id, topic
_UNSUBSCRIBE = """
local p, id, topic = ARGV[1], ARGV[2], ARGV[3]
local node = redis.call('HGET', p .. 'conn:' .. id, 'node')
if not node then return 0 end
if redis.call('SREM', p .. 'topics:' .. id, topic) == 0 then return 0 end
local subs = p .. 'subs:' .. node .. ':' .. topic
redis.call('SREM', subs, id)
if redis.call('SCARD', subs) == 0 then redis.call('SREM', p .. 'topic:' .. topic, node) end
return 1
"""

# ARGV: prefix, topic. Every subscriber, node by node, in one round trip.
_SUBSCRIBERS = """
local p, topic = ARGV[1], ARGV[2]
local ids = {}
for _, node in ipairs(redis.call('SMEMBERS', p .. 'topic:' .. topic)) do
  for _, id in ipairs(redis.call('SMEMBERS', p .. 'subs:' .. node .. ':' .. topic)) do
    ids[#ids + 1] = id
  end
end
return ids
"""

# ARGV: prefix, node, batch size. Returns {dropped, still held}.
_PURGE = (
    _DROP
    + """
local p, node = ARGV[1], ARGV[2]
local held = p .. 'node:' .. node
local dropped = 0
for _, id in ipairs(redis.call('SRANDMEMBER', held, tonumber(ARGV[3]))) do
  if drop(p, id) == 0 then redis.call('SREM', held, id) else dropped = dropped + 1 end
end
local left = redis.call('SCARD', held)
if left == 0 then redis.call('SREM', p .. 'nodes', node) end
return {dropped, left}
"""
)


def _server_ms() -> str:
    return "local t = redis.call('TIME')\nlocal now = t[1] * 1000 + math.floor(t[2] / 1000)\n"


# ARGV: prefix, node, ttl ms. Forgets heartbeats that have expired; 1 if the node's own
# was still live (no gap), else 0.
_HEARTBEAT = (
    _server_ms()
    + """
local key = ARGV[1] .. 'heartbeats'
local was = redis.call('ZSCORE', key, ARGV[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
redis.call('ZADD', key, now + tonumber(ARGV[3]), ARGV[2])
if was and tonumber(was) > now then return 1 end
return 0
"""
)

# ARGV: prefix
_LIVE_NODES = (
    _server_ms()
    + "return redis.call('ZRANGEBYSCORE', ARGV[1] .. 'heartbeats', '(' .. now, '+inf')\n"
)

# ARGV: prefix, node
_IS_ALIVE = (
    _server_ms()
    + """
local expires = redis.call('ZSCORE', ARGV[1] .. 'heartbeats', ARGV[2])
if expires and tonumber(expires) > now then return 1 end
return 0
"""
)


class RedisStore:
    """Connections and subscriptions in Redis, with per-node indexes for cross-node delivery."""

    def __init__(self, url: str, *, node: str | None = None) -> None:
        """`url`: see `open_store` (`redis://`, `rediss://`, `redis+sentinel://`).

        `node` is this gateway's id: `open()` then purges connections a previous run with
        the same id left behind, and `connection_ids()`/`subscribers()` answer for this
        node's connections only (what it delivers to itself; other nodes' through
        `server/redis_bus.py`). It may also be set later, before `open()`."""
        _require_redis()
        self.url = url
        self.node = node
        self._options = _parse_url(url)
        self.prefix = self._options.prefix
        #: Every key starts with this: the hash-tagged prefix and a colon.
        self.keys_start = "{" + self.prefix + "}:"
        self._routing_key = self.keys_start + "conns"
        self._client: Redis | None = None
        self._sentinel: Sentinel | None = None
        #: The loop `open()` ran on, whose client is `_client`.
        self._home: asyncio.AbstractEventLoop | None = None
        #: Clients of the other loops that called the store (see "Event loops" above).
        self._guests: dict[asyncio.AbstractEventLoop, tuple[Redis, Sentinel | None]] = {}
        self._guests_lock = threading.Lock()
        self._scripts: dict[str, AsyncScript] = {}

    def __repr__(self) -> str:
        return f"RedisStore({self.where}, prefix={self.prefix!r}, node={self.node!r})"

    @property
    def where(self) -> str:
        """host:port (or the Sentinel service), for messages; never the password."""
        return self._options.where

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and check that Redis answers; purge what a previous run of `node` left."""
        if self._client is not None:
            return
        self._client, self._sentinel = self._options.connect()
        self._home = asyncio.get_running_loop()
        self._scripts = {
            name: self._client.register_script(source)
            for name, source in (
                ("add", _ADD),
                ("touch", _TOUCH),
                ("remove", _REMOVE),
                ("subscribe", _SUBSCRIBE),
                ("unsubscribe", _UNSUBSCRIBE),
                ("subscribers", _SUBSCRIBERS),
                ("purge", _PURGE),
                ("heartbeat", _HEARTBEAT),
                ("live_nodes", _LIVE_NODES),
                ("is_alive", _IS_ALIVE),
            )
        }
        try:
            async with self.errors():
                await self._client.ping()
            if self.node:
                await self.purge_node(self.node)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the connections, each on its own loop; the store can be opened again."""
        with self._guests_lock:
            clients = list(self._guests.items())
            self._guests.clear()
        if self._client is not None and self._home is not None:
            clients.append((self._home, (self._client, self._sentinel)))
        self._client = self._sentinel = self._home = None
        self._scripts = {}
        for loop, (client, sentinel) in clients:
            await _run_on(loop, _close_client(client, sentinel))

    # -- plumbing ----------------------------------------------------------------------

    def redis_client(self) -> Redis:
        """The client of the calling event loop (see "Event loops" above)."""
        if self._client is None:
            raise StoreError(f"Redis store at {self.where} is not open")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._client
        if loop is self._home:
            return self._client
        with self._guests_lock:
            guest = self._guests.get(loop)
            if guest is None:
                for gone in [other for other in self._guests if other.is_closed()]:
                    del self._guests[gone]  # its sockets closed with it
                guest = self._guests[loop] = self._options.connect()
        return guest[0]

    async def _run(self, script: str, *args: str | int) -> Any:
        """Run one of the store's scripts with the prefix as its first argument."""
        client = self.redis_client()
        async with self.errors():
            return await self._scripts[script](
                keys=[self._routing_key], args=[self.keys_start, *args], client=client
            )

    @asynccontextmanager
    async def errors(self) -> AsyncIterator[None]:
        """The one place redis-py errors become StoreErrors a person can act on."""
        from redis import exceptions as redis_errors

        try:
            yield
        except redis_errors.AuthenticationError as exc:
            raise StoreError(
                f"Redis at {self.where} refused the credentials: {exc}; put the password in "
                f"the store URL (redis://:PASSWORD@HOST) or in {PASSWORD_VARIABLE}"
            ) from exc
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            raise StoreError(f"cannot reach Redis at {self.where}: {exc}") from exc
        except redis_errors.RedisError as exc:
            raise StoreError(f"Redis at {self.where} failed: {exc}") from exc

    async def _members(self, key: str) -> list[str]:
        client = self.redis_client()
        async with self.errors():
            members = cast("set[str]", await client.smembers(key))
        return list(members)

    # -- the Store protocol ------------------------------------------------------------

    async def add_connection(self, record: ConnectionRecord) -> None:
        _check_node(record.node)
        fields = _to_hash(record)
        await self._run(
            "add",
            record.connection_id,
            record.node,
            *_pairs(fields),
        )

    async def touch(self, activity: dict[str, int]) -> None:
        if activity:
            await self._run("touch", *_pairs(activity))

    async def remove_connection(self, connection_id: str) -> bool:
        return bool(await self._run("remove", connection_id))

    async def get_connection(self, connection_id: str) -> ConnectionRecord | None:
        client = self.redis_client()
        async with self.errors():
            key = f"{self.keys_start}conn:{connection_id}"
            fields = cast("dict[str, str]", await client.hgetall(key))
        return _from_hash(connection_id, fields) if fields else None

    async def connection_ids(self) -> list[str]:
        """With a `node`: the connections it holds (each node delivers to its own, as a
        worker's store holds its own part of the table); without: every connection."""
        if self.node:
            return await self.connection_ids_on(self.node)
        return await self._members(self._routing_key)

    async def subscribe(self, connection_id: str, topic: str) -> bool:
        return bool(await self._run("subscribe", connection_id, topic))

    async def unsubscribe(self, connection_id: str, topic: str) -> bool:
        return bool(await self._run("unsubscribe", connection_id, topic))

    async def subscribers(self, topic: str) -> list[str]:
        """With a `node`: its subscribers of `topic` (see `connection_ids`); without: all."""
        if self.node:
            return await self.subscribers_on(topic, self.node)
        return list(await self._run("subscribers", topic))

    async def topics(self, connection_id: str) -> list[str]:
        return sorted(await self._members(f"{self.keys_start}topics:{connection_id}"))

    # -- nodes: what cross-node delivery reads -----------------------------------------

    async def subscribers_on(self, topic: str, node: str) -> list[str]:
        """Ids of `node`'s connections subscribed to `topic`."""
        return await self._members(f"{self.keys_start}subs:{node}:{topic}")

    async def nodes_of_topic(self, topic: str) -> list[str]:
        """Nodes holding at least one subscriber of `topic`: where a publish must go."""
        return await self._members(f"{self.keys_start}topic:{topic}")

    async def connection_ids_on(self, node: str) -> list[str]:
        """Ids of the connections `node` holds."""
        return await self._members(f"{self.keys_start}node:{node}")

    async def nodes(self) -> list[str]:
        """Nodes holding at least one connection; those not in `live_nodes()` are dead."""
        return await self._members(f"{self.keys_start}nodes")

    async def purge_node(self, node: str) -> int:
        """Drop every connection `node` holds, with its subscriptions; how many this call
        dropped.

        For a node that died (its heartbeat expired) or restarts. Runs in batches of
        `PURGE_BATCH` connections, each batch atomic, so Redis never stalls on a large node;
        two callers at once each drop a share and none fails. Idempotent."""
        dropped = 0
        while True:
            # Each run takes up to a batch of ids off the node's set: the loop ends.
            batch, left = await self._run("purge", node, PURGE_BATCH)
            dropped += int(batch)
            if not left:
                return dropped

    async def heartbeat(self, node: str, ttl_seconds: float) -> bool:
        """Say `node` is alive for the next `ttl_seconds` (by Redis' clock); whether its
        previous heartbeat was still live. False after a gap: a first heartbeat, or Redis
        restarted empty, or was out of reach for longer than the ttl (and then the other
        nodes' heartbeats may be missing too, through no fault of theirs)."""
        _check_node(node)
        if ttl_seconds <= 0:
            raise ValueError(f"heartbeat ttl must be positive, got {ttl_seconds}")
        return bool(await self._run("heartbeat", node, round(ttl_seconds * 1000)))

    async def forget_heartbeat(self, node: str) -> None:
        """Drop `node`'s heartbeat: it stopped cleanly, so no node should ask it anything."""
        client = self.redis_client()
        async with self.errors():
            await client.zrem(f"{self.keys_start}heartbeats", node)

    async def live_nodes(self) -> list[str]:
        """Nodes whose heartbeat has not expired."""
        return list(await self._run("live_nodes"))

    async def is_alive(self, node: str) -> bool:
        """Whether `node`'s heartbeat has not expired."""
        return bool(await self._run("is_alive", node))


# -- records ----------------------------------------------------------------------------


def _to_hash(record: ConnectionRecord) -> dict[str, str]:
    fields = {
        "connectedAt": str(record.connected_at),
        "lastActiveAt": str(record.last_active_at),
        "sourceIp": record.source_ip,
        "stage": record.stage,
        "domainName": record.domain_name,
        "node": record.node,
    }
    if record.user_agent is not None:
        fields["userAgent"] = record.user_agent
    if record.authorizer is not None:
        fields["authorizer"] = json.dumps(record.authorizer, separators=(",", ":"))
    return fields


def _from_hash(connection_id: str, fields: dict[str, str]) -> ConnectionRecord:
    authorizer = fields.get("authorizer")
    return ConnectionRecord(
        connection_id,
        connected_at=int(fields["connectedAt"]),
        source_ip=fields["sourceIp"],
        last_active_at=int(fields["lastActiveAt"]),
        user_agent=fields.get("userAgent"),
        stage=fields.get("stage", ""),
        domain_name=fields.get("domainName", ""),
        node=fields.get("node", ""),
        authorizer=json.loads(authorizer) if authorizer is not None else None,
    )


def _check_node(node: str) -> None:
    if ":" in node:
        raise StoreError(f"node id {node!r} contains ':', which the Redis store's keys cannot hold")


# -- URLs -------------------------------------------------------------------------------


class _Options:
    """What a store URL says: where Redis is, how to log in, and the key prefix."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        params = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(params) - _PASSED_OPTIONS - {"prefix"})
        if unknown:
            raise ConfigError(
                f"unknown option {', '.join(unknown)} in store URL {_hide_password(url)}: "
                f"use {URL_FORM}; redis-py options allowed: {', '.join(sorted(_PASSED_OPTIONS))}"
            )
        repeated = sorted(name for name, values in params.items() if len(values) > 1)
        if repeated:
            raise ConfigError(
                f"option {', '.join(repeated)} given twice in store URL {_hide_password(url)}"
            )
        option = {name: values[0] for name, values in params.items()}
        self.prefix = option.pop("prefix", DEFAULT_PREFIX)
        if not self.prefix or any(c in self.prefix for c in "{}") or self.prefix.endswith(":"):
            raise ConfigError(
                f"bad key prefix {self.prefix!r} in store URL {_hide_password(url)}: a name "
                "without braces or a trailing ':' (keys are {PREFIX}:...)"
            )
        self.scheme = parts.scheme
        self.password = (
            unquote(parts.password) if parts.password else os.environ.get(PASSWORD_VARIABLE)
        )
        self.username = unquote(parts.username) if parts.username else None
        hosts = parts.netloc.rpartition("@")[2]
        if not hosts:
            raise ConfigError(
                f"Redis store URL needs a host: {URL_FORM}, got {_hide_password(url)}"
            )
        if self.scheme == "redis+sentinel":
            path = [segment for segment in parts.path.split("/") if segment]
            if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
                raise ConfigError(
                    f"Sentinel store URL needs the service name: {URL_FORM}, "
                    f"got {_hide_password(url)}"
                )
            self.service = path[0]
            if len(path) == 2:
                option.setdefault("db", path[1])
            self.sentinels = [_host_port(host, url) for host in hosts.split(",")]
            self.where = f"Sentinel {hosts} service {self.service}"
        else:
            if parts.path not in ("", "/") and not parts.path[1:].isdigit():
                raise ConfigError(
                    f"the path of a Redis store URL is a database number, got {parts.path!r}"
                )
            host, port = _host_port(hosts, url)
            self.where = f"{host}:{port}"
            self.redis_url = urlunsplit(
                (parts.scheme, hosts, parts.path, "", "")
            )  # without credentials and our own options: those are passed apart
        self.passed = option

    def connect(self) -> tuple[Redis, Sentinel | None]:
        """A client (not connected yet) and, for Sentinel, the Sentinel it asks."""
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.asyncio.connection import parse_url
        from redis.asyncio.retry import Retry
        from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as ConnectionLost

        class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
            """The Sentinel's master, with a pool that waits when it is full."""

        # An idle pooled connection to a server that restarted is closed: a command on it
        # is sent once more on a fresh connection (not after a timeout: that could hang).
        retry = Retry(NoBackoff(), 1, supported_errors=(ConnectionLost,))
        common: dict[str, Any] = {"decode_responses": True, "retry": retry, **_TIMEOUTS}
        pool: dict[str, Any] = {
            "max_connections": _POOL_SIZE,
            "timeout": _TIMEOUTS["socket_timeout"],
        }
        if self.password is not None:
            common["password"] = self.password
        if self.username is not None:
            common["username"] = self.username
        if self.scheme == "redis+sentinel":
            # The same parsing redis-py applies to a URL's options.
            passed = parse_url("redis://h?" + urlencode(self.passed)) if self.passed else {}
            passed.pop("host", None)
            sentinel = Sentinel(  # type: ignore[no-untyped-call]
                self.sentinels,
                sentinel_kwargs={key: common[key] for key in _TIMEOUTS},
                **common,
            )
            master = sentinel.master_for(
                self.service,
                connection_pool_class=BlockingSentinelPool,
                **{**pool, **passed},
            )
            return master, sentinel
        url = self.redis_url + ("?" + urlencode(self.passed) if self.passed else "")
        return Redis.from_pool(BlockingConnectionPool.from_url(url, **common, **pool)), None


def _parse_url(url: str) -> _Options:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "redis+sentinel"):
        raise ConfigError(f"Redis store URL is {URL_FORM}, got {_hide_password(url)}")
    return _Options(url)


def _host_port(hostport: str, url: str) -> tuple[str, int]:
    host, colon, port = hostport.rpartition(":")
    if not colon or "]" in port:  # no port, or the tail of an IPv6 address
        host, port = hostport, "6379" if not url.startswith("redis+sentinel") else "26379"
    if not port.isdigit() or not host:
        raise ConfigError(f"bad host:port {hostport!r} in store URL {_hide_password(url)}")
    return host.strip("[]"), int(port)


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return repr(url)
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return repr(urlunsplit(parts._replace(netloc=netloc)))


def _require_redis() -> None:
    try:
        import redis.asyncio  # noqa: F401
    except ImportError as exc:
        raise ConfigError("the Redis store needs redis-py: pip install 'wsgate[redis]'") from exc


def _pairs(mapping: dict[str, str] | dict[str, int]) -> Iterable[str | int]:
    """key1, value1, key2, value2, ...: how Lua scripts take a mapping."""
    for key, value in mapping.items():
        yield key
        yield value


async def _close_client(client: Redis, sentinel: Sentinel | None) -> None:
    await client.aclose()
    if sentinel is not None:
        for server in sentinel.sentinels:
            await server.aclose()


async def _run_on(loop: asyncio.AbstractEventLoop, job: Coroutine[Any, Any, None]) -> None:
    """Await `job` on `loop`, whose connections it closes: here if it is the running loop,
    through it if it runs on another thread, on a worker thread if it is idle (a Lambda
    mode invocation thread between calls); never if it is closed (its sockets went with it)."""
    if loop.is_closed():
        job.close()
    elif loop is asyncio.get_running_loop():
        await job
    elif loop.is_running():
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(job, loop))
    else:
        await asyncio.to_thread(loop.run_until_complete, job)
