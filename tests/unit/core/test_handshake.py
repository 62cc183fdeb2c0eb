"""Reading the opening request head (core/handshake.py): pure, no sockets."""

from __future__ import annotations

import re

import pytest

from wsgate.core.handshake import (
    HandshakeError,
    RequestHead,
    canonical_upgrade,
    check_upgrade,
    head_length,
    parse_head,
)

UPGRADE = (
    b"GET /dev?room=1&room=2&empty= HTTP/1.1\r\n"
    b"Host: example.com:8080\r\n"
    b"Upgrade: WebSocket\r\n"
    b"Connection: keep-alive, Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\n"
    b"X-Custom: a:b\r\n"
    b"\r\n"
)


def test_head_length_waits_for_the_blank_line() -> None:
    assert head_length(UPGRADE[:-2]) == -1
    assert head_length(UPGRADE + b"\x81\x05hello") == len(UPGRADE)


def test_parse_head_keeps_names_order_and_raw_path() -> None:
    head = parse_head(UPGRADE)
    assert head.method == "GET"
    assert head.path == "/dev"
    assert head.query_string == "room=1&room=2&empty="
    assert head.headers[0] == ("Host", "example.com:8080")
    assert head.header("x-custom") == "a:b"  # case-insensitive; a colon in the value kept
    assert head.header("Missing") is None


def test_query_is_decoded_in_order_with_blank_values() -> None:
    head = parse_head(b"GET /dev?a=1&a=%20two&b=x+y&c= HTTP/1.1\r\nHost: h\r\n\r\n")
    assert head.query == [("a", "1"), ("a", " two"), ("b", "x y"), ("c", "")]


def test_upgrade_tokens_are_case_insensitive_lists() -> None:
    head = parse_head(UPGRADE)
    assert head.is_websocket_upgrade
    assert head.tokens("Connection") == {"keep-alive", "upgrade"}
    check_upgrade(head)  # a valid RFC 6455 upgrade: no error


def test_a_post_or_a_plain_get_is_not_an_upgrade() -> None:
    assert not parse_head(UPGRADE.replace(b"GET", b"POST", 1)).is_websocket_upgrade
    assert not parse_head(b"GET /dev HTTP/1.1\r\nHost: h\r\n\r\n").is_websocket_upgrade


@pytest.mark.parametrize(
    "head",
    [b"GET /dev\r\n\r\n", b"GET /dev HTTP/2\r\n\r\n", b"GET  /dev HTTP/1.1\r\n\r\n"],
)
def test_malformed_request_lines_are_400(head: bytes) -> None:
    with pytest.raises(HandshakeError) as error:
        parse_head(head)
    assert error.value.status == 400


def test_malformed_header_lines_are_400() -> None:
    for line in (b"NoColon", b": no name", b"Space : before colon"):
        with pytest.raises(HandshakeError):
            parse_head(b"GET / HTTP/1.1\r\n" + line + b"\r\n\r\n")


def _with(header: bytes, value: bytes | None) -> RequestHead:
    lines = [line for line in UPGRADE.split(b"\r\n") if not line.startswith(header + b":")]
    if value is not None:
        lines.insert(1, header + b": " + value)
    return parse_head(b"\r\n".join(lines))


@pytest.mark.parametrize(
    ("header", "value", "status"),
    [
        (b"Sec-WebSocket-Version", b"8", 426),
        (b"Sec-WebSocket-Version", None, 426),
        (b"Sec-WebSocket-Key", b"c2hvcnQ=", 400),  # 5 bytes, not 16
        (b"Sec-WebSocket-Key", b"not base64!!", 400),
        (b"Sec-WebSocket-Key", None, 400),
        (b"Connection", b"keep-alive", 400),
        (b"Content-Length", b"5", 400),
        (b"Transfer-Encoding", b"chunked", 400),
    ],
)
def test_check_upgrade_names_what_is_wrong(header: bytes, value: bytes | None, status: int) -> None:
    with pytest.raises(HandshakeError) as error:
        check_upgrade(_with(header, value))
    assert error.value.status == status
    if status == 426:
        assert ("Sec-WebSocket-Version", "13") in error.value.headers


def test_an_empty_body_is_allowed() -> None:
    check_upgrade(_with(b"Content-Length", b"0"))


@pytest.mark.parametrize(
    "version", [b"HTTP/1.0", b"HTTP/1.2", b"HTTP/1.1x", b"HTTP/1.", b"HTTP/1.1\0"]
)
def test_only_http_1_1_can_upgrade(version: bytes) -> None:
    """RFC 6455 section 4.1: HTTP/1.0 cannot upgrade; a malformed version is a 400 too."""
    with pytest.raises(HandshakeError) as error:
        check_upgrade(parse_head(UPGRADE.replace(b"HTTP/1.1", version, 1)))
    assert error.value.status == 400


@pytest.mark.parametrize(
    "change",
    [
        (b"Host: example.com:8080\r\n", b""),  # RFC 9112: an HTTP/1.1 request has a Host
        (b"Host: example.com:8080", b"Host:"),
        (b"Host: example.com:8080", b"Host: \0"),
        (b"Host: example.com:8080", b"Host: a\r\nHost: b"),
        (b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 8"),
        (b"Sec-WebSocket-Key: ", b"Sec-WebSocket-Key: AAAA\r\nSec-WebSocket-Key: "),
        (b"X-Custom: a:b", b"Content-Length: 0\r\nContent-Length: 5"),
        (b"X-Custom: a:b", b"X-Custom: a\0b"),
        (b"X-Custom: a:b", b"X-Custom: a\rb"),
        (b"X-Custom: a:b", b"X-Custom: a\nb"),
        (b"X-Custom: a:b", b"X Custom: a"),
        (b"X-Custom: a:b", b"X(Custom): a"),
        (b"X-Custom: a:b", b"X-Cust\xe9m: a"),
    ],
)
def test_heads_the_rfcs_refuse_are_400(change: tuple[bytes, bytes]) -> None:
    """A head RFC 9110/9112/6455 refuse never reaches `$connect`, nor its values the event."""
    with pytest.raises(HandshakeError) as error:
        check_upgrade(parse_head(UPGRADE.replace(*change, 1)))
    assert error.value.status == 400


def test_header_names_are_case_insensitive() -> None:
    """`host:` in lower case is a Host like any other: valid alone, a second one with `Host`."""
    lowered = re.sub(rb"(?m)^([^:\r\n]+):", lambda name: name[1].lower() + b":", UPGRADE)
    check_upgrade(parse_head(lowered))
    with pytest.raises(HandshakeError):
        check_upgrade(parse_head(UPGRADE.replace(b"X-Custom: a:b", b"host: other", 1)))


def test_canonical_upgrade_keeps_only_what_the_transport_checks() -> None:
    """The key is kept; the client's spelling of Connection/Upgrade and extras are not."""
    canonical = canonical_upgrade(parse_head(UPGRADE))
    assert canonical.startswith(b"GET / HTTP/1.1\r\n")
    assert b"Connection: Upgrade\r\n" in canonical
    assert b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" in canonical
    assert b"keep-alive" not in canonical and b"X-Custom" not in canonical
    reparsed = parse_head(canonical)
    check_upgrade(reparsed)
