"""Socket.IO's framing as the load generator speaks it to the socket.io peer."""

from __future__ import annotations

import json

import pytest

from wsgate.bench.protocol import (
    SEQ_AT,
    SEQ_END,
    SUBSCRIBED,
    TIME_AT,
    TIME_END,
    echo_message,
    publish_message,
    subscribe_message,
)
from wsgate.bench.socketio_framing import CONNECT, PONG, Packet, decode, encode_event

BODIES = [echo_message(), subscribe_message(), publish_message(7, 123_456_789)]


def test_a_body_becomes_the_event_its_action_names() -> None:
    """The action names the event; the body is its one argument, verbatim."""
    body = subscribe_message()
    assert encode_event(body) == b'42["subscribe",' + body + b"]"
    assert encode_event(echo_message()).startswith(b'42["echo",{"action":"echo",')
    assert encode_event(publish_message(0, 1)).startswith(b'42["publish",{"action":"publish"')


@pytest.mark.parametrize("body", BODIES, ids=["echo", "subscribe", "publish"])
def test_socketio_encodes_a_decoded_body_back_byte_for_byte(body: bytes) -> None:
    """What python-socketio sends back (json.dumps, compact) is the body as it was sent."""
    name, data = json.loads(encode_event(body)[2:])
    reencoded = b'42["' + name.encode() + b'",' + json.dumps(data, separators=(",", ":")).encode()
    kind, payload = decode(reencoded + b"]")
    assert kind is Packet.EVENT
    assert payload == body


def test_a_delivered_publish_is_read_by_offset_as_from_any_server() -> None:
    """The fan-out scenario reads a delivery's sequence number and send time by offset."""
    _, payload = decode(encode_event(publish_message(42, 987_654_321)))
    assert int(payload[SEQ_AT:SEQ_END]) == 42
    assert int(payload[TIME_AT:TIME_END]) == 987_654_321


def test_a_string_argument_arrives_unquoted() -> None:
    """The peer's `emit("subscribed", "ok")` reaches the scenario as the usual acknowledgement."""
    assert decode(b'42["subscribed","ok"]') == (Packet.EVENT, SUBSCRIBED)


@pytest.mark.parametrize(
    ("packet", "expected"),
    [
        (b'0{"sid":"abc","upgrades":[],"pingInterval":25000}', Packet.OPEN),
        (b'40{"sid":"def"}', Packet.CONNECTED),
        (b'44{"message":"Unauthorized"}', Packet.CONNECT_ERROR),
        (b"2", Packet.PING),
        (b"1", Packet.CLOSE),
        (b"41", Packet.CLOSE),
        (b"6", Packet.OTHER),
    ],
)
def test_control_packets_are_told_apart(packet: bytes, expected: Packet) -> None:
    """Open, namespace accepted or refused, ping, close: what the session reacts to."""
    assert decode(packet)[0] is expected


def test_the_open_and_refusal_payloads_are_handed_on() -> None:
    """The handshake's JSON and a refusal's reason, for error messages."""
    assert decode(b'0{"sid":"abc"}')[1] == b'{"sid":"abc"}'
    assert decode(b'44{"message":"no"}')[1] == b'{"message":"no"}'


def test_the_client_joins_the_default_namespace_and_pongs() -> None:
    """`40` joins "/" (no namespace, no auth); `3` answers the server's ping."""
    assert CONNECT == b"40"
    assert PONG == b"3"
