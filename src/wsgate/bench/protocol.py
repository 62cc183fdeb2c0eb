"""The messages of the benchmark, shared by the load generator and the raw servers.

Bodies are JSON, so wsgate and the Node handlers route them by `action` as real apps do;
their fixed layout lets the raw servers route by prefix and the load generator read a
publish's sequence number and send time by offset, without parsing JSON per delivery
(the load generator must not be the bottleneck).
"""

from __future__ import annotations

TOPIC = "bench"
MESSAGE_BYTES = 100

ECHO_PREFIX = b'{"action":"echo"'
SUBSCRIBE_PREFIX = b'{"action":"subscribe"'
PUBLISH_PREFIX = b'{"action":"publish"'
#: What a server answers to a subscribe once the subscription is in place.
SUBSCRIBED = b"ok"

_SEQ_DIGITS = 6
_TIME_DIGITS = 20
_PUBLISH_HEAD = PUBLISH_PREFIX + b',"topic":"' + TOPIC.encode() + b'","n":"'
#: Where a publish carries its sequence number and send time: data[SEQ_AT:SEQ_END] and
#: data[TIME_AT:TIME_END] are ASCII digits (strings in the JSON, so leading zeros are valid).
SEQ_AT = len(_PUBLISH_HEAD)
SEQ_END = SEQ_AT + _SEQ_DIGITS
TIME_AT = SEQ_END + len(b'","t":"')
TIME_END = TIME_AT + _TIME_DIGITS


def _padded(head: bytes, size: int) -> bytes:
    """`head` closed as a JSON object with a "pad" string so the whole is `size` bytes."""
    filler = size - len(head) - len(b',"pad":""}')
    return head + b',"pad":"' + b"x" * max(filler, 0) + b'"}'


def echo_message(size: int = MESSAGE_BYTES) -> bytes:
    """One echo request; every echo message is the same, the client times its own sends."""
    return _padded(ECHO_PREFIX, size)


def subscribe_message() -> bytes:
    """Subscribe the sender to the benchmark topic."""
    return SUBSCRIBE_PREFIX + b',"topic":"' + TOPIC.encode() + b'"}'


def publish_message(seq: int, sent_ns: int, size: int = MESSAGE_BYTES) -> bytes:
    """Publish number `seq`, stamped with the sender's monotonic clock in nanoseconds."""
    head = _PUBLISH_HEAD + b"%06d" % seq + b'","t":"' + b"%020d" % sent_ns + b'"'
    return _padded(head, size)
