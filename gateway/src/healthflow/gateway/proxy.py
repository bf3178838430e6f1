"""Forwarding to upstreams: HTTP (streamed both ways) and Server-Sent Events.

WebSocket sessions are relayed by :mod:`healthflow.gateway.websocket`.

Small request bodies (declared ``Content-Length`` ≤ :data:`SMALL_BODY`) are read
whole before an upstream connection is taken, so a client trickling its body
holds no upstream connection; larger ones (uploads) are read from the ASGI receive
channel chunk by chunk as httpx sends them (``Content-Length`` kept when the
client gave one, chunked otherwise). Either way the whole body must arrive within
``body_timeout`` seconds of the request (slowloris), else 408 problem+json. The
response body is relayed chunk by chunk as it arrives (raw bytes:
``Content-Encoding`` passes through untouched). Each upstream has its own
connection pool (``max_connections`` each), whose idle connections expire well
before the services' keep-alive (:data:`UPSTREAM_KEEPALIVE_SECONDS`).

Headers (RFC 9110 § 7.6.1; RFC 7239's de-facto ``X-Forwarded-*`` siblings):

* hop-by-hop fields and any field named by ``Connection`` are dropped both ways;
* client-supplied identity fields (:data:`IDENTITY_HEADERS`, anything starting
  ``X-HealthFlow-Identity``) are dropped; the verified ``X-User-Id`` and
  ``X-User-Roles`` (comma-separated) are added; ``Authorization`` is forwarded
  as received so the service verifies the token itself;
* ``X-Request-ID`` is the request's id (the client's when acceptable, else a new
  UUID), echoed to the client; the client's ``traceparent``/``tracestate`` give way
  to the gateway's client span's (OpenTelemetry's httpx instrumentation; same trace);
* ``X-Forwarded-For`` gets the client address, ``X-Forwarded-Proto`` and
  ``X-Forwarded-Host`` what the client used.

Failures become problem+json (RFC 9457): upstream unreachable or its circuit
open → 503 with ``Retry-After``; silent longer than the route's timeout → 504;
a broken response → 502; a body over the route's limit → 413; a body not
complete within ``body_timeout`` → 408. Idempotent methods (RFC 9110 § 9.2.2:
GET, HEAD, OPTIONS, PUT, DELETE) are retried on
connection failures and 503 answers with jittered exponential back-off, as long
as no byte of the request body has been sent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import Request
from opentelemetry import trace
from prometheus_client import Counter, Histogram
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from healthflow.common.auth import Principal
from healthflow.common.errors import (
    BadRequest,
    GatewayTimeout,
    PayloadTooLarge,
    Problem,
    ServiceUnavailable,
)
from healthflow.common.http import SERVER_KEEP_ALIVE_SECONDS
from healthflow.common.logs import request_id_var
from healthflow.gateway.breaker import Breakers, CircuitOpen
from healthflow.gateway.routes import Policy, Route
from healthflow.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

UPSTREAM_KEEPALIVE_SECONDS = SERVER_KEEP_ALIVE_SECONDS / 3

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade",
})
IDENTITY_HEADERS = frozenset({
    "x-user-id", "x-user-roles", "x-user-permissions", "x-forwarded-user",
})
IDENTITY_PREFIX = "x-healthflow-identity"
# Set by the gateway itself, never taken from the client.
GATEWAY_SET = frozenset({
    "host", "x-request-id", "traceparent", "tracestate", "x-forwarded-for",
    "x-forwarded-proto", "x-forwarded-host", "forwarded", "content-length", "expect",
})
RESPONSE_DROP = HOP_BY_HOP | {"x-request-id"}
SMALL_BODY = 64 * 1024  # bytes: answers up to this size (declared) are relayed in one piece

UPSTREAM_REQUESTS = Counter(
    "healthflow_gateway_upstream_requests_total", "Requests forwarded to upstreams",
    ["upstream", "outcome"],
)
UPSTREAM_LATENCY = Histogram(
    "healthflow_gateway_upstream_latency_seconds",
    "Time until the upstream's response headers", ["upstream"],
)


class BadGateway(Problem):
    status, title, slug = 502, "Bad Gateway", "bad-gateway"


class _Unreachable(Exception):
    """The upstream refused or did not accept the connection."""


class _Silent(Exception):
    """The upstream stayed silent longer than the route's timeout."""


class _Broken(Exception):
    """The upstream closed the connection or answered something that is not HTTP."""


