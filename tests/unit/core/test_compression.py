"""permessage-deflate negotiation and codec (RFC 7692), without sockets."""

from __future__ import annotations

import os
import zlib

import pytest

from wsgate.core.close import INVALID_TEXT, MESSAGE_TOO_BIG, PROTOCOL_ERROR
from wsgate.core.compression import (
    CLIENT_WINDOW_BITS,
    SERVER_WINDOW_BITS,
    DeflateParameters,
    MessageDeflate,
    SharedDeflate,
    negotiate,
    parse_extensions,
)
from wsgate.core.messages import TEXT, Message, MessageAssembler, compressed_text

#: The offers real clients send, as they send them.
CHROME = "permessage-deflate; client_max_window_bits"
FIREFOX = "permessage-deflate"
SAFARI = "permessage-deflate; client_max_window_bits"  # WebKit's handshake string
WEBSOCKETS = "permessage-deflate; client_max_window_bits"  # python-websockets' client


FIREFOX_ANSWER = "permessage-deflate; server_max_window_bits=12"


def answer(*values: str) -> str | None:
    agreed = negotiate(values)
    return None if agreed is None else agreed.header


@pytest.mark.parametrize("offer", [CHROME, SAFARI, WEBSOCKETS])
def test_an_offer_of_any_client_window_gets_the_gateway_s(offer: str) -> None:
    """Chrome, Safari and websockets let the server pick the client's window: 12 bits;
    the server's own is 12 bits too, said whether asked or not (as API Gateway does)."""
    assert answer(offer) == (
        f"permessage-deflate; server_max_window_bits={SERVER_WINDOW_BITS}; "
        f"client_max_window_bits={CLIENT_WINDOW_BITS}"
    )
    agreed = negotiate([offer])
    assert agreed is not None
    assert agreed.inflate_window_bits == CLIENT_WINDOW_BITS


def test_firefox_s_bare_offer_is_answered_bare() -> None:
    """Without client_max_window_bits the answer may not name it: the client keeps 15."""
    assert answer(FIREFOX) == FIREFOX_ANSWER
    agreed = negotiate([FIREFOX])
    assert agreed is not None and agreed.inflate_window_bits == 15


def test_no_offer_no_extension() -> None:
    assert answer() is None
    assert answer("x-webkit-deflate-frame") is None
    assert answer("") is None


def test_no_context_takeover_both_ways_is_honoured() -> None:
    assert answer("permessage-deflate; server_no_context_takeover; client_no_context_takeover") == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=12"
    )


def test_window_bits_with_values_are_answered_at_most_the_gateway_s() -> None:
    assert answer("permessage-deflate; server_max_window_bits=10; client_max_window_bits=9") == (
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9"
    )
    agreed = negotiate(["permessage-deflate; server_max_window_bits=15; client_max_window_bits=15"])
    assert agreed == DeflateParameters(server_max_window_bits=12, client_max_window_bits=12)


def test_quoted_values_are_unquoted() -> None:
    assert answer('permessage-deflate; client_max_window_bits="10"') == (
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10"
    )


def test_the_first_acceptable_offer_wins() -> None:
    """An offer the gateway declines is skipped; the next one is answered."""
    offers = (
        "permessage-deflate; server_max_window_bits=8, "  # zlib cannot: declined
        "permessage-deflate; client_max_window_bits=10, permessage-deflate"
    )
    assert answer(offers) == (
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10"
    )


def test_offers_over_several_headers_are_one_list() -> None:
    assert answer("x-foo; bar=1", "permessage-deflate; server_no_context_takeover") == (
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=12"
    )


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; server_max_window_bits",  # a value is required
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=010",  # no leading zero
        "permessage-deflate; client_max_window_bits=ten",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; unknown_parameter",
        "permessage-deflate; client_max_window_bits=",
        'permessage-deflate; client_max_window_bits="10',  # unterminated quote
        "permessage-deflate;",
        "permessage-deflate; =10",
        "permessage deflate",
    ],
)
def test_an_invalid_offer_is_declined_not_refused(offer: str) -> None:
    """RFC 7692 section 5.1: decline it; the next offer still counts."""
    assert answer(offer) is None
    if '"' not in offer:  # an open quote runs to the end of the header
        assert answer(f"{offer}, permessage-deflate") == FIREFOX_ANSWER


def test_parse_keeps_order_and_marks_malformed_offers() -> None:
    assert parse_extensions(['a; b="x\\"y,z", , c;;, d=1, e; f=2']) == [
        ("a", (("b", 'x"y,z'),)),
        None,
        None,
        ("e", (("f", "2"),)),
    ]


def test_codec_round_trip_with_context_kept_both_ways() -> None:
    """What the gateway compresses a client inflates, message after message, and back."""
    agreed = DeflateParameters(client_max_window_bits=12)
    server = MessageDeflate(agreed)
    client_in = zlib.decompressobj(wbits=-15)
    client_out = zlib.compressobj(wbits=-12)
    for text in (b'{"a": 1}' * 200, b'{"a": 1}' * 200, os.urandom(3000)):
        payload = server.compress(text)
        assert not payload.endswith(b"\x00\x00\xff\xff")
        assert client_in.decompress(payload + b"\x00\x00\xff\xff") == text
        sent = client_out.compress(text) + client_out.flush(zlib.Z_SYNC_FLUSH)
        assert server.decompress(sent[:-4], 1 << 20) == text
    # Context kept: the repeat costs a fraction of the first time.
    again = MessageDeflate(agreed)
    text = os.urandom(500).hex().encode()
    first = again.compress(text)
    assert len(again.compress(text)) < len(first) // 10


