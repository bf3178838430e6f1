"""Caps on what one client address or one user holds open at the same time.

Rate limits (:mod:`healthflow.gateway.ratelimit`) count requests per window; they
do not stop one address from opening a few hundred slow requests at once and
keeping them open (slowloris, or a greedy script). These caps count what is open
*now*, in this gateway process:

* concurrent requests per client address (``address_max_requests``) and per user
  (``user_max_requests``);
* open streams — Server-Sent Events (``Accept: text/event-stream``) and
  WebSocket sessions — per client address (``address_max_streams``) and per user
  (``user_max_streams``). A stream counts against the stream caps only, so a
  user's open event stream never blocks their ordinary requests.

Over a cap the gateway answers 429 problem+json with ``Retry-After: 1`` (RFC 6585
§ 4, RFC 9110 § 10.2.3) before anything is forwarded. The address is the one
the rate limits use (``X-Forwarded-For`` trusted for ``trusted_proxy_hops``).
Probes (``/livez``, ``/readyz``, ``/metrics``) are never capped.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Callable
from typing import Literal

from fastapi.responses import JSONResponse
from prometheus_client import Counter, Gauge
from starlette.types import ASGIApp, Receive, Scope, Send

from healthflow.common.errors import PROBLEM_JSON, TooManyRequests
from healthflow.gateway import proxy
from healthflow.gateway.routes import PROBE_PATHS
from healthflow.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

Holder = Literal["address", "user"]
Kind = Literal["requests", "streams"]
Release = Callable[[], None]

REFUSED = Counter("healthflow_gateway_concurrency_refused_total",
                  "Requests and streams refused by a concurrency cap", ["holder", "kind"])
OPEN = Gauge("healthflow_gateway_open", "Requests and streams open now", ["kind"])


def kind_of(headers: list[tuple[bytes, bytes]], websocket: bool = False) -> Kind:
    """``streams`` for a WebSocket or a request accepting ``text/event-stream``."""
    if websocket:
        return "streams"
    accept = b",".join(v for k, v in headers if k.lower() == b"accept")
    return "streams" if b"text/event-stream" in accept else "requests"


class ConcurrencyCaps:
    """Counts of open requests and streams per (holder, kind, key), in this process."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.caps: dict[tuple[Holder, Kind], int] = {
            ("address", "requests"): settings.address_max_requests,
            ("address", "streams"): settings.address_max_streams,
            ("user", "requests"): settings.user_max_requests,
            ("user", "streams"): settings.user_max_streams,
        }
        self.open: Tally[tuple[Holder, Kind, str]] = Tally()

    def acquire(self, holder: Holder, kind: Kind, key: str) -> Release:
        """Hold one slot of ``key``; the returned function gives it back (idempotent).

        Raises:
            TooManyRequests: ``key`` already holds its cap (429, ``Retry-After: 1``).
        """
        cap = self.caps[(holder, kind)]
        slot = (holder, kind, key)
        if self.open[slot] >= cap:
            REFUSED.labels(holder, kind).inc()
            noun = "requests" if kind == "requests" else "open streams"
            raise TooManyRequests(
                f"this {'client address' if holder == 'address' else 'user'} already has "
                f"{cap} {noun} in progress at the gateway (the cap); retry when one ends",
                retry_after=1)
        self.open[slot] += 1
        OPEN.labels(kind).inc()
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            OPEN.labels(kind).dec()
            self.open[slot] -= 1
            if self.open[slot] <= 0:
                del self.open[slot]

        return release


def hold(scope: Scope, release: Release) -> None:
    """Give ``release`` to :class:`ConcurrencyMiddleware`, which calls it when the
    request's response has ended (streamed bodies included)."""
    scope.setdefault("state", {}).setdefault("concurrency", []).append(release)


class ConcurrencyMiddleware:
    """Holds the client address's slot for the whole HTTP exchange, and releases every
    slot a route took (:func:`hold`) once the response is over or the client left."""

    def __init__(self, app: ASGIApp, caps: ConcurrencyCaps, trusted_hops: int) -> None:
        self.app = app
        self.caps = caps
        self.trusted_hops = trusted_hops

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        forwarded = b",".join(v for k, v in scope["headers"] if k == b"x-forwarded-for")
        address = proxy.client_address(scope.get("client"),
                                        forwarded.decode("latin-1") or None, self.trusted_hops)
        try:
            release = self.caps.acquire("address", kind_of(scope["headers"]), address)
        except TooManyRequests as problem:
            response = JSONResponse(problem.body(scope["path"]), status_code=problem.status,
                                    media_type=PROBLEM_JSON, headers=problem.headers)
            await response(scope, receive, send)
            return
        hold(scope, release)
        try:
            await self.app(scope, receive, send)
        finally:
            for give_back in scope["state"].get("concurrency", []):
                give_back()
