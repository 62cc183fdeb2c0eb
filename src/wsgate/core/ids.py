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


class RandomPool:
    """`os.urandom`-quality bytes, fetched a few kilobytes at a time.

    Every message needs three ids; one `getrandom` syscall per id showed in profiles.
    Drawing slices from a buffer refilled from the same source keeps the ids exactly as
    unguessable for a fraction of the cost. Not thread-safe: use one per event loop.
    """

    __slots__ = ("_buffer", "_offset", "_source")

    def __init__(self, source: RandomBytes, size: int = 4096) -> None:
        self._source = source
        self._buffer = source(size)
        self._offset = 0

    def __call__(self, n: int) -> bytes:
        end = self._offset + n
        if end > len(self._buffer):
            self._buffer = self._source(max(len(self._buffer), n))
            self._offset, end = 0, n
        chunk = self._buffer[self._offset : end]
        self._offset = end
        return chunk