def test_server_no_context_takeover_makes_each_message_stand_alone() -> None:
    """Each compressed message inflates with a fresh decompressor."""
    server = MessageDeflate(DeflateParameters(server_no_context_takeover=True))
    text = os.urandom(500).hex().encode()
    first = server.compress(text)
    assert len(server.compress(text)) == len(first)  # nothing remembered
    for _ in range(3):
        fresh = zlib.decompressobj(wbits=-15)
        assert fresh.decompress(server.compress(text) + b"\x00\x00\xff\xff") == text


def test_client_no_context_takeover_inflates_each_message_alone() -> None:
    server = MessageDeflate(DeflateParameters(client_no_context_takeover=True))
    for text in (b"first " * 50, b"second " * 50):
        fresh = zlib.compressobj(wbits=-15)
        sent = fresh.compress(text) + fresh.flush(zlib.Z_SYNC_FLUSH)
        assert server.decompress(sent[:-4], 1 << 20) == text


def test_a_shared_fan_out_message_fits_between_a_connection_s_own() -> None:
    """A fan-out's message, compressed once for every receiver, inflates in a client's
    running context, and the connection's own messages after it still do."""
    one, other = MessageDeflate(DeflateParameters()), MessageDeflate(DeflateParameters())
    client = zlib.decompressobj(wbits=-15)
    text = os.urandom(600).hex().encode()
    assert client.decompress(one.compress(text) + b"\x00\x00\xff\xff") == text
    shared = SharedDeflate(os.urandom(600).hex().encode())
    payload = shared.payload(one)
    assert shared.payload(other) is payload  # compressed once
    assert client.decompress(payload + b"\x00\x00\xff\xff") == shared.data
    for _ in range(2):
        assert client.decompress(one.compress(text) + b"\x00\x00\xff\xff") == text


def test_a_zip_bomb_stops_at_the_limit() -> None:
    """10 MB of zeros compress to 10 KB; inflating stops one byte past the limit."""
    bomb = zlib.compressobj(wbits=-15)
    payload = (bomb.compress(bytes(10 << 20)) + bomb.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert len(payload) < 32 * 1024
    assert MessageDeflate(DeflateParameters()).decompress(payload, 128 * 1024) is None


def _compressed(text: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return (compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def _assembler(limit: int = 1000) -> MessageAssembler:
    return MessageAssembler(
        limit, max_fragments=8, binary_base64=False, deflate=MessageDeflate(DeflateParameters())
    )


def test_the_assembler_inflates_a_compressed_message_in_fragments() -> None:
    payload = _compressed("héllo ".encode() * 100)
    assembler = _assembler()
    assert assembler.frame(TEXT, 0, payload[:10], True) is None
    assert assembler.frame(0, 1, payload[10:]) == Message("héllo " * 100, False)


def test_a_compressed_frame_inflates_within_the_frame_limit() -> None:
    """As if it had come uncompressed: a frame of 600 inflated bytes is over a 599-byte
    frame limit, though the message limit allows it in two frames."""

    def assembler() -> MessageAssembler:
        return MessageAssembler(
            1000,
            max_fragments=8,
            binary_base64=False,
            deflate=MessageDeflate(DeflateParameters()),
            max_frame_bytes=599,
        )

    assert assembler().frame(TEXT, 1, _compressed(b"x" * 600), True) is MESSAGE_TOO_BIG
    stream = zlib.compressobj(wbits=-15)
    first = stream.compress(b"x" * 500) + stream.flush(zlib.Z_SYNC_FLUSH)
    second = (stream.compress(b"y" * 500) + stream.flush(zlib.Z_SYNC_FLUSH))[:-4]
    two_frames = assembler()
    assert two_frames.frame(TEXT, 0, first, True) is None
    assert two_frames.frame(0, 1, second) == Message("x" * 500 + "y" * 500, False)


def test_the_message_limit_is_on_the_inflated_size() -> None:
    assert _assembler(limit=599).frame(TEXT, 1, _compressed(b"x" * 600), True) is MESSAGE_TOO_BIG
    assert _assembler(limit=600).frame(TEXT, 1, _compressed(b"x" * 600), True) == Message(
        "x" * 600, False
    )


def test_rsv1_on_a_continuation_and_data_that_is_not_deflate_close_1002() -> None:
    assembler = _assembler()
    assert assembler.frame(TEXT, 0, b"abc") is None
    assert assembler.frame(0, 1, b"def", True) is PROTOCOL_ERROR
    assert _assembler().frame(TEXT, 1, b"\xff\xff\xff\xff", True) is PROTOCOL_ERROR


def test_a_compressed_text_frame_without_an_assembler_follows_the_same_rules() -> None:
    """The one-frame path: text, or 1009 past the limit, 1007 for bad UTF-8, 1002 for
    data that is not deflate."""
    deflate = MessageDeflate(DeflateParameters())
    assert compressed_text(deflate, _compressed("héllo".encode()), 6) == "héllo"
    assert compressed_text(deflate, _compressed(b"x" * 7), 6) is MESSAGE_TOO_BIG
    assert compressed_text(MessageDeflate(DeflateParameters()), _compressed(b"\xff"), 6) is (
        INVALID_TEXT
    )
    assert compressed_text(MessageDeflate(DeflateParameters()), b"\xff" * 9, 6) is PROTOCOL_ERROR
