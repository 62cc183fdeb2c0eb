"""Close codes a client may send (RFC 6455 section 7.4), decided without a socket."""

from __future__ import annotations

import pytest

from wsgate.core.close import valid_from_peer


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1011, 1014, 3000, 4999])
def test_codes_a_client_may_send(code: int) -> None:
    assert valid_from_peer(code)


@pytest.mark.parametrize(
    "code",
    [
        0,
        999,
        1004,  # reserved
        1005,  # "no status": never on the wire
        1006,  # "abnormal closure": never on the wire
        1015,  # "TLS failure": never on the wire
        1016,
        2999,
        5000,
        65535,
    ],
)
def test_codes_a_client_may_not_send(code: int) -> None:
    """Reserved, unassigned and local-only codes are a protocol error (answered 1002)."""
    assert not valid_from_peer(code)
