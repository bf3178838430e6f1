"""What the edge decides before forwarding: the caller's address, rate limits, the token.

:class:`Edge` holds the gateway's configuration (settings, route table, circuit
breakers, token verifier) and the checks every route shares; the routers of
:mod:`healthflow.gateway.app` call it. Rate-limit states go to the response's
RateLimit fields (draft-ietf-httpapi-ratelimit-headers); tokens are verified
against the auth service's JWKS (RFC 9068 access tokens, RFC 6750 bearer usage).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request, WebSocket
from starlette.datastructures import Headers

from healthflow.common.auth import Principal, TokenVerifier
from healthflow.common.errors import BadRequest, Forbidden, Unauthorized
from healthflow.common.revocation import (
    RevocationFeed,
    RevocationState,
    http_snapshot,
    snapshot_url,
)
from healthflow.common.servicecredentials import caller_authorization
from healthflow.gateway import proxy, status
from healthflow.gateway.breaker import Breakers
from healthflow.gateway.caps import ConcurrencyCaps
from healthflow.gateway.ratelimit import EdgeRateLimiter, LimitScope, LimitState
from healthflow.gateway.routes import EDGE_POLICY, Policy, RouteTable
from healthflow.gateway.settings import GatewaySettings


def reject_dot_segments(path: str) -> None:
    """Refuse ``.``/``..`` path segments (RFC 3986 § 3.3): the route is chosen from the
    path as sent, and an upstream client that removed them would reach another route.

    Raises:
        BadRequest: the path has a dot segment.
    """
    if any(segment in (".", "..") for segment in path.split("/")):
        raise BadRequest("the path must not contain '.' or '..' segments")


def bearer(headers: Headers, query: str = "") -> str | None:
    """The bearer token of the ``Authorization`` header, or of the ``access_token`` query
    parameter (browsers cannot set headers on WebSockets; RFC 6750 § 2.3)."""
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if query:
        for key, item in parse_qsl(query):
            if key == "access_token" and item:
                return item
    return None


class Edge:
    """The gateway's configuration and the checks its routes share."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.table = RouteTable(overrides=settings.policy_overrides)
        self.breakers = Breakers(
            threshold=settings.breaker_failure_threshold,
            reset_seconds=settings.breaker_reset_seconds,
            not_failures=proxy.NOT_UPSTREAM_FAULTS,
        )
        # Revocations reach the gateway by polling the auth service (it has no broker):
        # increments every ``revocation_sync_interval`` seconds (2 s by default).
        self.revocations = RevocationState()
        self.revocation_feed = RevocationFeed(
            settings.service_name, self.revocations, None,
            http_snapshot(settings.revocations_url or snapshot_url(settings.jwks_url),
                          incremental=True, headers=caller_authorization(settings)),
            sync_interval=settings.revocation_sync_interval)
        self.verifier = TokenVerifier(
            issuer=settings.jwt_issuer, audience=settings.jwt_audience,
            jwks_url=settings.jwks_url, cache_seconds=settings.jwks_cache_seconds,
            max_lifetime=settings.token_max_lifetime, revocations=self.revocations,
        )
        # Health, status and the merged OpenAPI ask one replica of each upstream.
        self.first_replicas = {name: settings.upstream_urls(name)[0]
                               for name in settings.upstreams}
        self.ready_upstreams = {
            name: url for name, url in self.first_replicas.items()
            if settings.readiness_requires is None or name in settings.readiness_requires
        }
        self.edge_policy = self.table.policy(EDGE_POLICY)
        self.caps = ConcurrencyCaps(settings)

    def ip_of(self, request: Request | WebSocket) -> str:
        """The client's address (``X-Forwarded-For`` trusted for the configured hops)."""
        return proxy.client_address(request.scope.get("client"),
                                    request.headers.get("x-forwarded-for"),
                                    self.settings.trusted_proxy_hops)

    async def limit(self, request: Request, policy: Policy, scope: LimitScope,
                    key: str) -> None:
        """Count the request (429 raised); its state goes to the RateLimit fields."""
        limiter: EdgeRateLimiter = request.app.state.limiter
        states: list[LimitState] = request.scope.setdefault("state", {}).setdefault(
            "ratelimit", [])
        state = await limiter.hit(policy, scope, key)
        if state is not None:
            states.append(state)

    async def edge_limit(self, request: Request) -> None:
        """The per-address limit of what the gateway answers itself."""
        await self.limit(request, self.edge_policy, "ip", self.ip_of(request))

    async def authenticate(self, headers: Headers, policy: Policy, query: str = "", *,
                           public: bool = False) -> Principal | None:
        """The verified caller, when ``policy`` wants one (None for public routes).

        Raises:
            Unauthorized: (401) no or a bad token where one is required.
            Forbidden: (403) the token lacks the policy's permission.
        """
        if not policy.auth_required:
            return None
        token = bearer(headers, query)
        if token is None:
            if public:
                return None
            raise Unauthorized()
        principal = await self.verifier.verify(token)
        if policy.permission and not principal.has(policy.permission):
            raise Forbidden(f"this route requires the permission {policy.permission}")
        return principal

    def is_internal(self, request: Request) -> bool:
        """May see ``/metrics`` and the ``/readyz`` details: a loopback caller (its address
        as the rate limits see it), or one presenting ``metrics_token`` as a bearer."""
        token = self.settings.metrics_token
        if token is not None and hmac.compare_digest(
                (bearer(request.headers) or "").encode(), token.get_secret_value().encode()):
            return True
        try:
            return ipaddress.ip_address(self.ip_of(request)).is_loopback
        except ValueError:
            return False

    async def readiness(self, request_client: Any,
                        limiter_mode: str) -> tuple[bool, Mapping[str, Any]]:
        """Ready when every required upstream's ``/readyz`` answers 200; the details
        also say how rate limits are kept (``ratelimit``)."""
        checks = await status.readiness(request_client, self.ready_upstreams,
                                        self.settings.health_timeout)
        details: dict[str, Any] = {name: c["status"] for name, c in checks.items()}
        details["ratelimit"] = limiter_mode
        details["revocations"] = self.revocation_feed.readiness()
        return all(c["status"] == "ok" for c in checks.values()), details
