"""Identifier formats (spec section 3.7): event ids and API ids."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable

from wsgate.core.ids import api_id, event_id


def fixed(data: bytes) -> Callable[[int], bytes]:
    """A RandomBytes stand-in that returns a prefix of `data`."""

    def random_bytes(n: int) -> bytes:
        assert n <= len(data)
        return data[:n]

    return random_bytes


def test_event_id_format() -> None:
    """An event id is 16 URL-safe base64 chars ending in '=' that decode to 11 bytes."""
    for _ in range(200):
        value = event_id(os.urandom)
        assert len(value) == 16
        assert value.endswith("=")
        assert not value[:-1].endswith("=")
        assert re.fullmatch(r"[A-Za-z0-9_-]{15}=", value)
        assert len(base64.urlsafe_b64decode(value)) == 11


def test_event_id_uses_url_safe_alphabet() -> None:
    """Bytes that map to '+' and '/' in standard base64 give '-' and '_'."""
    value = event_id(fixed(b"\xfb\xff\xbf" * 4))
    assert value == "-_-_-_-_-_-_-_8="
    assert "+" not in value and "/" not in value


def test_event_id_encodes_the_random_bytes() -> None:
    """The id is exactly the encoding of the 11 random bytes it was given."""
    data = bytes(range(11))
    assert base64.urlsafe_b64decode(event_id(fixed(data))) == data


def test_event_ids_are_distinct() -> None:
    """Ids drawn from os.urandom do not repeat."""
    ids = {event_id(os.urandom) for _ in range(1000)}
    assert len(ids) == 1000


def test_api_id_format() -> None:
    """An API id is 10 lowercase alphanumeric characters."""
    for _ in range(200):
        assert re.fullmatch(r"[a-z0-9]{10}", api_id(os.urandom))


def test_api_id_maps_bytes_to_alphabet() -> None:
    """Each random byte picks one character of a-z0-9."""
    assert api_id(fixed(bytes(range(10)))) == "abcdefghij"
    assert api_id(fixed(bytes([26, 35, 36, 255, 0, 1, 2, 3, 4, 5]))) == "09adabcdef"


def test_api_ids_vary() -> None:
    """API ids drawn from os.urandom differ between calls."""
    assert len({api_id(os.urandom) for _ in range(50)}) > 1


def test_random_pool_serves_distinct_slices_and_refills() -> None:
    """The pool hands out consecutive slices of its source and refills when empty."""
    from wsgate.core.ids import RandomPool

    calls: list[int] = []

    def source(n: int) -> bytes:
        calls.append(n)
        return bytes(range(len(calls), len(calls) + n))

    pool = RandomPool(source, size=16)
    first, second = pool(11), pool(5)
    assert first + second == bytes(range(1, 17))
    assert pool(11) == bytes(range(2, 13))  # refilled from a second call
    assert calls == [16, 16]
    ids = {event_id(RandomPool(os.urandom)) for _ in range(200)}
    assert len(ids) == 200
