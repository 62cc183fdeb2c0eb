"""The HTTP side of the port: the `@connections` API and answers to plain requests.

    GET  /{stage}, /{stage}/, /      WebSocket upgrade (served by the gateway through
                                     `server/front.py`; a plain GET: 426 Upgrade Required)
    *    [/{stage}]/@connections/... management API (loopback callers only, by default;
                                     expected `Host` headers only, always: AllowedHosts;
                                     SigV4-signed by a known key, with access keys)
    GET  /, [/{stage}]/@console,     the demo page (demo app only), the connections console
         /@static/...                (the management API's callers only): `server/pages.py`
    GET  /metrics, /health           Prometheus' text format; 200 serving, 503 draining
                                     (the management API's callers only)
    anything else                    403 {"message": "Forbidden"}, as API Gateway answers

`/` is a local convenience (`wsgate connect ws://127.0.0.1:8080`); on AWS the stage is
part of every URL.

The front door reads each connection's first request head; aiohttp reads the later ones of
a keep-alive connection, held to the same HEAD_TIMEOUT (see `http_runner`), and so is a
management request's body (`_read_body`).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from wsgate.server import front
from wsgate.server.gateway import Gateway
from wsgate.server.management import (
    AllowedHosts,
    ManagementAPI,
    ManagementResponse,
    forbidden,
    parse_path,
    payload_too_large,
)
from wsgate.server.observability import (
    METRICS_HINT,
    SCRAPE_TIMEOUT,
    Scrape,
    access,
    exposition,
    scrape,
)
from wsgate.server.pages import DEFAULT_PAGES, Page, Pages, find_page
from wsgate.server.peers import Peers
from wsgate.server.signatures import AccessKeys, SignatureRefused, verify


def _is_loopback(remote: str | None) -> bool:
    """Whether the socket's peer is this machine: `remote` is the address aiohttp took
    from the transport, never from a header a client can write (`X-Forwarded-For`)."""
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def _signature_refusal(
    keys: AccessKeys | None, request: web.Request, body: bytes
) -> ManagementResponse | None:
    """With access keys: the 403 for a call not signed by one of them, else None."""
    if keys is None:
        return None
    try:
        verify(
            keys,
            method=request.method,
            path=request.rel_url.raw_path,
            query_string=request.rel_url.raw_query_string,
            headers=request.headers.items(),
            body=body,
        )
    except SignatureRefused as refused:
        return forbidden(refused.message)
    return None


async def _read_body(request: web.Request) -> bytes | None:
    """The request's body, or None when it has not all come within HEAD_TIMEOUT: a
    `Content-Length` that never arrives must not hold the connection for ever."""
    try:
        async with asyncio.timeout(front.HEAD_TIMEOUT):
            return await request.read()
    except TimeoutError:
        return None


async def _body_timed_out(request: web.Request) -> web.StreamResponse:
    """408, then the connection closed at once, as a slow head is: the rest of the body
    would be read as the next request, and aiohttp would otherwise linger for it."""
    response = web.json_response(
        {"message": f"Request Timeout: the body did not come within {front.HEAD_TIMEOUT:g} s"},
        status=408,
    )
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()
    return response


def _page_response(page: Page, refused: ManagementResponse | None) -> web.Response:
    if refused is not None:
        return web.Response(status=refused.status, headers=refused.headers, body=refused.body)
    return web.Response(body=page.body, headers={**page.headers, "Content-Type": page.content_type})


def _health(state: Scrape) -> web.Response:
    """200 while serving (every worker, with `--workers N`); 503 once one is stopping, so
    a load balancer sends no new clients, or when one does not answer."""
    if state.draining:
        return web.json_response({"status": "draining"}, status=503)
    if state.unanswered:
        return web.json_response(
            {"status": "unresponsive", "workers": state.unanswered}, status=503
        )
    return web.json_response({"status": "serving"})


def _metrics(state: Scrape) -> web.Response:
    """The counts of every worker added up; 503 if one does not answer: a sum without it
    would drop, which Prometheus reads as its counters reset."""
    if state.unanswered:
        workers = ", ".join(map(str, state.unanswered))
        return web.Response(
            status=503,
            text=f"worker {workers} did not answer within {SCRAPE_TIMEOUT:g}s; no partial sums\n",
        )
    body = exposition(state.counts)
    if body is None:
        return web.Response(status=501, text=METRICS_HINT)
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


def socket_paths(stage: str) -> frozenset[str]:
    """The paths WebSocket clients connect to."""
    return frozenset({"/", f"/{stage}", f"/{stage}/"})


def http_runner(
    gateway: Gateway,
    *,
    allow_remote_management: bool = False,
    allowed_hosts: Iterable[str] = (),
    bind_host: str | None = None,
    access_keys: AccessKeys | None = None,
    pages: Pages = DEFAULT_PAGES,
    workers: Peers | None = None,
) -> web.AppRunner:
    """aiohttp serving every request that is not a WebSocket upgrade, on the sockets the
    front door hands over.

    After each answer, a keep-alive connection must send its next whole request head
    within HEAD_TIMEOUT or be closed: aiohttp's keep-alive timer only stops for a complete
    head, so a client sending one byte a second is cut off like an idle one.

    The management API answers a `Host` of loopback, of `bind_host` (the address the server
    listens on) and of `allowed_hosts`, whoever the caller is; see `AllowedHosts`. With
    `access_keys`, every call must also be SigV4-signed by one of them, as boto3 signs it
    (403 `ForbiddenException` with API Gateway's message otherwise).

    With `workers` (`wsgate serve --workers N`), `/metrics` and `/health` answer for every
    worker, whichever one the request reached.
    """
    hosts = AllowedHosts(allowed_hosts, bind_host=bind_host)
    management = ManagementAPI.of(gateway)
    paths = socket_paths(gateway.stage)

    def refusal(request: web.Request) -> ManagementResponse | None:
        """The 403 for a caller or `Host` the management API (and its console) refuses."""
        host = request.headers.get(hdrs.HOST)
        if not hosts.allows(host):
            return forbidden(
                f"the management API does not answer for host {host!r} (a guard against "
                "DNS rebinding); start wsgate with --allowed-host NAME to answer it"
            )
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None and urlsplit(origin).netloc.lower() != (host or "").lower():
            # A page of another site in the user's browser (a cross-site POST needs no
            # preflight); boto3 and curl send no Origin, the console sends its own.
            return forbidden(
                f"the management API does not answer pages of another origin ({origin!r}); "
                "call it from a program, or from the console it serves"
            )
        if not allow_remote_management and not _is_loopback(request.remote):
            return forbidden(
                "the management API only answers loopback callers; "
                "start wsgate with --allow-remote-management to change that"
            )
        return None

    async def route(request: web.Request) -> web.StreamResponse:
        raw_path = request.rel_url.raw_path
        path = parse_path(raw_path, gateway.stage)
        if path is not None:
            if (result := refusal(request)) is None:
                try:
                    body = await _read_body(request) if request.method == "POST" else b""
                except web.HTTPRequestEntityTooLarge:
                    result = payload_too_large(None, gateway.limits.max_message_bytes)
                else:
                    if body is None:
                        return await _body_timed_out(request)
                    refused = _signature_refusal(access_keys, request, body)
                    result = refused or await management.handle(
                        request.method, path, body, request.query
                    )
            if gateway.access_log:
                access(
                    "management",
                    connectionId=path.connection_id,
                    sourceIp=request.remote,
                    status=result.status,
                    method=request.method,
                    path=raw_path,
                )
            return web.Response(status=result.status, headers=result.headers, body=result.body)
        if request.path in ("/metrics", "/health") and request.method == "GET":
            if (result := refusal(request)) is not None:
                return web.Response(status=result.status, headers=result.headers, body=result.body)
            state = await scrape(gateway, workers)
            return _health(state) if request.path == "/health" else _metrics(state)
        is_upgrade = "websocket" in request.headers.get(hdrs.UPGRADE, "").lower()
        if request.method == "GET" and not is_upgrade:
            page = find_page(pages, request.path, gateway.stage)
            if page is not None:
                return _page_response(page, refusal(request) if page.guarded else None)
        if request.path in paths and request.method == "GET":
            if is_upgrade:
                # The front door only sees a connection's first request.
                return web.json_response(
                    {"message": "Bad Request: open a WebSocket on a new connection"},
                    status=400,
                )
            return web.json_response(
                {"message": "Upgrade Required: connect with a WebSocket client"},
                status=426,
                headers={hdrs.UPGRADE: "websocket"},
            )
        return web.json_response({"message": "Forbidden"}, status=403)

    # Bodies a little over the limit are read so the 413 can say their size.
    app = web.Application(client_max_size=2 * gateway.limits.max_message_bytes)
    # Every path, a decoded newline (a connection id's %0A) too: `.` alone stops at it.
    app.router.add_route("*", "/{tail:(?s:.*)}", route)
    return web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=1.0,
        keepalive_timeout=front.HEAD_TIMEOUT,
    )