class _Busy(Exception):
    """The upstream answered 503 (kept so that the last one can be relayed)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__("upstream answered 503")
        self.response = response


class RequestTimeout(Problem):
    status, title, slug = 408, "Request Timeout", "request-timeout"


class _BodyTooLarge(Exception):
    pass


class _BodyTimeout(Exception):
    pass


class _ClientGone(Exception):
    pass


# Raised inside a breaker's guard but not the upstream's fault: never trip a circuit.
NOT_UPSTREAM_FAULTS: tuple[type[BaseException], ...] = (
    _BodyTooLarge, _BodyTimeout, _ClientGone, asyncio.CancelledError,
)


@dataclass
class _Body:
    """The client's request body as an async iterator over the ASGI receive channel."""

    receive: Receive
    limit: int
    deadline: float  # time.monotonic() by which the last byte must have arrived
    started: bool = False
    sent: int = 0
    done: bool = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        while not self.done:
            try:
                message = await asyncio.wait_for(
                    self.receive(), timeout=max(0.0, self.deadline - time.monotonic()))
            except TimeoutError:
                raise _BodyTimeout from None
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk: bytes = message.get("body", b"")
            self.sent += len(chunk)
            if self.sent > self.limit:
                raise _BodyTooLarge
            self.done = not message.get("more_body", False)
            if chunk:
                yield chunk


def client_address(scope_client: tuple[str, int] | None, forwarded_for: str | None,
                   trusted_hops: int) -> str:
    """The caller's IP: the socket peer, or with ``trusted_hops`` proxies in front
    the address that the outermost trusted proxy appended to ``X-Forwarded-For``."""
    peer = scope_client[0] if scope_client else "unknown"
    if trusted_hops <= 0 or not forwarded_for:
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    if len(hops) >= trusted_hops:
        return hops[-trusted_hops]
    return hops[0] if hops else peer


def forward_headers(
    raw: list[tuple[bytes, bytes]],
    *,
    principal: Principal | None,
    peer: str,
    scheme: str,
    host: str | None,
    request_id: str,
    trusted_hops: int,
) -> list[tuple[str, str]]:
    """The header list sent upstream (see the module doc for the rules).

    ``peer`` is the socket address the request came from. With ``trusted_hops`` > 0
    the client's ``X-Forwarded-For`` chain is kept and ``peer`` appended (RFC 7239
    § 5.2 semantics); with 0 the chain is dropped and replaced by ``peer``.
    """
    connection_named: set[str] = set()
    prior_xff: str | None = None
    for key, value in raw:
        name = key.decode("latin-1").lower()
        if name == "connection":
            connection_named |= {
                t.strip().lower() for t in value.decode("latin-1").split(",") if t.strip()
            }
        elif name == "x-forwarded-for":
            prior_xff = value.decode("latin-1")
    out: list[tuple[str, str]] = []
    for key, value in raw:
        name = key.decode("latin-1").lower()
        if (name in HOP_BY_HOP or name in connection_named or name in IDENTITY_HEADERS
                or name.startswith(IDENTITY_PREFIX) or name in GATEWAY_SET):
            continue
        out.append((name, value.decode("latin-1")))
    if principal is not None:
        out.append(("x-user-id", principal.subject))
        out.append(("x-user-roles", ",".join(sorted(principal.roles))))
    forwarded_for = f"{prior_xff}, {peer}" if trusted_hops > 0 and prior_xff else peer
    out.append(("x-forwarded-for", forwarded_for))
    out.append(("x-forwarded-proto", scheme))
    if host:
        out.append(("x-forwarded-host", host))
    out.append(("x-request-id", request_id))
    return out


def response_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Upstream response headers minus hop-by-hop ones and the upstream's request id."""
    connection_named: set[bytes] = set()
    for key, value in raw:
        if key.lower() == b"connection":
            connection_named |= {t.strip().lower() for t in value.split(b",") if t.strip()}
    return [
        (key.lower(), value)
        for key, value in raw
        if key.lower().decode("latin-1") not in RESPONSE_DROP
        and key.lower() not in connection_named
    ]


def body_problem(exc: Exception, limit: int, seconds: float) -> Problem:
    """The problem for a request body the client failed to deliver."""
    if isinstance(exc, _BodyTooLarge):
        return PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
    if isinstance(exc, _BodyTimeout):
        return RequestTimeout(f"the request body did not arrive within {seconds:g} s")
    return BadRequest("the client went away before the request body ended")


