"""The gateway's composition root: ``create_app(settings=None) -> FastAPI``.

Request path for a proxied route (see :mod:`healthflow.gateway.routes`):
match the route table (no match → 404 problem+json) → per-IP rate limit →
token verification when the route group requires it (401), permission check
(403) → per-subject rate limit (429) → forward (:mod:`healthflow.gateway.proxy`).
Every error is RFC 9457 problem+json. The gateway itself answers
``/livez``, ``/readyz``, ``/metrics``, ``/openapi.json`` (the merged platform
document), ``/asyncapi.json`` (the events' AsyncAPI 3.0 document, generated from
:mod:`healthflow.contracts`), ``/docs`` (Swagger UI), ``/status`` (an HTML view) and
``GET /api/v1/platform/status`` (``platform:status`` permission).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request, WebSocket
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from healthflow.common import tracing
from healthflow.common.auth import Principal, TokenVerifier, declared_access, require
from healthflow.common.errors import (
    PROBLEM_JSON,
    BadRequest,
    Forbidden,
    NotFound,
    Problem,
    Unauthorized,
    install_problem_handlers,
)
from healthflow.common.http import RequestContextMiddleware, valid_request_id
from healthflow.common.logs import setup_logging
from healthflow.common.permissions import Permission
from healthflow.common.settings import load_settings
from healthflow.contracts import asyncapi
from healthflow.gateway import proxy, status
from healthflow.gateway.breaker import Breakers
from healthflow.gateway.openapi import OpenAPIAggregator
from healthflow.gateway.ratelimit import EdgeRateLimiter, LimitScope, LimitState, fields
from healthflow.gateway.routes import EDGE_POLICY, Policy, RouteTable
from healthflow.gateway.settings import GatewaySettings

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


def _reject_dot_segments(path: str) -> None:
    """Refuse ``.``/``..`` path segments (RFC 3986 § 3.3): the route is chosen from the
    path as sent, and an upstream client that removed them would reach another route.

    Raises:
        BadRequest: the path has a dot segment.
    """
    if any(segment in (".", "..") for segment in path.split("/")):
        raise BadRequest("the path must not contain '.' or '..' segments")


def _bearer(headers: Headers, query: str = "") -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if query:  # WebSocket clients in browsers cannot set headers (RFC 6750 § 2.3)
        for key, item in parse_qsl(query):
            if key == "access_token" and item:
                return item
    return None


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """The gateway app for ``settings`` (default: from the environment).

    Raises:
        ConfigurationError: an environment variable is invalid (names it).
        ValueError: ``policy_overrides`` names an unknown group or field.
    """
    settings = settings or load_settings(GatewaySettings)
    setup_logging(settings.service_name, settings.log_level)
    tracing.setup_tracing(settings.service_name, settings.otel_exporter)
    table = RouteTable(overrides=settings.policy_overrides)
    breakers = Breakers(
        threshold=settings.breaker_failure_threshold,
        reset_seconds=settings.breaker_reset_seconds,
        not_failures=proxy.NOT_UPSTREAM_FAULTS,
    )
    verifier = TokenVerifier(
        issuer=settings.jwt_issuer, audience=settings.jwt_audience,
        jwks_url=settings.jwks_url, cache_seconds=settings.jwks_cache_seconds,
    )
    # Health, status and the merged OpenAPI ask one replica of each upstream.
    first_replicas = {name: settings.upstream_urls(name)[0] for name in settings.upstreams}
    ready_upstreams = {
        name: url for name, url in first_replicas.items()
        if settings.readiness_requires is None or name in settings.readiness_requires
    }
    edge = table.policy(EDGE_POLICY)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        forwarder = proxy.Proxy(settings, breakers)
        limiter = EdgeRateLimiter(settings)
        app.state.proxy = forwarder
        app.state.limiter = limiter
        app.state.openapi = OpenAPIAggregator(
            forwarder.client, first_replicas, table,
            cache_seconds=settings.openapi_cache_seconds, timeout=settings.health_timeout,
            extra_paths=gateway_paths,
        )
        try:
            yield
        finally:
            await limiter.close()
            await forwarder.close()

    app = FastAPI(
        title="HealthFlow gateway", version="1.0.0", lifespan=lifespan,
        openapi_url=None, docs_url=None, redoc_url=None,
    )
    app.state.settings = settings
    app.state.table = table
    app.state.breakers = breakers
    app.state.verifier = verifier
    install_problem_handlers(app)

    async def limit(request: Request, policy: Policy, scope: LimitScope, key: str) -> None:
        """Count the request; the state goes to the response's RateLimit fields (429 raised)."""
        limiter: EdgeRateLimiter = request.app.state.limiter
        states: list[LimitState] = request.scope.setdefault("state", {}).setdefault(
            "ratelimit", [])
        state = await limiter.hit(policy, scope, key)
        if state is not None:
            states.append(state)

    def ip_of(request: Request | WebSocket) -> str:
        return proxy.client_address(request.scope.get("client"),
                                    request.headers.get("x-forwarded-for"),
                                    settings.trusted_proxy_hops)

    async def edge_limit(request: Request) -> None:
        await limit(request, edge, "ip", ip_of(request))

    async def authenticate(headers: Headers, policy: Policy, query: str = "", *,
                           public: bool = False) -> Principal | None:
        if not policy.auth_required:
            return None
        token = _bearer(headers, query)
        if token is None:
            if public:
                return None
            raise Unauthorized()
        principal = await verifier.verify(token)
        if policy.permission and not principal.has(policy.permission):
            raise Forbidden(f"this route requires the permission {policy.permission}")
        return principal

    # --- what the gateway answers itself ---------------------------------------

    @app.get("/livez", include_in_schema=False)
    async def livez() -> dict[str, str]:
        return {"status": "ok", "service": settings.service_name}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        client = request.app.state.proxy.client
        checks = await status.readiness(client, ready_upstreams, settings.health_timeout)
        ready = all(c["status"] == "ok" for c in checks.values())
        summary = {name: c["status"] for name, c in checks.items()}
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "service": settings.service_name,
             "checks": summary},
            status_code=200 if ready else 503,
            headers={} if ready else {"Retry-After": "5"},
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        await edge_limit(request)
        return JSONResponse(await request.app.state.openapi.document())

    @app.get("/asyncapi.json", include_in_schema=False)
    async def asyncapi_document(request: Request) -> JSONResponse:
        await edge_limit(request)
        return JSONResponse(asyncapi.load())

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        await edge_limit(request)
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="HealthFlow API",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/status", include_in_schema=False)
    async def status_page(request: Request) -> HTMLResponse:
        await edge_limit(request)
        return HTMLResponse(STATUS_PAGE)

    @app.get("/api/v1/platform/status", tags=["platform"],
             summary="Every service's liveness, readiness and circuit state (admins)")
    async def platform_status(
        request: Request,
        principal: Principal = require(Permission.PLATFORM_STATUS),
    ) -> dict[str, Any]:
        await limit(request, table.policy("default"), "subject", principal.subject)
        return await status.platform_status(
            request.app.state.proxy.client, first_replicas, settings.health_timeout,
            breakers,
        )

    status_route = next(r for r in app.routes
                        if isinstance(r, APIRoute) and r.endpoint is platform_status)
    gateway_paths = {
        "/api/v1/platform/status": {
            "get": {
                # the same annotation every service route carries (see annotate_openapi_access)
                "x-healthflow-access": declared_access(status_route.dependant),
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
            }
        }
    }

    # --- everything else goes through the route table ----------------------------

    @app.api_route("/{path:path}", methods=PROXY_METHODS, include_in_schema=False)
    async def forward(request: Request) -> Response:
        path = request.url.path
        client_ip = ip_of(request)
        _reject_dot_segments(path)
        route = table.match(path)
        if route is None:
            await limit(request, edge, "ip", client_ip)
            raise NotFound(f"no route matches {request.method} {path}")
        policy = table.policy(route.policy)
        await limit(request, policy, "ip", client_ip)
        principal = await authenticate(request.headers, policy,
                                       public=route.is_public(request.method))
        if principal is not None:
            await limit(request, policy, "subject", principal.subject)
        return await request.app.state.proxy.forward(request, route, policy, principal,
                                                     client_ip)

    @app.websocket("/{path:path}")
    async def forward_websocket(websocket: WebSocket) -> None:
        path = websocket.url.path
        query = websocket.scope.get("query_string", b"").decode("latin-1")
        try:
            _reject_dot_segments(path)
            route = table.match(path)
            if route is None:
                raise NotFound(f"no route matches WebSocket {path}")
            policy = table.policy(route.policy)
            limiter: EdgeRateLimiter = websocket.app.state.limiter
            client_ip = ip_of(websocket)
            await limiter.hit(policy, "ip", client_ip)
            principal = await authenticate(websocket.headers, policy, query)
            if principal is not None:
                await limiter.hit(policy, "subject", principal.subject)
            request_id = valid_request_id(websocket.headers.get("x-request-id"))
            with tracing.span("WEBSOCKET", parent_headers=dict(websocket.headers)):
                peer = websocket.client.host if websocket.client else client_ip
                headers = proxy.forward_headers(
                    websocket.scope["headers"], principal=principal, peer=peer,
                    scheme=websocket.scope.get("scheme", "ws"),
                    host=websocket.headers.get("host"), request_id=request_id,
                    trusted_hops=settings.trusted_proxy_hops,
                )
            token = _bearer(websocket.headers, query)
            if token and not any(k == "authorization" for k, _ in headers):
                headers.append(("authorization", f"Bearer {token}"))
            kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True)
                    if k != "access_token"]
            base = settings.upstream_url(route.service)
            url = "ws" + base.removeprefix("http") + path + (
                "?" + urlencode(kept) if kept else "")
            await proxy.proxy_websocket(
                websocket, url=url, headers=headers, open_timeout=policy.timeout,
                idle_timeout=policy.stream_timeout, breakers=breakers,
                upstream=route.service,
            )
        except Problem as problem:
            await _deny(websocket, problem)

    _middleware(app, settings)
    return app


async def _deny(websocket: WebSocket, problem: Problem) -> None:
    """Refuse a WebSocket handshake with the problem as an HTTP response when the
    server supports it (ASGI ``websocket.http.response``), else close with 1008."""
    from starlette.websockets import WebSocketState

    if websocket.client_state != WebSocketState.CONNECTING:
        return
    status_code = problem.status
    body = problem.body(websocket.url.path)
    if isinstance(problem, proxy.UpstreamRefused):
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


def _middleware(app: FastAPI, settings: GatewaySettings) -> None:
    app.add_middleware(RateLimitFieldsMiddleware)
    app.add_middleware(
        ProblemCORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=PROXY_METHODS,
        allow_headers=["Authorization", "Content-Type", "X-Request-ID", "traceparent",
                       "tracestate", "Accept", "Last-Event-ID"],
        expose_headers=EXPOSED_HEADERS,
        max_age=600,
    )
    app.add_middleware(RequestContextMiddleware, service=settings.service_name)
