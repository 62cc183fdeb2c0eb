"""The @connections API, through boto3's real apigatewaymanagementapi client.

See docs/compatibility.md §6.
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import json
import queue
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import TIMEOUT, management_client, recv, run_gateway, ws_connect
from wsgate import App
from wsgate.exceptions import ConfigError
from wsgate.server.http import _is_loopback


def connected_app() -> tuple[App, queue.Queue[dict[str, Any]]]:
    """An app that reports every event it sees."""
    app = App()
    seen: queue.Queue[dict[str, Any]] = queue.Queue()
    app.on_connect(lambda event, context: seen.put(event))
    app.on_disconnect(lambda event, context: seen.put(event))
    return app, seen


def raw_request(
    port: int, method: str, path: str, body: bytes = b"", *, host: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request to the gateway; `host` forges the Host header (default 127.0.0.1:port)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers={} if host is None else {"Host": host})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_post_get_delete_with_boto3() -> None:
    """post_to_connection delivers, get_connection describes, delete_connection closes with 1000."""
    app, seen = connected_app()
    with run_gateway(app) as server, ws_connect(server.url, user_agent_header="test-agent/1") as ws:
        connection_id = seen.get(timeout=TIMEOUT)["requestContext"]["connectionId"]
        client = management_client(server)

        client.post_to_connection(ConnectionId=connection_id, Data=b'{"hello": 1}')
        assert recv(ws) == '{"hello": 1}'
        client.post_to_connection(ConnectionId=connection_id, Data="text too")
        assert recv(ws) == "text too"
        client.post_to_connection(ConnectionId=connection_id, Data=b"\xff\x00")
        assert recv(ws) == b"\xff\x00"  # not UTF-8: sent as a binary frame

        described = client.get_connection(ConnectionId=connection_id)
        assert described["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "test-agent/1"}
        now = datetime.datetime.now(datetime.UTC)
        assert abs((now - described["ConnectedAt"]).total_seconds()) < 60
        assert described["LastActiveAt"] >= described["ConnectedAt"]

        response = client.delete_connection(ConnectionId=connection_id)
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=TIMEOUT)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1000
        disconnect = seen.get(timeout=TIMEOUT)["requestContext"]
        assert disconnect["disconnectStatusCode"] == 1000
        assert disconnect["disconnectReason"] == "Connection Closed Normally"

        with pytest.raises(client.exceptions.GoneException):
            client.post_to_connection(ConnectionId=connection_id, Data=b"late")


@pytest.mark.parametrize("connection_id", ["R1kmxc2VNjMCFIA=", "not-an-id", "a/b+c="])
def test_unknown_connection_is_gone(connection_id: str) -> None:
    """Every operation on an unknown id raises GoneException, as boto3 users catch it."""
    with run_gateway(App()) as server:
        client = management_client(server)
        for call in (
            lambda: client.post_to_connection(ConnectionId=connection_id, Data=b"x"),
            lambda: client.get_connection(ConnectionId=connection_id),
            lambda: client.delete_connection(ConnectionId=connection_id),
        ):
            with pytest.raises(client.exceptions.GoneException) as info:
                call()
            assert info.value.response["ResponseMetadata"]["RequestId"]


def test_oversized_post_is_payload_too_large_and_connection_survives() -> None:
    """Data over 128 KB raises PayloadTooLargeException; the connection stays usable."""
    app, seen = connected_app()
    with run_gateway(app) as server, ws_connect(server.url) as ws:
        connection_id = seen.get(timeout=TIMEOUT)["requestContext"]["connectionId"]
        client = management_client(server)
        with pytest.raises(client.exceptions.PayloadTooLargeException):
            client.post_to_connection(ConnectionId=connection_id, Data=b"x" * 200_000)
        with pytest.raises(client.exceptions.PayloadTooLargeException):
            client.post_to_connection(ConnectionId=connection_id, Data=b"x" * 2_000_000)
        client.post_to_connection(ConnectionId=connection_id, Data=b"x" * 131072)
        assert len(recv(ws)) == 131072


def test_paths_with_and_without_stage_and_encoded_at() -> None:
    """Stage-less paths and %40connections reach the same API; a wrong stage is Forbidden."""
    app, seen = connected_app()
    with run_gateway(app) as server, ws_connect(server.url) as ws:
        connection_id = seen.get(timeout=TIMEOUT)["requestContext"]["connectionId"]
        encoded = connection_id.replace("=", "%3D")
        for path in (
            f"/dev/@connections/{encoded}",
            f"/@connections/{encoded}",
            f"/dev/%40connections/{encoded}",
        ):
            status, _, _ = raw_request(server.port, "POST", path, path.encode())
            assert status == 200
            assert recv(ws) == path
        status, headers, body = raw_request(server.port, "POST", f"/prod/@connections/{encoded}")
        assert status == 403
        assert json.loads(body) == {"message": "Forbidden"}


def test_bad_methods_and_paths_get_clear_errors() -> None:
    """Unsupported methods name the allowed ones; unknown paths are 403; plain GET is 426."""
    with run_gateway(App()) as server:
        status, headers, body = raw_request(server.port, "PUT", "/dev/@connections/abc%3D")
        assert status == 403
        assert headers["x-amzn-errortype"] == "ForbiddenException"
        assert "POST, GET or DELETE" in json.loads(body)["message"]

        status, _, body = raw_request(server.port, "GET", "/dev/@connections/a/b")
        assert status == 403

        status, _, body = raw_request(server.port, "GET", "/elsewhere")
        assert (status, json.loads(body)) == (403, {"message": "Forbidden"})

        status, headers, body = raw_request(server.port, "GET", "/dev")
        assert status == 426
        assert "WebSocket" in json.loads(body)["message"]


def test_list_connections_extension() -> None:
    """GET /@connections lists open connection ids (a wsgate extension used by the CLI)."""
    app, seen = connected_app()
    with run_gateway(app) as server:
        with ws_connect(server.url), ws_connect(server.url):
            ids = {seen.get(timeout=TIMEOUT)["requestContext"]["connectionId"] for _ in range(2)}
            status, _, body = raw_request(server.port, "GET", "/dev/@connections")
            assert status == 200
            assert json.loads(body) == {"connections": sorted(ids), "count": 2}


def test_list_connections_a_page_at_a_time() -> None:
    """`?limit=N` gives N ids in order and a `nextToken` that resumes after them; the last page
    has none; a bad limit is a 400 naming the range. The console pages this way."""
    app, seen = connected_app()
    with run_gateway(app) as server, contextlib.ExitStack() as clients:
        for _ in range(5):
            clients.enter_context(ws_connect(server.url))
        ids = sorted(seen.get(timeout=TIMEOUT)["requestContext"]["connectionId"] for _ in range(5))
        pages: list[list[str]] = []
        query = "limit=2"
        while True:
            status, _, body = raw_request(server.port, "GET", f"/dev/@connections?{query}")
            assert status == 200
            page = json.loads(body)
            assert page["count"] == 5
            pages.append(page["connections"])
            if "nextToken" not in page:
                break
            query = f"limit=2&nextToken={quote(page['nextToken'])}"
        assert pages == [ids[0:2], ids[2:4], ids[4:5]]
        for bad in ("0", "1001", "-1", "two"):
            status, headers, body = raw_request(
                server.port, "GET", f"/dev/@connections?limit={bad}"
            )
            assert status == 400
            assert headers["x-amzn-errortype"] == "BadRequestException"
            assert "1 to 1000" in json.loads(body)["message"]


def test_only_loopback_callers_are_management_callers() -> None:
    """The management API's caller check accepts loopback addresses only."""
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("127.5.0.1")
    assert not _is_loopback("10.0.0.1") and not _is_loopback("192.168.1.9")
    assert not _is_loopback(None) and not _is_loopback("not-an-ip")