class Proxy:
    """Forwards requests to upstreams, each through a connection pool of its own.

    ``client`` (a small pool) serves the gateway's own calls: health, the merged
    OpenAPI document, JWKS."""

    def __init__(self, settings: GatewaySettings, breakers: Breakers) -> None:
        self.settings = settings
        self.breakers = breakers
        self.client = self._pool(max(4, len(settings.upstreams)))
        self.pools = {name: self._pool(settings.max_connections) for name in settings.upstreams}

    def _pool(self, size: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            limits=httpx.Limits(max_connections=size, max_keepalive_connections=min(
                size, self.settings.max_keepalive_connections),
                keepalive_expiry=UPSTREAM_KEEPALIVE_SECONDS),
            follow_redirects=False, trust_env=False)

    async def close(self) -> None:
        for pool in [self.client, *self.pools.values()]:
            await pool.aclose()

    def _timeout(self, policy: Policy, streaming: bool) -> httpx.Timeout:
        silent = policy.stream_timeout if streaming else policy.timeout
        return httpx.Timeout(connect=self.settings.connect_timeout, read=silent,
                             write=silent, pool=self.settings.connect_timeout)

    async def _attempt(self, upstream: str, build: Callable[[], httpx.Request]) -> httpx.Response:
        """One call through ``upstream``'s breaker; raises the private failure types."""
        async with self.breakers.guard(upstream):
            started = time.perf_counter()
            try:
                response = await self.pools[upstream].send(build(), stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                UPSTREAM_REQUESTS.labels(upstream, "unreachable").inc()
                raise _Unreachable(str(exc)) from exc
            except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:
                UPSTREAM_REQUESTS.labels(upstream, "timeout").inc()
                raise _Silent(str(exc)) from exc
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                if isinstance(exc.__context__, (_BodyTooLarge, _BodyTimeout, _ClientGone)):
                    raise exc.__context__ from None
                UPSTREAM_REQUESTS.labels(upstream, "broken").inc()
                raise _Broken(str(exc)) from exc
            UPSTREAM_LATENCY.labels(upstream).observe(time.perf_counter() - started)
            UPSTREAM_REQUESTS.labels(upstream, str(response.status_code)).inc()
            if response.status_code == 503:
                raise _Busy(response)
            return response

    async def send(self, upstream: str, method: str, build: Callable[[], httpx.Request],
                   body: _Body | None) -> httpx.Response:
        """Send with retries (idempotent methods only) and map failures to problems.

        Raises:
            ServiceUnavailable: unreachable or circuit open (503, ``Retry-After``).
            GatewayTimeout: the upstream stayed silent past the timeout (504).
            BadGateway: the upstream broke the exchange (502).
            PayloadTooLarge: the body passed the route's limit (413).
            RequestTimeout: the body did not arrive within ``body_timeout`` (408).
        """
        try:
            return await self._attempt_with_retries(upstream, method, build, body)
        except _Busy as exc:
            return exc.response
        except CircuitOpen as exc:
            raise ServiceUnavailable(
                f"{upstream} is unavailable (circuit open); try again shortly",
                retry_after=exc.retry_after, upstream=upstream,
            ) from None
        except _Unreachable:
            raise ServiceUnavailable(
                f"{upstream} cannot be reached; try again shortly",
                retry_after=max(1, round(self.breakers.reset_seconds)), upstream=upstream,
            ) from None
        except _Silent:
            raise GatewayTimeout(f"{upstream} did not answer in time",
                                 upstream=upstream) from None
        except _Broken:
            raise BadGateway(f"{upstream} broke off the exchange", upstream=upstream) from None
        except (_BodyTooLarge, _BodyTimeout, _ClientGone) as exc:
            limit = body.limit if body is not None else 0
            raise body_problem(exc, limit, self.settings.body_timeout) from None

    async def _attempt_with_retries(self, upstream: str, method: str,
                                    build: Callable[[], httpx.Request],
                                    body: _Body | None) -> httpx.Response:
        """The retry policy: an idempotent request whose body has not started is tried
        up to ``retry_attempts`` times while the upstream is unreachable or answers 503,
        with full-jitter exponential back-off between attempts; the last failure is
        raised as one of the private failure types (a last 503 as :class:`_Busy`)."""
        idempotent = method in IDEMPOTENT_METHODS

        def retryable(exc: BaseException) -> bool:
            if not idempotent or (body is not None and body.started):
                return False
            if isinstance(exc, _Busy):
                return True
            return isinstance(exc, _Unreachable)

        async def before_retry(state: Any) -> None:
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            if isinstance(exc, _Busy):
                await exc.response.aclose()

        # The first attempt bypasses tenacity (its set-up costs ~0.1 ms per request).
        try:
            return await self._attempt(upstream, build)
        except (_Busy, _Unreachable) as exc:
            if not retryable(exc) or self.settings.retry_attempts < 2:
                raise
            if isinstance(exc, _Busy):
                await exc.response.aclose()
        # Full-jitter exponential back-off: U(0, d), U(0, 2d), U(0, 4d)… capped.
        first = self.settings.retry_initial_delay
        await asyncio.sleep(random.uniform(0, first))  # noqa: S311 - jitter, not crypto
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.settings.retry_attempts - 1),
            wait=wait_random_exponential(multiplier=2 * first,
                                         max=self.settings.retry_max_delay),
            retry=retry_if_exception(retryable),
            before_sleep=before_retry,
            reraise=True,
        ):
            with attempt:
                return await self._attempt(upstream, build)
        raise AssertionError("unreachable")  # pragma: no cover - AsyncRetrying always ends

    async def forward(self, request: Request, route: Route, policy: Policy,
                      principal: Principal | None, client_ip: str) -> Response:
        """Forward ``request`` to ``route``'s upstream and stream the answer back."""
        scope = request.scope
        method = request.method
        has_body = any(k in (b"content-length", b"transfer-encoding")
                       for k, _ in scope["headers"]) and method not in ("GET", "HEAD")
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                declared_size = int(declared)
            except ValueError:
                declared_size = -1
            if declared_size > policy.max_body_bytes:
                raise PayloadTooLarge(
                    f"request body exceeds the limit of {policy.max_body_bytes} bytes"
                )
        body = _Body(request.receive, policy.max_body_bytes,
                     time.monotonic() + self.settings.body_timeout) if has_body else None
        content = await _small_body(body, declared, self.settings.body_timeout)
        if content is not None:
            body = None
        sized = [("content-length", declared)] if has_body and declared else []
        streaming = "text/event-stream" in request.headers.get("accept", "")
        base = self.settings.upstream_url(route.service)
        path = scope.get("raw_path") or scope["path"].encode()
        url = base + path.decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        timeout = self._timeout(policy, streaming)

        client = scope.get("client")
        headers = forward_headers(
            scope["headers"], principal=principal,
            peer=client[0] if client else client_ip,
            scheme=scope.get("scheme", "http"), host=request.headers.get("host"),
            request_id=request_id_var.get() or "",
            trusted_hops=self.settings.trusted_proxy_hops,
        ) + sized

        pool = self.pools[route.service]

        def build() -> httpx.Request:
            return pool.build_request(
                method, url, headers=headers, content=content if body is None else body,
                timeout=timeout)

        # The server span is named by the route table's prefix (the catch-all route has
        # no template of its own); each attempt is a CLIENT span of the httpx instrumentation.
        server_span = trace.get_current_span()
        server_span.update_name(f"{method} {route.prefix}")
        server_span.set_attribute("http.route", route.prefix)
        upstream = await self.send(route.service, method, build, body)
        return await _relay(upstream, route.service)


