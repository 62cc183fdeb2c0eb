"""Throttling as API Gateway does it: token buckets, and log lines that do not flood.

Pure: every call takes the current time (seconds, monotonic) as an argument. A bucket
is four numbers, so one per connection costs nothing that grows; `take` is a couple of
float operations, cheap enough for each inbound message (docs/compatibility.md §8).
"""

from __future__ import annotations

#: How often a throttle's log line may repeat (seconds); what it refused meanwhile is
#: counted and reported in the next line.
LOG_INTERVAL = 10.0


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; each request takes one.

    A full bucket lets `burst` requests through at once, then `rate` a second: API
    Gateway's throttling algorithm (its rate and burst limits).
    """

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got {rate}, {burst}")
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> bool:
        """Take a token at `now`: True if there was one (let the request through)."""
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self.stamp = now
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True


class RefusalLog:
    """Counts a throttle's refusals and says when to log them: the first at once, then
    at most one line per `interval`, with how many were refused since the last line."""

    __slots__ = ("interval", "next_at", "refused")

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self.next_at = float("-inf")
        self.refused = 0

    def count(self, now: float) -> int | None:
        """Count one refusal; the number to log now (this one included), or None."""
        self.refused += 1
        if now < self.next_at:
            return None
        refused, self.refused = self.refused, 0
        self.next_at = now + self.interval
        return refused