@pytest.mark.parametrize("allow_remote_management", [False, True])
def test_rebinding_host_is_forbidden(allow_remote_management: bool) -> None:
    """A request for a name a web page controls (DNS rebinding) gets 403 and does nothing,
    even with allow_remote_management; loopback names are answered."""
    app, seen = connected_app()
    with (
        run_gateway(app, allow_remote_management=allow_remote_management) as server,
        ws_connect(server.url) as ws,
    ):
        connection_id = seen.get(timeout=TIMEOUT)["requestContext"]["connectionId"]
        path = "/dev/@connections/" + connection_id.replace("=", "%3D")
        for host in (f"attacker.example:{server.port}", "127.0.0.1.nip.io", "attacker.example"):
            for method, request_path in (("POST", path), ("GET", "/dev/@connections")):
                status, headers, body = raw_request(
                    server.port, method, request_path, b"forged", host=host
                )
                assert status == 403
                assert headers["x-amzn-errortype"] == "ForbiddenException"
                assert host.split(":")[0] in json.loads(body)["message"]
        for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", "localhost"):
            status, _, _ = raw_request(server.port, "POST", path, host.encode(), host=host)
            assert status == 200
            assert recv(ws) == host  # the forged posts above never arrived


def test_boto3_through_localhost_name() -> None:
    """boto3 pointed at http://localhost:PORT/dev works: its Host is a loopback name."""
    app, seen = connected_app()
    with run_gateway(app) as server, ws_connect(server.url) as ws:
        connection_id = seen.get(timeout=TIMEOUT)["requestContext"]["connectionId"]
        client = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=f"http://localhost:{server.port}/dev",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.post_to_connection(ConnectionId=connection_id, Data=b"via localhost")
        assert recv(ws) == "via localhost"


