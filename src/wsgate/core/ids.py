"""Identifier formats, as API Gateway writes them.

Randomness is passed in so the functions stay pure; the gateway passes `os.urandom`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

RandomBytes = Callable[[int], bytes]

_API_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def event_id(random_bytes: RandomBytes) -> str:
    """A connection, message or request id: 16 chars, URL-safe base64 of 11 random bytes.

    88 random bits make a connection id unguessable; the trailing `=` is why clients
    must percent-encode ids in `@connections` paths, as on AWS.
    """
    return base64.urlsafe_b64encode(random_bytes(11)).decode("ascii")


def api_id(random_bytes: RandomBytes) -> str:
    """A 10-character lowercase alphanumeric API id, like `fut2pn5a74`."""
    return "".join(_API_ID_ALPHABET[b % len(_API_ID_ALPHABET)] for b in random_bytes(10))


class IdPool:
    """Event ids in `event_id`'s format, made a batch at a time: one draw, one encode.

    Every message needs two ids; encoding each on its own showed in profiles. The batch
    is `batch` blocks of 12 bytes whose 12th byte is zero: the URL-safe base64 of such a
    block is 16 characters whose first 15 are exactly those of its 11 random bytes (the
    zero byte fills the padding bits), so each id is a slice plus "=". The ids are as
    unguessable as `event_id`'s. Not thread-safe: use one per event loop.
    """

    __slots__ = ("_batch", "_ids", "_source")

    def __init__(self, source: RandomBytes, batch: int = 256) -> None:
        self._source = source
        self._batch = batch
        self._ids: list[str] = []

    def __call__(self) -> str:
        if not self._ids:
            blocks = bytearray(self._source(12 * self._batch))
            blocks[11::12] = bytes(self._batch)
            text = base64.urlsafe_b64encode(blocks).decode("ascii")
            self._ids = [text[i : i + 15] + "=" for i in range(0, len(text), 16)]
        return self._ids.pop()
