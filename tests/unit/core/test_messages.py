"""The message assembler: frames in, messages or closes out, without a socket
(docs/compatibility.md §5 and §8)."""

from __future__ import annotations

import base64

from wsgate.core.close import (
    BINARY_NOT_SUPPORTED,
    INVALID_TEXT,
    MESSAGE_TOO_BIG,
    PROTOCOL_ERROR,
    TOO_MANY_FRAGMENTS,
)
from wsgate.core.messages import BINARY, CONTINUATION, TEXT, Message, MessageAssembler


def assembler(
    limit: int = 100, *, max_fragments: int = 10, binary_base64: bool = False
) -> MessageAssembler:
    return MessageAssembler(limit, max_fragments=max_fragments, binary_base64=binary_base64)


def test_a_text_message_in_three_frames_is_one_message() -> None:
    """Continuations join the first frame; nothing comes out before the final one."""
    messages = assembler()
    assert messages.frame(TEXT, False, b"he") is None
    assert messages.in_progress
    assert messages.frame(CONTINUATION, False, b"ll") is None
    assert messages.frame(CONTINUATION, True, b"o") == Message("hello", False)
    assert not messages.in_progress


def test_utf8_split_across_frames_is_decoded_whole() -> None:
    """A character cut between two frames is valid once joined."""
    encoded = "é€".encode()
    messages = assembler()
    assert messages.frame(TEXT, False, encoded[:1]) is None
    assert messages.frame(CONTINUATION, True, encoded[1:]) == Message("é€", False)


def test_invalid_utf8_closes_with_1007() -> None:
    assert assembler().frame(TEXT, True, b"\xff\xfe") is INVALID_TEXT


def test_a_message_over_the_limit_closes_with_1009_and_keeps_nothing() -> None:
    """The total over all frames counts, and the parts are dropped at once."""
    messages = assembler(limit=10)
    assert messages.frame(TEXT, False, b"x" * 6) is None
    assert messages.frame(CONTINUATION, False, b"x" * 5) is MESSAGE_TOO_BIG
    assert not messages.in_progress


def test_a_message_exactly_at_the_limit_is_delivered() -> None:
    messages = assembler(limit=10)
    assert messages.frame(TEXT, False, b"x" * 5) is None
    assert messages.frame(CONTINUATION, True, b"y" * 5) == Message("xxxxxyyyyy", False)


def test_binary_closes_with_1003_unless_the_api_takes_binary() -> None:
    assert assembler().frame(BINARY, True, b"\x00\x01") is BINARY_NOT_SUPPORTED
    accepted = assembler(binary_base64=True).frame(BINARY, True, b"\x00\x01")
    assert accepted == Message(base64.b64encode(b"\x00\x01").decode(), True)


def test_binary_in_frames_is_base64_of_the_whole() -> None:
    messages = assembler(binary_base64=True)
    assert messages.frame(BINARY, False, b"\x00") is None
    assert messages.frame(CONTINUATION, True, b"\xff") == Message("AP8=", True)


def test_a_continuation_without_a_first_frame_is_a_protocol_error() -> None:
    assert assembler().frame(CONTINUATION, True, b"x") is PROTOCOL_ERROR


def test_a_new_message_inside_another_is_a_protocol_error() -> None:
    messages = assembler()
    assert messages.frame(TEXT, False, b"a") is None
    assert messages.frame(TEXT, True, b"b") is PROTOCOL_ERROR


def test_the_assembler_is_reusable_after_a_message() -> None:
    messages = assembler()
    assert messages.frame(TEXT, True, b"one") == Message("one", False)
    assert messages.frame(TEXT, False, b"t") is None
    assert messages.frame(CONTINUATION, True, b"wo") == Message("two", False)


def test_a_message_in_too_many_frames_closes_with_1009_and_keeps_nothing() -> None:
    """Empty continuations cost nothing in bytes but a part each: their number is limited."""
    messages = assembler(max_fragments=3)
    assert messages.frame(TEXT, False, b"a") is None
    assert messages.frame(CONTINUATION, False, b"") is None
    assert messages.frame(CONTINUATION, False, b"") is None
    assert messages.frame(CONTINUATION, False, b"") is TOO_MANY_FRAGMENTS
    assert TOO_MANY_FRAGMENTS.code == 1009
    assert not messages.in_progress and messages.held_bytes == 0


def test_a_message_in_exactly_the_most_frames_is_delivered() -> None:
    messages = assembler(max_fragments=3)
    assert messages.frame(TEXT, False, b"a") is None
    assert messages.frame(CONTINUATION, False, b"b") is None
    assert messages.frame(CONTINUATION, True, b"c") == Message("abc", False)


def test_held_bytes_are_what_an_unfinished_message_keeps() -> None:
    """What the gateway counts against its budget for unfinished messages."""
    messages = assembler()
    assert messages.held_bytes == 0
    assert messages.frame(TEXT, False, b"abc") is None
    assert messages.held_bytes == 3
    assert messages.frame(CONTINUATION, False, b"de") is None
    assert messages.held_bytes == 5
    assert messages.frame(CONTINUATION, True, b"f") == Message("abcdef", False)
    assert messages.held_bytes == 0
    assert messages.frame(TEXT, False, b"x" * 60) is None
    assert messages.frame(CONTINUATION, False, b"x" * 60) is MESSAGE_TOO_BIG
    assert messages.held_bytes == 0
