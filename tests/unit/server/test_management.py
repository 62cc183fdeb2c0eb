"""Parsing `@connections` management paths (docs/compatibility.md §6.1 and §6.2), and
which `Host` headers the management API answers."""

from __future__ import annotations

import pytest

from wsgate.exceptions import ConfigError
from wsgate.server.management import AllowedHosts, ManagementPath, parse_path


def test_boto3_path_with_stage() -> None:
    """boto3's `/{stage}/@connections/{id}` with `=` sent as %3D gives the decoded id."""
    assert parse_path("/dev/@connections/abc%3D", "dev") == ManagementPath("abc=")


def test_real_connection_id() -> None:
    """A real 16-character id round-trips through its percent-encoded form."""
    assert parse_path("/prod/@connections/R1kmxc2VNjMCFIA%3D", "prod") == ManagementPath(
        "R1kmxc2VNjMCFIA="
    )


def test_percent_encoded_at_sign() -> None:
    """`%40connections` (awscurl's form) is accepted like `@connections`."""
    assert parse_path("/prod/%40connections/R0oXAdfD0kwCH6w%3D", "prod") == ManagementPath(
        "R0oXAdfD0kwCH6w="
    )
    assert parse_path("/%40connections/abc", "prod") == ManagementPath("abc")


def test_stage_may_be_omitted() -> None:
    """Locally the `/{stage}` prefix may be left out."""
    assert parse_path("/@connections/abc%3D", "dev") == ManagementPath("abc=")


def test_wrong_stage_is_not_a_management_path() -> None:
    """A path under another stage is not ours: None."""
    assert parse_path("/prod/@connections/abc", "dev") is None
    assert parse_path("/prod/@connections", "dev") is None


def test_percent_encoded_stage() -> None:
    """The stage segment is compared after percent-decoding."""
    assert parse_path("/my%20stage/@connections/x", "my stage") == ManagementPath("x")


@pytest.mark.parametrize(
    "path",
    [
        "/dev/@connections",
        "/dev/@connections/",
        "/@connections",
        "/@connections/",
        "/dev/%40connections",
    ],
)
def test_collection_paths(path: str) -> None:
    """The collection, with or without a trailing slash or stage, has no connection id."""
    assert parse_path(path, "dev") == ManagementPath(None)


@pytest.mark.parametrize(
    "path",
    [
        "/dev/@connections/abc/extra",
        "/@connections/abc/extra",
        "/dev/dev/@connections/abc",
    ],
)
def test_extra_segments_rejected(path: str) -> None:
    """Paths with more segments than `/{stage}/@connections/{id}` are None."""
    assert parse_path(path, "dev") is None


@pytest.mark.parametrize("path", ["", "/", "/dev", "/dev/", "/dev/connections/abc", "/ws"])
def test_other_paths_rejected(path: str) -> None:
    """Paths without an `@connections` segment are None."""
    assert parse_path(path, "dev") is None


def test_query_string_ignored() -> None:
    """A query string does not become part of the id or the collection path."""
    assert parse_path("/dev/@connections/abc%3D?x=1&y=2", "dev") == ManagementPath("abc=")
    assert parse_path("/dev/@connections?limit=5", "dev") == ManagementPath(None)


def test_id_decoded_exactly_once() -> None:
    """The id is percent-decoded once: %253D stays %3D, %2B is '+', '+' stays '+'."""
    assert parse_path("/dev/@connections/abc%253D", "dev") == ManagementPath("abc%3D")
    assert parse_path("/dev/@connections/a%2Bb", "dev") == ManagementPath("a+b")
    assert parse_path("/dev/@connections/a+b", "dev") == ManagementPath("a+b")
    assert parse_path("/dev/@connections/a%2Fb", "dev") == ManagementPath("a/b")


# -- Host check against DNS rebinding ------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:8080",
        "LocalHost:1",
        "localhost.:8080",
        "127.0.0.1",
        "127.0.0.1:8080",
        "127.5.6.7:80",
        "[::1]",
        "[::1]:8080",
        "[0:0:0:0:0:0:0:1]:8080",
    ],
)
def test_loopback_hosts_are_answered(host: str) -> None:
    """localhost, 127.0.0.0/8 and ::1 are answered, with any port."""
    assert AllowedHosts().allows(host)


@pytest.mark.parametrize(
    "host",
    [
        None,
        "",
        "attacker.example",
        "attacker.example:8080",
        "127.0.0.1.nip.io:8080",
        "localhost.attacker.example",
        "evil-localhost:8080",
        "10.0.0.1:8080",
        "0.0.0.0:8080",
        "[::]:8080",
        "::1",  # an IPv6 Host must be bracketed
        "[::1",
        "[::1]x",
        "localhost:port",
        "localhost:8080:1",
        "2130706433",  # 127.0.0.1 as a number: not an address in a Host header
    ],
)
def test_other_hosts_are_refused(host: str | None) -> None:
    """A name a rebinding page controls (or a malformed Host) is not answered."""
    assert not AllowedHosts().allows(host)


def test_bind_host_is_answered() -> None:
    """The address or name the server was bound to is answered, with any port."""
    assert AllowedHosts(bind_host="192.168.1.5").allows("192.168.1.5:8080")
    assert AllowedHosts(bind_host="WSGATE.test").allows("wsgate.test")
    assert AllowedHosts(bind_host="fd00::5").allows("[fd00:0::5]:8080")
    assert not AllowedHosts(bind_host="192.168.1.5").allows("192.168.1.6:8080")


@pytest.mark.parametrize("bind_host", ["0.0.0.0", "::", ""])
def test_wildcard_bind_host_adds_nothing(bind_host: str) -> None:
    """Binding every interface does not make every Host answered."""
    hosts = AllowedHosts(bind_host=bind_host)
    assert not hosts.allows("192.168.1.5:8080")
    assert not hosts.allows("0.0.0.0:8080")
    assert hosts.allows("localhost:8080")


def test_allowed_hosts_are_answered() -> None:
    """Names and addresses in the allowlist are answered, with any port, in any case."""
    hosts = AllowedHosts(["wsgate.test", "192.168.1.5", "[fd00::5]", "box.lan."])
    for host in ("wsgate.test", "WSGATE.TEST:8080", "192.168.1.5:1", "[fd00::5]", "box.lan:80"):
        assert hosts.allows(host)
    assert not hosts.allows("other.test:8080")
    assert hosts.allows("localhost:8080")  # loopback is always answered


def test_allowed_host_wildcards() -> None:
    """`*.example.com` answers its subdomains; `*` answers every host."""
    hosts = AllowedHosts(["*.example.com"])
    assert hosts.allows("a.example.com:8080") and hosts.allows("a.b.example.com")
    assert not hosts.allows("example.com") and not hosts.allows("badexample.com")
    everything = AllowedHosts(["*"])
    assert everything.allows("attacker.example:8080") and everything.allows(None)


@pytest.mark.parametrize(
    "entry", ["", "wsgate.test:8080", "a b", "http://wsgate.test", "*.", "a*.example.com", 7]
)
def test_bad_allowed_host_is_refused(entry: object) -> None:
    """An allowlist entry that is not a name, address or wildcard is a ConfigError."""
    with pytest.raises(ConfigError, match="allowed host"):
        AllowedHosts([entry])  # type: ignore[list-item]


def test_allowed_hosts_as_one_string_is_refused() -> None:
    """`allowed_hosts="wsgate.test"` would allow each of its letters: a ConfigError."""
    with pytest.raises(ConfigError, match="allowed hosts must be a list"):
        AllowedHosts("wsgate.test")
