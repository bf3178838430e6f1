"""Gateway settings from the environment (prefix ``GATEWAY_``, platform-wide fallback).

Durations are in seconds (floats), sizes in bytes. Upstream base URLs come
from ``GATEWAY_UPSTREAM_<NAME>`` (e.g. ``GATEWAY_UPSTREAM_AUTH=http://auth:8101``),
or the JSON map ``GATEWAY_UPSTREAMS``, and default to
``http://127.0.0.1:<port>`` from :data:`healthflow.common.topology.SERVICES`. A
value may list several replicas separated by commas
(``http://10.0.0.5:8106,http://10.0.0.6:8106``); requests then go to them in
turn (round robin), and a retried idempotent request moves on to the next one.
The rate-limit store is Redis when ``GATEWAY_REDIS_URL`` (or the platform-wide
``REDIS_URL``) is set, so that every gateway replica shares one budget;
otherwise it is this process's memory.

Edge caps (:mod:`healthflow.gateway.caps`) count what is open *now* in this
process: concurrent requests and open streams (Server-Sent Events, WebSockets)
per client address and per user. ``max_connections`` is per upstream: each
upstream has a pool of its own, so one slow upstream (or the clients holding it)
cannot take the connections another needs.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from healthflow.common.settings import ServiceSettings
from healthflow.common.topology import GATEWAY_PORT, SERVICES

RateLimitStrategy = Literal["moving-window", "sliding-window"]


class GatewaySettings(ServiceSettings):
    """Everything the gateway reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # No database, broker or object store: production does not ask for them.
    unused_fields: ClassVar[frozenset[str]] = frozenset({
        "mongodb_url", "amqp_url", "s3_endpoint_url", "s3_access_key", "s3_secret_key"})

    service_name: str = "gateway"
    host: str = "127.0.0.1"
    port: int = Field(default=GATEWAY_PORT, ge=1, le=65535)

    # Upstreams: service name -> base URL (filled from the environment, see module doc).
    upstreams: dict[str, str] = Field(default_factory=dict)
    _rotation: dict[str, Iterator[str]] = PrivateAttr(default_factory=dict)

    # CORS: exact origins allowed to call the API from a browser (no wildcard: the
    # gateway allows credentials, and the Fetch standard forbids "*" with them).
    cors_origins: list[str] = Field(
        default_factory=lambda: ["http://localhost:3000", "http://127.0.0.1:3000"]
    )

    # Slow and greedy clients (see healthflow.gateway.caps).
    body_timeout: float = Field(default=10.0, gt=0)  # s for a whole request body (408)
    address_max_requests: int = Field(default=64, ge=1)
    address_max_streams: int = Field(default=16, ge=1)
    user_max_requests: int = Field(default=32, ge=1)
    user_max_streams: int = Field(default=8, ge=1)
    # Bearer token a Prometheus scraper sends for /metrics and the /readyz details
    # (loopback callers need none); unset = loopback only.
    metrics_token: SecretStr | None = None

    # Revocations (healthflow.common.revocation): polled from the auth service's snapshot,
    # only what is new each time; services hear them at once through the broker.
    revocation_sync_interval: float = Field(default=2.0, gt=0)
    # Seconds between re-checks of an open WebSocket session's token (and at once on
    # every revocation heard of): an expired or revoked one closes it with 1008.
    stream_recheck_interval: float = Field(default=15.0, gt=0)

    # Rate limiting (limits library). None = in-memory, one budget per process.
    ratelimit_enabled: bool = True
    redis_url: str | None = None
    ratelimit_key_prefix: str = "healthflow-gateway"
    ratelimit_strategy: RateLimitStrategy = "moving-window"
    # Per route group overrides, e.g. {"token": {"ip_limit": "3/minute"}, "default":
    # {"timeout": 5, "max_body_bytes": 2097152}} (keys: fields of routes.Policy).
    policy_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)

    # Client address: how many reverse proxies in front of the gateway append to
    # X-Forwarded-For (0 = use the socket peer, ignore the client's header).
    trusted_proxy_hops: int = Field(default=0, ge=0, le=10)

    # Resilience toward upstreams.
    connect_timeout: float = Field(default=2.0, gt=0)
    retry_attempts: int = Field(default=3, ge=1, le=10)
    retry_initial_delay: float = Field(default=0.05, gt=0)
    retry_max_delay: float = Field(default=1.0, gt=0)
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_reset_seconds: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=512, ge=1)  # per upstream
    max_keepalive_connections: int = Field(default=128, ge=0)  # per upstream

    # Aggregated documents and health.
    openapi_cache_seconds: float = Field(default=30.0, ge=0)
    health_timeout: float = Field(default=2.0, gt=0)
    # Upstreams whose /readyz must answer 200 for the gateway to be ready (None = all).
    readiness_requires: list[str] | None = None

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard_origin(cls, origins: list[str]) -> list[str]:
        """A wildcard origin with credentials would let any site act as the signed-in
        user (Fetch standard, CORS protocol: ``*`` is refused with credentials)."""
        wild = [o for o in origins if "*" in o or o.strip().lower() == "null"]
        if wild:
            raise ValueError(f"wildcard or null origins {wild} are refused: the gateway "
                             "allows credentials, so list exact origins")
        return origins

    @model_validator(mode="after")
    def _fill_upstreams(self) -> GatewaySettings:
        merged: dict[str, str] = {}
        for name, info in SERVICES.items():
            from_env = os.environ.get(f"GATEWAY_UPSTREAM_{name.upper()}")
            merged[name] = (
                self.upstreams.get(name) or from_env or f"http://127.0.0.1:{info.port}"
            ).rstrip("/")
        for name, url in self.upstreams.items():
            merged.setdefault(name, url.rstrip("/"))
        self.upstreams = merged
        if "jwks_url" not in self.model_fields_set:
            self.jwks_url = f"{merged['auth']}/.well-known/jwks.json"
        return self

    def upstream_urls(self, name: str) -> list[str]:
        """Every replica's base URL (no trailing slash) of upstream ``name``.

        Raises:
            KeyError: ``name`` is not a known upstream.
        """
        return [u.strip().rstrip("/") for u in self.upstreams[name].split(",") if u.strip()]

    def upstream_url(self, name: str) -> str:
        """The base URL of the replica of ``name`` whose turn it is (round robin).

        Raises:
            KeyError: ``name`` is not a known upstream.
        """
        rotation = self._rotation.get(name)
        if rotation is None:
            rotation = self._rotation[name] = itertools.cycle(self.upstream_urls(name))
        return next(rotation)
