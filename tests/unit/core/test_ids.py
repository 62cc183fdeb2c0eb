"""Identifier formats (docs/compatibility.md §3.7): event ids and API ids."""

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


def test_id_pool_makes_the_ids_event_id_makes_from_the_same_bytes() -> None:
    """Each pooled id is `event_id` of 11 bytes of the source; the 12th of each block is skipped."""
    from wsgate.core.ids import IdPool

    data = os.urandom(12 * 4)
    pool = IdPool(fixed(data), batch=4)
    made = [pool() for _ in range(4)]
    expected = [event_id(fixed(data[12 * i : 12 * i + 11])) for i in range(4)]
    assert sorted(made) == sorted(expected)


def test_id_pool_refills_and_ids_are_well_formed_and_distinct() -> None:
    """The pool draws again when empty; ids keep the format and do not repeat."""
    from wsgate.core.ids import IdPool

    calls: list[int] = []

    def source(n: int) -> bytes:
        calls.append(n)
        return os.urandom(n)

    pool = IdPool(source, batch=8)
    made = {pool() for _ in range(20)}
    assert calls == [96, 96, 96]
    assert len(made) == 20
    for value in made:
        assert re.fullmatch(r"[A-Za-z0-9_-]{15}=", value)
        assert len(base64.urlsafe_b64decode(value)) == 11