async def _small_body(body: _Body | None, declared: str | None,
                      seconds: float) -> bytes | None:
    """The whole body when its declared size is at most :data:`SMALL_BODY` bytes (read
    before any upstream connection is taken), else ``None`` (streamed later).

    Raises:
        PayloadTooLarge, RequestTimeout, BadRequest: see :func:`body_problem`.
    """
    if body is None or declared is None or not declared.isdigit() \
            or int(declared) > SMALL_BODY:
        return None
    try:
        return b"".join([chunk async for chunk in body])
    except (_BodyTooLarge, _BodyTimeout, _ClientGone) as exc:
        raise body_problem(exc, body.limit, seconds) from None


async def _relay(upstream: httpx.Response, service: str) -> Response:
    """The client's response: small bodies of declared size (≤ :data:`SMALL_BODY` bytes)
    are read whole, which spares a streaming task per request; anything else — unknown
    length, large, Server-Sent Events — is streamed chunk by chunk."""
    raw_headers = response_headers(upstream.headers.raw)
    length = upstream.headers.get("content-length", "")
    if length.isdigit() and int(length) <= SMALL_BODY:
        try:
            content = b"".join([chunk async for chunk in upstream.aiter_raw()])
        except httpx.TimeoutException:
            raise GatewayTimeout(f"{service} did not finish its answer in time",
                                 upstream=service) from None
        except httpx.HTTPError:
            raise BadGateway(f"{service} broke off its answer", upstream=service) from None
        finally:
            await upstream.aclose()
        small = Response(content=content, status_code=upstream.status_code)
        small.raw_headers = raw_headers
        return small

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            log.warning("upstream response broke off", extra={"error": type(exc).__name__})
            raise
        finally:
            await upstream.aclose()

    response = StreamingResponse(chunks(), status_code=upstream.status_code)
    # Raw bytes are relayed unchanged, so the upstream's Content-Length stays true.
    response.raw_headers = raw_headers
    return response

