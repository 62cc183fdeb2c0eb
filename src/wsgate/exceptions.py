"""Errors raised by wsgate.

The tree::

    WsgateError
    ├── ConfigError            the app, a route table or an option is wrong (found at start-up)
    │   └── TargetError        `wsgate serve TARGET` could not load TARGET
    ├── GoneError              the connection is closed, unknown, or not open yet (HTTP 410)
    ├── PayloadTooLargeError   a message is over the message size limit (HTTP 413)
    └── StoreError             the connection store failed

Every error carries what a person needs to fix it in its message; `GoneError` also keeps
the connection id so handlers can clean up after it, as Lambda apps do when
`PostToConnection` answers 410.
"""

from __future__ import annotations


class WsgateError(Exception):
    """Root of every error wsgate raises on purpose."""


class ConfigError(WsgateError):
    """The app, a route table, a selection expression or an option is invalid."""


class TargetError(ConfigError):
    """`wsgate serve TARGET` could not find or import the app."""


class GoneError(WsgateError):
    """The connection is not open: unknown id, closed, or still inside `$connect`.

    API Gateway answers these cases with HTTP 410 `GoneException`.
    """

    status_code = 410

    def __init__(self, connection_id: str) -> None:
        super().__init__(f"connection {connection_id!r} is gone (closed, unknown or not open yet)")
        self.connection_id = connection_id


class PayloadTooLargeError(WsgateError):
    """A message to send is larger than the message size limit (HTTP 413)."""

    status_code = 413

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes is over the {limit}-byte limit")
        self.size = size
        self.limit = limit


class StoreError(WsgateError):
    """The connection store could not do what was asked."""
