"""HTTP conventions every service shares, and the app factory.

:func:`create_service_app` gives a FastAPI app with:

* RFC 9457 problem+json for every error (:mod:`healthflow.common.errors`);
* ``X-Request-ID`` propagation (accepted when it is 1–128 visible ASCII
  characters, generated otherwise, echoed on the response, put on every log line);
* a server span per request continuing the caller's ``traceparent`` (OpenTelemetry's
  FastAPI instrumentation, :func:`healthflow.common.tracing.instrument_app`);
* a request body limit (``max_body_bytes``; 413 problem+json, nothing read past it);
* ``/livez`` (the process answers), ``/readyz`` (MongoDB ping, broker channel,
  consumers attached, outbox lag; 503 until all hold) and Prometheus ``/metrics``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import pymongo
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from healthflow.common import metrics, mongo, tracing
from healthflow.common.auth import annotate_openapi_access
from healthflow.common.errors import PROBLEM_JSON, PayloadTooLarge, install_problem_handlers
from healthflow.common.logs import request_id_var, setup_logging
from healthflow.common.manifest import check_pattern, is_wildcard, path_matches
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import ConfigurationError
from healthflow.common.settings import ServiceSettings as ServiceSettingsLike

_log = logging.getLogger(__name__)
V = TypeVar("V")

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_RE = re.compile(r"^[\x21-\x7e]{1,128}$")
INTERNAL_PATHS = frozenset({"/livez", "/readyz", "/metrics"})


def valid_request_id(value: str | None) -> str:
    """``value`` when it is an acceptable request id, else a fresh UUID4."""
    if value and _REQUEST_ID_RE.match(value):
        return value
    return str(uuid.uuid4())


class RequestContextMiddleware:
    """Request id, database budget, latency metrics (pure ASGI: streaming-safe).

    A write (every method but GET and HEAD) shares one budget of
    :data:`healthflow.common.mongo.TRANSACTION_BUDGET` for all its database work, except
    on ``streamed`` routes (keyed ``(method, path)`` as :class:`BodyLimitMiddleware`'s):
    an upload's body may take longer than the budget to arrive, so there each
    transaction gets the budget of its own, counted from its start.
    """

    def __init__(self, app: ASGIApp, service: str,
                 streamed: Iterable[tuple[str, str]] = ()) -> None:
        self.app = app
        self.service = service
        self.streamed = RouteTable({key: True for key in streamed})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = valid_request_id(headers.get(REQUEST_ID_HEADER))
        token = request_id_var.set(request_id)
        budget = mongo.transaction_budget.set(mongo.TRANSACTION_BUDGET)
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        method = scope["method"]
        try:
            # A write's database work, reads included, shares one budget; reads
            # (GET, and Server-Sent Events streams) and streamed uploads only bound
            # their transactions (pymongo fixes a deadline on entering the timeout).
            shared = method not in ("GET", "HEAD") and \
                not self.streamed.get(method, scope.get("path", ""), False)
            with pymongo.timeout(mongo.TRANSACTION_BUDGET) if shared \
                    else contextlib.nullcontext():
                await self.app(scope, receive, send_wrapper)
        finally:
            request_id_var.reset(token)
            mongo.transaction_budget.reset(budget)
            if scope.get("path") not in INTERNAL_PATHS:
                metrics.HTTP_REQUESTS.labels(self.service, method, status_holder["status"]).inc()
                metrics.HTTP_LATENCY.labels(self.service, method).observe(
                    time.perf_counter() - started
                )


class RouteTable(Generic[V]):
    """Values keyed ``(method, path)``; a path is exact or a pattern whose ``*`` or
    ``{name}`` segments stand for one segment each
    (:func:`healthflow.common.manifest.path_matches`).

    Raises:
        ValueError: a pattern :func:`healthflow.common.manifest.check_pattern` refuses.
    """

    def __init__(self, values: Mapping[tuple[str, str], V]) -> None:
        self.exact: dict[tuple[str, str], V] = {}
        self.patterns: list[tuple[str, str, V]] = []
        for (method, path), value in values.items():
            if any(is_wildcard(segment) for segment in path.split("/")):
                check_pattern(path)
                self.patterns.append((method, path, value))
            else:
                self.exact[(method, path)] = value

    def get(self, method: str, path: str, default: V) -> V:
        """The value of ``method`` on ``path`` (an exact key first, then patterns in the
        order given, then ``default``)."""
        path = path.rstrip("/") or "/"
        if (method, path) in self.exact:
            return self.exact[(method, path)]
        for want, pattern, value in self.patterns:
            if want == method and path_matches(pattern, path):
                return value
        return default


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413 problem+json before handling them.

    ``larger`` raises the limit for single routes, keyed ``(method, path)``: a route
    that streams its body (an upload) gets a large limit while every route whose body
    is parsed in memory (JSON) keeps ``max_bytes``. The path is exact or a pattern
    whose ``*`` or ``{name}`` segments stand for one segment each
    (:func:`healthflow.common.manifest.path_matches`: ``/api/v1/expenses/{id}/receipt``),
    as the gateway's route declarations match sub-paths.

    Raises:
        ValueError: a pattern :func:`healthflow.common.manifest.check_pattern` refuses.
    """

    def __init__(self, app: ASGIApp, max_bytes: int,
                 larger: Mapping[tuple[str, str], int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = RouteTable(larger or {})

    def limit_of(self, method: str, path: str) -> int:
        """The body limit of ``method`` on ``path`` (an exact key first, then patterns
        in the order given, then ``max_bytes``)."""
        return self.larger.get(method, path, self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_of(scope["method"], scope["path"])
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await self._refuse(scope, send, limit)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await self._refuse(scope, send, limit)

    async def _refuse(self, scope: Scope, send: Send, limit: int) -> None:
        problem = PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        body = json.dumps(problem.body(scope.get("path"))).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", PROBLEM_JSON.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


Readiness = Callable[[], Awaitable[tuple[bool, Mapping[str, Any]]]]
"""What a ``/readyz`` asks: (ready?, the checks to show)."""


def probe_router(service: str, readiness: Readiness,
                 before_metrics: Callable[[], Awaitable[None]] | None = None) -> APIRouter:
    """``/livez``, ``/readyz`` and ``/metrics``, the same for every service and the gateway.

    ``/readyz`` answers 200 ``{"status": "ready", "service", "checks"}`` or 503 with
    ``Retry-After: 5``; ``before_metrics`` refreshes gauges that need a round trip.
    """
    router = APIRouter(tags=["health"])

    @router.get("/livez", summary="Liveness: the process answers")
    async def livez() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @router.get("/readyz", summary="Readiness: what this process needs answers")
    async def readyz() -> JSONResponse:
        ready, checks = await readiness()
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "service": service,
             "checks": dict(checks)},
            status_code=200 if ready else 503,
            headers={} if ready else {"Retry-After": "5"},
        )

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def prometheus() -> Response:
        if before_metrics is not None:
            await before_metrics()
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def health_router(runtime: ServiceRuntime) -> APIRouter:
    """The probes of a service: readiness from its runtime (database, broker, consumers,
    outbox lag, its own checks)."""

    async def readiness() -> tuple[bool, Mapping[str, Any]]:
        checks = dict(await runtime.readiness())
        checks["started"] = runtime.started
        return runtime.is_ready(checks), checks

    return probe_router(runtime.name, readiness, lambda: refresh_gauges(runtime))


async def refresh_gauges(runtime: ServiceRuntime) -> None:
    """Read outbox and queue depths into their gauges (best effort)."""
    try:
        pending, age = await runtime.relay.lag()
        metrics.OUTBOX_PENDING.labels(runtime.name).set(pending)
        metrics.OUTBOX_AGE.labels(runtime.name).set(age)
    except Exception:  # noqa: S110 - a scrape must not fail because Mongo is down
        pass
    if runtime.consumer is not None:
        try:
            depths = await runtime.transport.queue_depths(runtime.name)
            metrics.CONSUMER_LAG.labels(runtime.name).set(depths.get("queue", 0))
            metrics.DLQ_DEPTH.labels(runtime.name).set(depths.get("dlq", 0))
        except Exception:  # noqa: S110
            pass


def create_service_app(
    runtime: ServiceRuntime,
    *,
    routers: Sequence[APIRouter],
    title: str,
    description: str = "",
    version: str = "1.0.0",
    body_limits: Mapping[tuple[str, str], int] | None = None,
    **fastapi_kwargs: Any,
) -> FastAPI:
    """A FastAPI app for ``runtime`` with HealthFlow's conventions installed.

    Request bodies are limited to ``settings.max_body_bytes``; ``body_limits`` gives
    single streaming routes, keyed ``(method, path)`` (exact, or a pattern with ``*`` or
    ``{name}`` segments: :class:`BodyLimitMiddleware`), a limit of their own; their
    transactions each get the database budget rather than sharing one from the
    request's start (:class:`RequestContextMiddleware`)."""
    settings = runtime.settings
    setup_logging(runtime.name, settings.log_level)
    tracing.setup_tracing(runtime.name, settings.otel_exporter, settings.traces_file)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await runtime.start()
        except ConfigurationError as exc:  # e.g. a KEK that opens no stored key
            app.state.startup_refused = str(exc)
            _log.critical("start-up refused: %s", exc)
            raise
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title=title, description=description, version=version, lifespan=lifespan,
        **fastapi_kwargs,
    )
    app.state.runtime = runtime
    install_problem_handlers(app)
    app.include_router(health_router(runtime))
    for router in routers:
        annotate_openapi_access(router)
        app.include_router(router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       larger=body_limits)
    app.add_middleware(RequestContextMiddleware, service=runtime.name,
                       streamed=tuple(body_limits or ()))
    tracing.instrument_app(app)
    return app


def get_runtime(request: Request) -> ServiceRuntime:
    """FastAPI dependency: the runtime of the app serving ``request``."""
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


SERVER_KEEP_ALIVE_SECONDS = 75
"""How long a HealthFlow server keeps an idle HTTP/1.1 connection open (seconds).

Longer than any of our clients keeps one in its pool (the gateway's pools: a third of
this), so a server never closes a pooled connection just as the client sends on it.
With uvicorn's and httpx's defaults both at 5 s that race was real: a POST sent on a
connection the service had just closed cannot be retried (it is not idempotent), and
the gateway answered 502. RFC 9112 §9.5 lets either side close an idle connection;
the side that closes first must be the one that does not send."""


def uvicorn_options() -> dict[str, Any]:
    """The uvicorn options every HealthFlow server runs with (services, the gateway, the
    devkit's in-process servers): no access log (the request log middleware writes it),
    no logging config of uvicorn's own, 20 s of graceful shutdown, and the keep-alive of
    :data:`SERVER_KEEP_ALIVE_SECONDS`."""
    return {"log_config": None, "access_log": False, "timeout_graceful_shutdown": 20,
            "timeout_keep_alive": SERVER_KEEP_ALIVE_SECONDS}


EX_CONFIG = 78
"""The exit code of a process whose start-up refused its configuration (sysexits.h)."""


def serve(app: FastAPI, settings: ServiceSettingsLike) -> None:
    """Run ``app`` with uvicorn on ``settings.host:settings.port`` (a service's ``__main__``).

    Exits with :data:`EX_CONFIG` when start-up raised a ``ConfigurationError`` (logged
    as one line, its message only)."""
    import uvicorn

    try:
        uvicorn.run(app, host=settings.host, port=settings.port, **uvicorn_options())
    except SystemExit:
        if getattr(app.state, "startup_refused", None):
            # a configuration error: restarting cannot help (the platform runner stops)
            raise SystemExit(EX_CONFIG) from None
        raise
