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
