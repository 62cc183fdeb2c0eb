"""Run a wsgate App as AWS Lambda functions behind API Gateway.

    # deployed by `wsgate template` / `wsgate deploy`: Handler wsgate.aws.lambda_handler.handler
    WSGATE_APP=app.py:app  WSGATE_TABLE=<DynamoDB table>

This module imports only the standard library and wsgate's runtime modules (never the
server or the CLI), so the deployment zip needs no third-party package: boto3 comes with
the Lambda runtime.

What the adapter adds around the app's handlers, so that they run unchanged on AWS:
- `$connect`: `None` becomes `{"statusCode": 200}` (as on the local gateway); on a 2xx the
  connection is written to the store; only `Sec-WebSocket-Protocol` is passed back.
- `$disconnect`: the connection and its subscriptions leave the store, then the handler runs.
- messages: API Gateway already picked the route (`requestContext.routeKey`); a two-way
  route's result goes back as the proxy response `body`. A handler that raises raises here
  too, so API Gateway sends the client its `Internal server error` frame.
- the authorizer (an event with `type: REQUEST` and `methodArn`, which API Gateway sends
  the authorizer function): the app's authorizer runs and its result goes back as is, a
  simple authorizer's `True`/`False`/`{"isAuthorized": ...}` as the equivalent IAM policy
  (API Gateway's WebSocket authorizers only take policies). An error raises here too, so
  `raise Exception("Unauthorized")` is API Gateway's 401.
- `wsgate.connections` is bound to `ApiGatewayConnections`: the store plus the
  `@connections` API at `https://{domainName}/{stage}`, or at `WSGATE_MANAGEMENT_ENDPOINT`
  when set, with the same placeholders (custom domains with a base path need it; the
  local gateway's Lambda mode uses `http://{domainName}/{stage}`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from wsgate import connection_api
from wsgate.app import App
from wsgate.aws.connections import ApiGatewayConnections, management_client
from wsgate.core.authorizer import simple_policy
from wsgate.core.events import Event
from wsgate.core.responses import connect_decision, route_reply
from wsgate.core.routing import CONNECT, DISCONNECT, NOT_JSON, parse_body
from wsgate.dispatch import call_handler
from wsgate.exceptions import ConfigError
from wsgate.store.base import ConnectionRecord, Store

log = logging.getLogger("wsgate.aws")

#: Where handlers' sends go; `{domainName}` and `{stage}` come from each event.
AWS_MANAGEMENT_ENDPOINT = "https://{domainName}/{stage}"


class LambdaAdapter:
    """A Lambda handler for every route of `app`: `adapter(event, context) -> response`.

    Thread-safe: each calling thread gets its own event loop, the way concurrent Lambda
    invocations each get their own execution environment (the local gateway's Lambda mode
    calls one adapter from many threads). So the store is called from several loops: the
    memory, SQLite and DynamoDB stores answer on whichever loop calls them.
    """

    def __init__(
        self,
        app: App,
        store: Store,
        *,
        management_endpoint: str = AWS_MANAGEMENT_ENDPOINT,
        client_factory: Callable[[str], Any] = management_client,
        max_concurrency: int = 32,
    ) -> None:
        self.app = app
        self.store = store
        self.management_endpoint = management_endpoint
        self.client_factory = client_factory
        self.max_concurrency = max_concurrency
        self._executor = ThreadPoolExecutor(max_concurrency, thread_name_prefix="wsgate-lambda")
        # The management API's calls get threads of their own: sync handlers that wait for
        # their sends must never hold every thread those sends need.
        self._posts = ThreadPoolExecutor(max_concurrency, thread_name_prefix="wsgate-post")
        self._clients: dict[str, Any] = {}
        self._local = threading.local()
        self._open_lock = threading.Lock()
        self._opened = False
        self._loops: list[asyncio.AbstractEventLoop] = []

    def as_app(self) -> App:
        """The app as API Gateway + Lambda run it, for the local gateway's Lambda mode.

        Every route, plus `$connect` and `$disconnect` (which keep the store current) and
        the authorizer, invokes this adapter from a thread, as API Gateway invokes a function.
        """
        app = self.app
        proxy = App(route_selection=app.route_selection, binary=app.binary, name=app.name)

        def invoke(event: Event, context: Any) -> Any:
            return self(dict(event), context)

        for key in {CONNECT, DISCONNECT, *app.routes}:
            route = app.routes.get(key)
            proxy.add_route(
                key, invoke, return_response=route is not None and route.return_response
            )
        authorizer = app.connect_authorizer
        if authorizer is not None:  # the adapter turns a simple result into a policy
            sources = [str(source) for source in authorizer.identity_sources]
            proxy.add_authorizer(invoke, identity_sources=sources)
        return proxy

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None:
            loop = self._local.loop = asyncio.new_event_loop()
            with self._open_lock:
                self._loops.append(loop)
        return loop.run_until_complete(self.handle(event, context))

    def close(self) -> None:
        """Close the store (if this adapter opened it), the event loops and the threads."""
        with self._open_lock:
            loops, self._loops = self._loops, []
            opened, self._opened = self._opened, False
        if opened:
            closer = asyncio.new_event_loop()
            try:
                closer.run_until_complete(self.store.close())
            finally:
                closer.close()
        for loop in loops:
            loop.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._posts.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> LambdaAdapter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _client(self, endpoint: str) -> Any:
        client = self._clients.get(endpoint)
        if client is None:
            client = self._clients[endpoint] = self.client_factory(endpoint)
        return client

    async def _ensure_open(self) -> None:
        if self._opened:
            return
        with self._open_lock:
            if not self._opened:
                await self.store.open()
                self._opened = True

    async def handle(self, raw: dict[str, Any], context: Any) -> Any:
        """Handle one API Gateway WebSocket event; return the Lambda proxy response (or,
        for the authorizer's event, the authorizer's policy)."""
        await self._ensure_open()
        request = raw["requestContext"]
        event_type = request["eventType"]
        route_key = request["routeKey"]
        body = raw.get("body")
        parsed = (
            parse_body(body)
            if isinstance(body, str) and not raw.get("isBase64Encoded")
            else NOT_JSON
        )
        event = Event.parsed(raw, parsed)
        endpoint = self.management_endpoint.format(
            domainName=request["domainName"], stage=request["stage"]
        )
        api = ApiGatewayConnections(
            self.store,
            lambda: self._client(endpoint),
            self._posts,
            max_concurrency=self.max_concurrency,
        )
        binding = connection_api.Binding(api, asyncio.get_running_loop())
        if raw.get("type") == "REQUEST" and "methodArn" in raw:
            authorizer = self.app.connect_authorizer
            if authorizer is None:
                raise ConfigError(
                    f"API Gateway invoked the $connect authorizer, which {self.app.name} does "
                    "not define; redeploy the template generated from this app"
                )
            result = await call_handler(authorizer.route, event, context, binding, self._executor)
            return simple_policy(result, raw["methodArn"]) if authorizer.simple else result

        route = self.app.routes.get(route_key)
        if event_type == "CONNECT":
            result = None
            if route is not None:
                result = await call_handler(route, event, context, binding, self._executor)
            decision = connect_decision(result)
            if decision.problem is not None:
                log.error("$connect: %s", decision.problem)
            if decision.accepted:
                await self.store.add_connection(_record(request))
            response: dict[str, Any] = {"statusCode": decision.status}
            if decision.subprotocol is not None:
                response["headers"] = {"Sec-WebSocket-Protocol": decision.subprotocol}
            return response

        if event_type == "DISCONNECT":
            await self.store.remove_connection(request["connectionId"])
            if route is not None:
                await call_handler(route, event, context, binding, self._executor)
            return {"statusCode": 200}

        if route is None:
            raise ConfigError(
                f"API Gateway invoked route {route_key!r}, which {self.app.name} does not define; "
                "redeploy the template generated from this app"
            )
        result = await call_handler(route, event, context, binding, self._executor)
        if not route.return_response:
            return {"statusCode": 200}
        reply = route_reply(result)
        if isinstance(reply, bytes):
            encoded = base64.b64encode(reply).decode("ascii")
            return {"statusCode": 200, "body": encoded, "isBase64Encoded": True}
        return {"statusCode": 200, "body": reply}


def _record(request: dict[str, Any]) -> ConnectionRecord:
    identity = request.get("identity") or {}
    return ConnectionRecord(
        connection_id=request["connectionId"],
        connected_at=int(request["connectedAt"]),
        last_active_at=int(request["connectedAt"]),
        source_ip=identity.get("sourceIp", ""),
        user_agent=identity.get("userAgent"),
        stage=request["stage"],
        domain_name=request["domainName"],
        node="aws",
        authorizer=request.get("authorizer"),
    )


_adapter: LambdaAdapter | None = None


def _adapter_from_environment() -> LambdaAdapter:
    from wsgate.importer import load_app
    from wsgate.store import open_store

    try:
        target, table = os.environ["WSGATE_APP"], os.environ["WSGATE_TABLE"]
    except KeyError as missing:
        raise ConfigError(f"the Lambda function needs the environment variable {missing}") from None
    return LambdaAdapter(
        load_app(target),
        open_store(f"dynamodb://{table}"),
        management_endpoint=os.environ.get("WSGATE_MANAGEMENT_ENDPOINT") or AWS_MANAGEMENT_ENDPOINT,
    )


def handler(event: dict[str, Any], context: Any) -> Any:
    """The Lambda entry point: loads the app once per execution environment (cold start)."""
    global _adapter
    if _adapter is None:
        _adapter = _adapter_from_environment()
    return _adapter(event, context)
