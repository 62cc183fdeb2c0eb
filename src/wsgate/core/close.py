"""Close codes and the closes the gateway decides on, each with the reason `$disconnect` sees.

Pure: constants and a frozen record. Which close each event gets is described in
docs/compatibility.md §1.2 (lifecycle) and §8 (limits).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class CloseCode(IntEnum):
    """WebSocket close codes the gateway uses (RFC 6455 section 7.4.1)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005
    ABNORMAL = 1006
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011


def valid_from_peer(code: int) -> bool:
    """Whether a client may send `code` in its close frame (RFC 6455 section 7.4).

    1000-1003 and 1007-1014 are defined for the wire, 3000-4999 are for libraries and
    applications. 1005, 1006 and 1015 only report a close locally and are never sent;
    1004 and the rest are reserved or unassigned. Any other code is a protocol error.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


@dataclass(frozen=True, slots=True)
class Close:
    """A close the gateway decided on: the code and reason sent and seen by `$disconnect`."""

    code: int
    reason: str


#: `DeleteConnection` closes with 1000; `$disconnect` then reads this reason (observed on AWS).
CLOSED_BY_MANAGEMENT_API = Close(CloseCode.NORMAL, "Connection Closed Normally")
#: Idle timeout: observed on AWS as 1001 "Going away".
IDLE_TIMEOUT = Close(CloseCode.GOING_AWAY, "Going away")
#: 2-hour limit: AWS's code is not documented; 1001 "Going away" as the spec recommends.
DURATION_LIMIT = Close(CloseCode.GOING_AWAY, "Going away")
#: Inbound message over the size limit (documented 1009).
MESSAGE_TOO_BIG = Close(CloseCode.MESSAGE_TOO_BIG, "Message too big")
#: A message in more frames than `Limits.max_message_fragments`: too big to process in
#: so many pieces. 1009, like the message and frame quotas, so a client has one code to
#: handle for "this message is over a limit".
TOO_MANY_FRAGMENTS = Close(CloseCode.MESSAGE_TOO_BIG, "Message too big: too many frames")
#: An unfinished message's frame that would take the gateway past
#: `Limits.max_total_unfinished_message_bytes` (all connections together). 1008, not 1009:
#: the message is within every quota of its own; what it breaks is the gateway's policy
#: of how much all clients may hold in unfinished messages at once.
UNFINISHED_MESSAGES_FULL = Close(
    CloseCode.POLICY_VIOLATION, "Too many unfinished messages on the gateway"
)
#: Inbound binary frame while binary messages are not accepted (documented 1003).
BINARY_NOT_SUPPORTED = Close(CloseCode.UNSUPPORTED_DATA, "Binary frames are not supported")
#: A text message that is not UTF-8 (RFC 6455 section 8.1).
INVALID_TEXT = Close(CloseCode.INVALID_PAYLOAD, "Invalid UTF-8 in text message")
#: Frames out of order (a continuation without a start, a new message inside another), a
#: frame with RSV bits set (no extension is negotiated), a close code a client may not send.
PROTOCOL_ERROR = Close(CloseCode.PROTOCOL_ERROR, "Protocol error")
#: A client that stopped reading while messages kept coming: dropped without a close
#: frame (it would wait behind megabytes the client does not read). Not an AWS behaviour
#: anyone has documented; wsgate's choice.
SLOW_CONSUMER = Close(CloseCode.ABNORMAL, "Send buffer full: the client is not reading")
#: The gateway failed handling a frame (a bug): that connection closes, the others go on.
INTERNAL_ERROR = Close(CloseCode.INTERNAL_ERROR, "Internal server error")
#: Gateway shutting down.
SHUTDOWN = Close(CloseCode.GOING_AWAY, "Going away")
#: A client that vanished without a close frame: RFC 6455's 1006 (AWS's value is unknown).
ABNORMAL_CLOSURE = Close(CloseCode.ABNORMAL, "")
#: A connection the store lost (its node was judged dead while cut off, or Redis restarted
#: empty): closed so the client reconnects and is recorded again. wsgate's choice.
RECORD_LOST = Close(CloseCode.GOING_AWAY, "Going away")
