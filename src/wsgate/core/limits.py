"""Gateway limits, with API Gateway's published WebSocket quotas as defaults.

Pure: the checks take the current time as an argument and return what the caller must
do (a close code and reason), never raise deep inside I/O.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from wsgate.core.close import DURATION_LIMIT, IDLE_TIMEOUT, Close
from wsgate.core.quotas import TokenBucket

Key = TypeVar("Key", bound=Hashable)

#: RFC 6455: a control frame's payload is at most 125 bytes; every frame limit allows one.
CONTROL_FRAME_BYTES = 125


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """How much a connection may do before the gateway closes it.

    Defaults are API Gateway's WebSocket quotas ("KB" read as 1024 bytes, as in the
    management API model's 131072-byte cap):

    - `max_message_bytes`: 128 KB message payload; inbound beyond it closes with 1009,
      a management `PostToConnection` beyond it is answered 413.
    - `max_frame_bytes`: 32 KB per inbound frame; beyond it closes with 1009, as API
      Gateway does. Browsers send each message as one frame, so for them this is the
      message limit; clients that fragment can send up to `max_message_bytes`. With
      permessage-deflate both limits count inflated bytes (a compressed frame is also
      within this limit on the wire): what passes here passes a gateway that counts
      either way.
    - `idle_timeout`: 10 minutes without a data message in either direction.
    - `max_connection_duration`: 2 hours, then the gateway closes the connection.
    - `handler_timeout`: 29 s integration timeout.
    - `max_concurrent_messages`: not an AWS quota. How many messages of one connection are
      dispatched at once; past it the gateway stops reading that socket until one
      finishes, so a flooding client slows itself down instead of growing memory.
    - `max_send_buffer_bytes`: not an AWS quota. How much sent data may wait for a client
      that does not read; past it the gateway drops the connection (`SLOW_CONSUMER`)
      rather than let one stalled client take the server's memory. Fan-outs (which do not
      wait), sends from other workers and many senders at once meet it.
    - `max_send_wait`: not an AWS quota. A `send` to a client whose buffer is full waits
      for it to read (back-pressure: a fast handler cannot outrun a reading client); a
      client that does not catch up within this many seconds is dropped (`SLOW_CONSUMER`)
      and the waiting sends fail with GoneError (410). Short, so a loop of sends to many
      clients is not held long by a stalled one.
    - `max_total_send_buffer_bytes`: not an AWS quota. How much sent data may wait for all
      the clients that do not read, together (each within `max_send_buffer_bytes`):
      256 MiB. Past it the gateway drops those holding the most (`SLOW_CONSUMER`) until
      the rest fit, so many slow clients cannot take the memory one may not.
    - `max_message_fragments`: not an AWS quota. How many frames one message may come in:
      1024, so a 128 KB message fits in frames of 128 bytes; beyond it closes with 1009
      (`TOO_MANY_FRAGMENTS`). Empty continuation frames cost no bytes but a part each.
    - `max_total_unfinished_message_bytes`: not an AWS quota. How much all connections
      together may hold in messages whose final frame has not come: 64 MiB (512 clients
      halfway through a 128 KB message). The frame that would pass it closes its
      connection with 1008 (`UNFINISHED_MESSAGES_FULL`).

    Throttling (docs/compatibility.md §8), off unless set. API Gateway's own limits are
    per account and region, shared by every API (500 new connections a second; 10,000
    requests a second with a burst of 5,000): set them to see locally what a busy
    account would refuse. Each rate is a token bucket; its burst defaults to one
    second's worth (at least 1).

    - `connect_rate` / `connect_burst`: new connections a second, for this gateway;
      beyond it the handshake is answered 429.
    - `message_rate` / `message_burst`: inbound messages a second, for each connection;
      beyond it the message gets a `Too Many Requests` error frame instead of a handler,
      and the connection stays open.
    - `max_connections`: not an AWS quota (API Gateway has none). Open connections on
      this gateway; beyond it the handshake is answered 429.
    """

    max_message_bytes: int = 128 * 1024
    max_frame_bytes: int = 32 * 1024
    idle_timeout: float = 600.0
    max_connection_duration: float = 7200.0
    handler_timeout: float = 29.0
    max_concurrent_messages: int = 32
    max_send_buffer_bytes: int = 4 * 1024 * 1024
    max_send_wait: float = 2.0
    max_total_send_buffer_bytes: int = 256 * 1024 * 1024
    max_message_fragments: int = 1024
    max_total_unfinished_message_bytes: int = 64 * 1024 * 1024
    connect_rate: float | None = None
    connect_burst: int | None = None
    message_rate: float | None = None
    message_burst: int | None = None
    max_connections: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_message_bytes",
            "max_concurrent_messages",
            "max_send_buffer_bytes",
            "max_total_send_buffer_bytes",
            "max_message_fragments",
            "max_total_unfinished_message_bytes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_frame_bytes < CONTROL_FRAME_BYTES:
            raise ValueError(
                f"max_frame_bytes must be at least {CONTROL_FRAME_BYTES} (the largest control"
                f" frame: close, ping, pong), got {self.max_frame_bytes}"
            )
        for name in ("idle_timeout", "max_connection_duration", "handler_timeout", "max_send_wait"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("connect_rate", "message_rate"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive (or None: no limit), got {value}")
        for name in ("connect_burst", "message_burst", "max_connections"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or None), got {value}")

    def connect_bucket(self, now: float) -> TokenBucket | None:
        """The gateway's bucket of new connections, or None when they are not throttled."""
        return _bucket(self.connect_rate, self.connect_burst, now)

    def message_bucket(self, now: float) -> TokenBucket | None:
        """A connection's bucket of inbound messages, or None when they are not throttled."""
        return _bucket(self.message_rate, self.message_burst, now)

    def expired(self, now: float, connected_at: float, last_active_at: float) -> Close | None:
        """The close to apply to a connection at `now` (seconds), or None if it may live on."""
        if now - connected_at >= self.max_connection_duration:
            return DURATION_LIMIT
        if now - last_active_at >= self.idle_timeout:
            return IDLE_TIMEOUT
        return None

    def sweep_interval(self) -> float:
        """How often the gateway should look for expired connections and handlers.

        A tenth of the shortest limit, at most a second: the 29 s handler timeout is
        enforced to within a second, a 0.3 s one (in tests) to within 0.05 s.
        """
        shortest = min(self.idle_timeout, self.max_connection_duration, self.handler_timeout)
        return max(0.05, min(1.0, shortest / 10))


def _bucket(rate: float | None, burst: int | None, now: float) -> TokenBucket | None:
    if rate is None:
        return None
    return TokenBucket(rate, burst if burst is not None else max(1, math.ceil(rate)), now)


def largest_first(sizes: Mapping[Key, int], budget: int) -> list[Key]:
    """Which holders to shed so that what the others hold fits `budget`: the largest
    first, as few as that takes (the gateway's rule for clients that do not read)."""
    total = sum(sizes.values())
    shed: list[Key] = []
    for key, size in sorted(sizes.items(), key=lambda item: item[1], reverse=True):
        if total <= budget:
            break
        shed.append(key)
        total -= size
    return shed
