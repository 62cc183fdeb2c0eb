"""Gateway limits: AWS quota defaults, validation, expiry, sweep interval.

See docs/compatibility.md §8.
"""

from __future__ import annotations

import pytest

from wsgate import Limits as ExportedLimits
from wsgate.core.close import (
    BINARY_NOT_SUPPORTED,
    CLOSED_BY_MANAGEMENT_API,
    DURATION_LIMIT,
    IDLE_TIMEOUT,
    MESSAGE_TOO_BIG,
    Close,
    CloseCode,
)
from wsgate.core.limits import Limits, largest_first


def test_defaults_are_aws_quotas() -> None:
    """Defaults: 128 KiB messages, 32 KiB frames, 10 min idle, 2 h duration, 29 s timeout."""
    limits = Limits()
    assert limits.max_message_bytes == 128 * 1024 == 131072
    assert limits.max_frame_bytes == 32 * 1024
    assert limits.idle_timeout == 600
    assert limits.max_connection_duration == 7200
    assert limits.handler_timeout == 29
    assert limits.max_concurrent_messages >= 1


def test_limits_is_exported() -> None:
    """`wsgate.Limits` is the core Limits class."""
    assert ExportedLimits is Limits


def test_limits_are_keyword_only_and_frozen() -> None:
    """Limits take keywords only and cannot be changed after creation."""
    limits = Limits(idle_timeout=5)
    assert limits.idle_timeout == 5
    with pytest.raises(TypeError):
        Limits(1024)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        limits.idle_timeout = 10  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_message_bytes", 0),
        ("max_message_bytes", -1),
        ("max_frame_bytes", 0),
        ("max_frame_bytes", 124),  # a close frame with a reason, or a ping, must fit
        ("max_concurrent_messages", 0),
        ("max_message_fragments", 0),
        ("max_total_unfinished_message_bytes", 0),
        ("max_total_send_buffer_bytes", 0),
        ("idle_timeout", 0),
        ("idle_timeout", -1.0),
        ("max_connection_duration", 0),
        ("handler_timeout", 0),
        ("handler_timeout", -29),
    ],
)
def test_invalid_values_raise(field: str, value: float) -> None:
    """Non-positive limits raise ValueError naming the field and the value."""
    with pytest.raises(ValueError, match=field) as info:
        Limits(**{field: value})
    assert str(value) in str(info.value)


def test_smallest_valid_values() -> None:
    """One byte, one message and tiny positive durations are accepted."""
    limits = Limits(
        max_message_bytes=1,
        max_concurrent_messages=1,
        idle_timeout=0.001,
        max_connection_duration=0.001,
        handler_timeout=0.001,
    )
    assert limits.max_message_bytes == 1


def test_expired_alive() -> None:
    """A young, active connection is not expired."""
    limits = Limits(idle_timeout=10, max_connection_duration=100)
    assert limits.expired(now=1009.9, connected_at=1000, last_active_at=1000) is None
    assert limits.expired(now=1095, connected_at=1000, last_active_at=1090) is None


def test_expired_idle() -> None:
    """No activity for idle_timeout closes with 1001 Going away."""
    limits = Limits(idle_timeout=10, max_connection_duration=100)
    close = limits.expired(now=1010, connected_at=1000, last_active_at=1000)
    assert close == IDLE_TIMEOUT == Close(1001, "Going away")


def test_expired_duration_even_when_active() -> None:
    """Reaching the maximum duration closes a connection even if it was just active."""
    limits = Limits(idle_timeout=10, max_connection_duration=100)
    close = limits.expired(now=1100, connected_at=1000, last_active_at=1099.9)
    assert close is DURATION_LIMIT
    assert close.code == CloseCode.GOING_AWAY


def test_expired_duration_wins_over_idle() -> None:
    """When both limits are hit, the duration limit is reported."""
    limits = Limits(idle_timeout=100, max_connection_duration=10)
    close = limits.expired(now=2000, connected_at=1000, last_active_at=1000)
    assert close is DURATION_LIMIT


def test_close_constants() -> None:
    """The documented close codes: 1000 for DeleteConnection, 1009 too big, 1003 binary."""
    assert CLOSED_BY_MANAGEMENT_API == Close(1000, "Connection Closed Normally")
    assert MESSAGE_TOO_BIG.code == 1009
    assert BINARY_NOT_SUPPORTED.code == 1003


def test_sweep_interval_default_is_one_second() -> None:
    """With AWS defaults the gateway sweeps once a second."""
    assert Limits().sweep_interval() == 1.0


def test_sweep_interval_follows_short_limits() -> None:
    """Short limits sweep at a tenth of the shortest one."""
    assert Limits(idle_timeout=5).sweep_interval() == pytest.approx(0.5)
    assert Limits(max_connection_duration=2).sweep_interval() == pytest.approx(0.2)


def test_sweep_interval_has_a_floor() -> None:
    """The sweep never runs more often than every 50 ms."""
    assert Limits(idle_timeout=0.01).sweep_interval() == 0.05
    assert Limits(max_connection_duration=0.1).sweep_interval() == 0.05


def test_sweep_interval_follows_a_short_handler_timeout() -> None:
    """Handler timeouts are enforced by the sweeper, so it runs at a tenth of the timeout."""
    assert Limits(handler_timeout=0.5).sweep_interval() == pytest.approx(0.05)
    assert Limits(handler_timeout=3).sweep_interval() == pytest.approx(0.3)


def test_gateway_wide_budgets_have_sensible_defaults() -> None:
    """A 128 KB message in 128-byte frames fits the fragment limit; the totals are far
    above one connection's own limits."""
    limits = Limits()
    assert limits.max_message_fragments * 128 >= limits.max_message_bytes
    assert limits.max_total_send_buffer_bytes == 256 * 1024 * 1024
    assert limits.max_total_send_buffer_bytes > limits.max_send_buffer_bytes
    assert limits.max_total_unfinished_message_bytes == 64 * 1024 * 1024
    assert limits.max_total_unfinished_message_bytes > limits.max_message_bytes


def test_largest_first_sheds_the_biggest_until_the_rest_fit() -> None:
    sizes = {"a": 10, "b": 50, "c": 30, "d": 20}
    assert largest_first(sizes, budget=60) == ["b"]  # 60 left: fits
    assert largest_first(sizes, budget=59) == ["b", "c"]
    assert largest_first(sizes, budget=110) == []
    assert largest_first(sizes, budget=0) == ["b", "c", "d", "a"]
    assert largest_first({}, budget=0) == []