def test_allowed_hosts_are_answered_and_others_are_not() -> None:
    """`allowed_hosts` (`--allowed-host`) opens the management API to a name a proxy uses;
    a *.domain entry covers its subdomains; anything else still gets 403."""
    app, seen = connected_app()
    with (
        run_gateway(app, allowed_hosts=["gateway.internal", "*.example.org"]) as server,
        ws_connect(server.url) as ws,
    ):
        connection_id = seen.get(timeout=TIMEOUT)["requestContext"]["connectionId"]
        path = "/dev/@connections/" + connection_id.replace("=", "%3D")
        for host in ("gateway.internal", f"gateway.internal:{server.port}", "ws.example.org"):
            status, _, _ = raw_request(server.port, "POST", path, host.encode(), host=host)
            assert status == 200
            assert recv(ws) == host
        for host in ("gateway.internal.evil", "example.org.evil", "evil.example"):
            status, _, _ = raw_request(server.port, "POST", path, b"forged", host=host)
            assert status == 403


def test_a_bad_allowed_host_refuses_to_start() -> None:
    """An allowlist entry with a scheme or a port is a start-up error, not a silent no-match."""
    with pytest.raises(ConfigError), run_gateway(App(), allowed_hosts=["http://x.example"]):
        pass


def test_pages_of_other_sites_cannot_call_the_management_api() -> None:
    """A cross-site request from a page in the user's browser (it carries that page's
    Origin, and a form POST needs no preflight) gets 403 and does nothing; the gateway's
    own origin (its console) and callers without an Origin (boto3, curl) are answered."""
    app, seen = connected_app()
    with run_gateway(app) as server, ws_connect(server.url) as ws:
        connection_id = seen.get(timeout=TIMEOUT)["requestContext"]["connectionId"]
        path = "/dev/@connections/" + connection_id.replace("=", "%3D")
        own = f"127.0.0.1:{server.port}"
        for origin in ("http://evil.example", "null", f"http://localhost:{server.port}"):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
            try:
                conn.request("POST", path, body=b"forged", headers={"Origin": origin})
                assert conn.getresponse().status == 403, origin
            finally:
                conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
        try:
            conn.request("POST", path, body=b"console", headers={"Origin": f"http://{own}"})
            assert conn.getresponse().status == 200
        finally:
            conn.close()
        assert recv(ws) == "console"  # the forged posts never arrived
        status, _, _ = raw_request(server.port, "POST", path, b"no origin")
        assert status == 200
        assert recv(ws) == "no origin"
