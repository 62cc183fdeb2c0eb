"""Parsing `@connections` management paths (docs/compatibility.md §6.1 and §6.2)."""

from __future__ import annotations

import pytest

from wsgate.server.management import ManagementPath, parse_path


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
