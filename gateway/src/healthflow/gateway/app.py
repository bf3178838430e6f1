"""The gateway's composition root: ``create_app(settings=None) -> FastAPI``.

Request path for a proxied route (see :mod:`healthflow.gateway.routes`):
match the route table (no match → 404 problem+json) → per-IP rate limit →
token verification when the route group requires it (401), permission check
(403) → per-subject rate limit (429) → forward (:mod:`healthflow.gateway.proxy`;
WebSockets :mod:`healthflow.gateway.websocket`).
Every error is RFC 9457 problem+json. The gateway itself answers
``/livez``, ``/readyz``, ``/metrics``, ``/openapi.json`` (the merged platform
document), ``/asyncapi.json`` (the events' AsyncAPI 3.0 document, generated from
:mod:`healthflow.contracts`), ``/docs`` (Swagger UI), ``/status`` (an HTML view) and
``GET /api/v1/platform/status`` (``platform:status`` permission).
``/metrics`` and the ``/readyz`` details (which upstreams answer, how rate limits
are kept) are internal: loopback callers or ``metrics_token`` holders only; anyone
else gets 404 for ``/metrics`` and ``/readyz`` without its ``checks``.
Concurrent requests and open streams are capped per address and per user
(:mod:`healthflow.gateway.caps`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, FastAPI, Request, WebSocket
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from healthflow.common import tracing
from healthflow.common.auth import Principal, declared_access, require
from healthflow.common.errors import (
    PROBLEM_JSON,
    BadRequest,
    NotFound,
    Problem,
    install_problem_handlers,
)
from healthflow.common.http import RequestContextMiddleware, valid_request_id
from healthflow.common.logs import setup_logging
from healthflow.common.permissions import Permission
from healthflow.common.revocation import wait_until_refused
from healthflow.common.settings import load_settings
from healthflow.contracts import asyncapi
from healthflow.gateway import caps, proxy, status
from healthflow.gateway.caps import ConcurrencyCaps, ConcurrencyMiddleware, kind_of
from healthflow.gateway.edge import Edge, bearer, reject_dot_segments
from healthflow.gateway.openapi import OpenAPIAggregator
from healthflow.gateway.ratelimit import EdgeRateLimiter, LimitState, fields
from healthflow.gateway.routes import Policy, Route
from healthflow.gateway.settings import GatewaySettings
from healthflow.gateway.websocket import UpstreamRefused, proxy_websocket

PROXY_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
EXPOSED_HEADERS = ["RateLimit", "RateLimit-Policy", "Retry-After", "X-Request-ID"]


class RateLimitFieldsMiddleware:
    """Adds the RateLimit fields recorded in ``scope["state"]["ratelimit"]`` to the
    response, unless the response already carries them (a 429 does)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_fields(message: Message) -> None:
            if message["type"] == "http.response.start":
                states: list[LimitState] = scope.get("state", {}).get("ratelimit", [])
                headers = list(message.get("headers", []))
                if states and not any(k.lower() == b"ratelimit" for k, _ in headers):
                    headers += [(k.lower().encode(), v.encode()) for k, v in fields(states)]
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_fields)


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS handling, with refused preflights answered as problem+json."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        detail = bytes(response.body).decode() or "CORS preflight refused"
        problem = BadRequest(f"{detail}: origin {request_headers.get('origin')!r} "
                             "is not on the gateway's allow-list or the request is not allowed")
        return JSONResponse(problem.body(), status_code=problem.status, media_type=PROBLEM_JSON)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """The gateway app for ``settings`` (default: from the environment).

    Raises:
        ConfigurationError: an environment variable is invalid (names it).
        ValueError: ``policy_overrides`` names an unknown group or field.
    """
    settings = settings or load_settings(GatewaySettings)
    setup_logging(settings.service_name, settings.log_level)
    tracing.setup_tracing(settings.service_name, settings.otel_exporter, settings.traces_file)
    edge = Edge(settings)
    platform, platform_paths = _platform_router(edge)
    app = FastAPI(title="HealthFlow gateway", version="1.0.0",
                  lifespan=_lifespan(edge, platform_paths),
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.table = edge.table
    app.state.breakers = edge.breakers
    app.state.verifier = edge.verifier
    install_problem_handlers(app)
    app.include_router(_probes_router(edge))
    app.include_router(_documents_router(edge))
    app.include_router(platform)
    app.include_router(_proxy_router(edge))  # last: it catches every other path
    _middleware(app, settings, edge.caps)
    tracing.instrument_app(app)
    return app


def _probes_router(edge: Edge) -> APIRouter:
    """``/livez`` (public), ``/readyz`` (status public, details internal), ``/metrics``
    (internal: 404 problem+json for anyone else)."""
    router = APIRouter(tags=["health"], include_in_schema=False)
    name = edge.settings.service_name

    @router.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok", "service": name}

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        state = request.app.state
        ready, checks = await edge.readiness(state.proxy.client, state.limiter.mode)
        body: dict[str, Any] = {"status": "ready" if ready else "not ready", "service": name}
        if edge.is_internal(request):
            body["checks"] = dict(checks)
        return JSONResponse(body, status_code=200 if ready else 503,
                            headers={} if ready else {"Retry-After": "5"})

    @router.get("/metrics")
    async def prometheus(request: Request) -> Response:
        if not edge.is_internal(request):
            raise NotFound(f"no route matches GET {request.url.path}")
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def _lifespan(edge: Edge, extra_paths: dict[str, Any]) -> Any:
    """The clients the gateway opens at start and closes at stop."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        forwarder = proxy.Proxy(edge.settings, edge.breakers)
        limiter = EdgeRateLimiter(edge.settings)
        app.state.proxy = forwarder
        app.state.limiter = limiter
        app.state.openapi = OpenAPIAggregator(
            forwarder.client, edge.first_replicas, edge.table,
            cache_seconds=edge.settings.openapi_cache_seconds,
            timeout=edge.settings.health_timeout, extra_paths=extra_paths)
        await edge.revocation_feed.start()
        try:
            yield
        finally:
            await edge.revocation_feed.stop()
            await limiter.close()
            await forwarder.close()

    return lifespan


def _documents_router(edge: Edge) -> APIRouter:
    """The merged OpenAPI document, the AsyncAPI document, Swagger UI and the status page."""
    router = APIRouter(include_in_schema=False)

    @router.get("/openapi.json")
    async def openapi(request: Request) -> JSONResponse:
        await edge.edge_limit(request)
        return JSONResponse(await request.app.state.openapi.document())

    @router.get("/asyncapi.json")
    async def asyncapi_document(request: Request) -> JSONResponse:
        await edge.edge_limit(request)
        return JSONResponse(asyncapi.load())

    @router.get("/docs")
    async def docs(request: Request) -> HTMLResponse:
        await edge.edge_limit(request)
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="HealthFlow API",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @router.get("/docs/oauth2-redirect")
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @router.get("/status")
    async def status_page(request: Request) -> HTMLResponse:
        await edge.edge_limit(request)
        return HTMLResponse(STATUS_PAGE)

    return router


def _platform_router(edge: Edge) -> tuple[APIRouter, dict[str, Any]]:
    """``GET /api/v1/platform/status`` and its entry for the merged OpenAPI document."""
    router = APIRouter()

    @router.get("/api/v1/platform/status", tags=["platform"],
                summary="Every service's liveness, readiness and circuit state (admins)")
    async def platform_status(
        request: Request,
        principal: Principal = require(Permission.PLATFORM_STATUS),
    ) -> dict[str, Any]:
        await edge.limit(request, edge.table.policy("default"), "subject", principal.subject)
        return await status.platform_status(
            request.app.state.proxy.client, edge.first_replicas,
            edge.settings.health_timeout, edge.breakers)

    route = next(r for r in router.routes
                 if isinstance(r, APIRoute) and r.endpoint is platform_status)
    paths = {"/api/v1/platform/status": {"get": {
        # the same annotation every service route carries (see annotate_openapi_access)
        "x-healthflow-access": declared_access(route.dependant),
        "tags": ["platform"],
        "summary": "Every service's liveness, readiness and circuit state",
        "description": "Requires the `platform:status` permission (admins).",
        "operationId": "platform_status",
        "security": [{"OAuth2PasswordBearer": []}],
        "responses": {"200": {"description": "Health of every service",
                              "content": {"application/json": {"schema": {
                                  "type": "object"}}}},
                      "401": {"description": "No valid token"},
                      "403": {"description": "Not an admin"}},
    }}}
    return router, paths


def _proxy_router(edge: Edge) -> APIRouter:
    """Every other path: matched in the route table, limited, authenticated, forwarded."""
    router = APIRouter(include_in_schema=False)

    @router.api_route("/{path:path}", methods=PROXY_METHODS)
    async def forward(request: Request) -> Response:
        path = request.url.path
        client_ip = edge.ip_of(request)
        reject_dot_segments(path)
        route = edge.table.match(path)
        if route is None:
            await edge.limit(request, edge.edge_policy, "ip", client_ip)
            raise NotFound(f"no route matches {request.method} {path}")
        policy = edge.table.policy(route.policy_for(request.method, path))
        await edge.limit(request, policy, "ip", client_ip)
        principal = await edge.authenticate(request.headers, policy,
                                            public=route.is_public(request.method))
        if principal is not None:
            await edge.limit(request, policy, "subject", principal.subject)
            caps.hold(request.scope, edge.caps.acquire(
                "user", kind_of(request.scope["headers"]), principal.subject))
        return await request.app.state.proxy.forward(request, route, policy, principal,
                                                     client_ip)

    @router.websocket("/{path:path}")
    async def forward_websocket(websocket: WebSocket) -> None:
        try:
            await _forward_websocket(edge, websocket)
        except Problem as problem:
            await _deny(websocket, problem)

    return router


async def _forward_websocket(edge: Edge, websocket: WebSocket) -> None:
    """Check a WebSocket handshake as an HTTP request is checked, then relay both ways.

    Raises:
        Problem: refused (the caller answers it as the handshake's response).
    """
    path = websocket.url.path
    query = websocket.scope.get("query_string", b"").decode("latin-1")
    reject_dot_segments(path)
    route = edge.table.match(path)
    if route is None:
        raise NotFound(f"no route matches WebSocket {path}")
    policy = edge.table.policy(route.policy_for("GET", path))
    limiter: EdgeRateLimiter = websocket.app.state.limiter
    client_ip = edge.ip_of(websocket)
    await limiter.hit(policy, "ip", client_ip)
    principal = await edge.authenticate(websocket.headers, policy, query)
    if principal is not None:
        await limiter.hit(policy, "subject", principal.subject)
    releases = [edge.caps.acquire("address", "streams", client_ip)]
    try:
        if principal is not None:
            releases.append(edge.caps.acquire("user", "streams", principal.subject))
        await _relay_websocket(edge, websocket, route, policy, principal, client_ip, query)
    finally:
        for release in releases:
            release()


async def _relay_websocket(edge: Edge, websocket: WebSocket, route: Route, policy: Policy,
                           principal: Principal | None, client_ip: str, query: str) -> None:
    """Relay an accepted-at-the-edge WebSocket session to ``route``'s upstream."""
    path = websocket.url.path
    request_id = valid_request_id(websocket.headers.get("x-request-id"))
    settings = edge.settings
    peer = websocket.client.host if websocket.client else client_ip
    headers = proxy.forward_headers(
        websocket.scope["headers"], principal=principal, peer=peer,
        scheme=websocket.scope.get("scheme", "ws"),
        host=websocket.headers.get("host"), request_id=request_id,
        trusted_hops=settings.trusted_proxy_hops,
    )
    # The upstream handshake continues the gateway's server span (no httpx here).
    headers += list(tracing.inject({}).items())
    token = bearer(websocket.headers, query)
    if token and not any(k == "authorization" for k, _ in headers):
        headers.append(("authorization", f"Bearer {token}"))
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "access_token"]
    base = settings.upstream_url(route.service)
    url = "ws" + base.removeprefix("http") + path + ("?" + urlencode(kept) if kept else "")
    refused: Callable[[], Coroutine[Any, Any, str]] | None = None
    if principal is not None:
        caller = principal

        def recheck() -> Coroutine[Any, Any, str]:  # the token, re-checked while open
            return wait_until_refused(lambda: edge.verifier.refusal(caller), edge.revocations,
                                      heartbeat=settings.stream_recheck_interval)

        refused = recheck
    await proxy_websocket(
        websocket, url=url, headers=headers, open_timeout=policy.timeout,
        idle_timeout=policy.stream_timeout, breakers=edge.breakers, upstream=route.service,
        refused=refused,
    )


async def _deny(websocket: WebSocket, problem: Problem) -> None:
    """Refuse a WebSocket handshake with the problem as an HTTP response when the
    server supports it (ASGI ``websocket.http.response``), else close with 1008."""
    from starlette.websockets import WebSocketState

    if websocket.client_state != WebSocketState.CONNECTING:
        return
    status_code = problem.status
    body = problem.body(websocket.url.path)
    if isinstance(problem, UpstreamRefused):
        status_code = problem.upstream_status
        body["status"] = status_code
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        response = JSONResponse(body, status_code=status_code, media_type=PROBLEM_JSON,
                                headers=problem.headers)
        await websocket.send_denial_response(response)
    else:
        await websocket.close(code=1008, reason=json.dumps(body)[:120])


STATUS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>HealthFlow platform status</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.3rem .6rem}.ok{color:#070}.bad{color:#b00}</style>
</head><body><h1>HealthFlow platform status</h1>
<p>Admins only: paste an access token (it stays in this page).</p>
<input id="t" size="60" placeholder="access token"> <button id="go">Show</button>
<p id="msg"></p><table id="tbl"></table>
<script>
document.getElementById('go').onclick = async () => {
  const r = await fetch('/api/v1/platform/status',
    {headers: {Authorization: 'Bearer ' + document.getElementById('t').value}});
  const body = await r.json();
  const msg = document.getElementById('msg'), tbl = document.getElementById('tbl');
  tbl.replaceChildren();
  if (!r.ok) { msg.textContent = body.detail || r.status; return; }
  msg.textContent = 'Platform: ' + body.status;
  const head = tbl.insertRow();
  for (const h of ['service', 'live', 'ready', 'circuit', 'readyz latency (ms)'])
    head.insertCell().outerHTML = '<th>' + h + '</th>';
  for (const [name, s] of Object.entries(body.services)) {
    const row = tbl.insertRow();
    row.insertCell().textContent = name;
    for (const v of [s.live, s.ready]) {
      const c = row.insertCell(); c.textContent = v ? 'yes' : 'no';
      c.className = v ? 'ok' : 'bad';
    }
    row.insertCell().textContent = s.circuit;
    row.insertCell().textContent = s.readyz.latency_ms;
  }
};
</script></body></html>
"""


def _middleware(app: FastAPI, settings: GatewaySettings, edge_caps: ConcurrencyCaps) -> None:
    app.add_middleware(ConcurrencyMiddleware, caps=edge_caps,
                       trusted_hops=settings.trusted_proxy_hops)
    app.add_middleware(RateLimitFieldsMiddleware)
    app.add_middleware(
        ProblemCORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=PROXY_METHODS,
        allow_headers=["Authorization", "Content-Type", "X-Request-ID", "traceparent",
                       "tracestate", "Accept", "Last-Event-ID",
                       "Idempotency-Key"],  # a dispatcher app's retried raise
        expose_headers=EXPOSED_HEADERS,
        max_age=600,
    )
    app.add_middleware(RequestContextMiddleware, service=settings.service_name)
