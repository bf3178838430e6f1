"""Rate limits per client IP and per authenticated subject, shared through Redis.

Built on the ``limits`` library's asyncio API (``limits.aio``). Storage is this
process's memory by default and Redis when a URL is configured, so that every
gateway replica draws from one budget.

Strategy: **moving window** by default. It records one timestamp per accepted
request and admits a request only when fewer than ``quota`` were accepted in the
last ``window`` seconds; on Redis the check-and-record is one atomic Lua script,
so two replicas together never accept more than the quota, and there is no
burst of 2 × quota across a fixed window's boundary. Its cost — memory
proportional to the quota per key — is small at our quotas (≤ 3000 per key).
``sliding-window`` (a weighted two-counter approximation, O(1) memory) can be
chosen for very large quotas, at the price of approximate counts.

Responses carry the fields of draft-ietf-httpapi-ratelimit-headers-10 as RFC 9651
Structured Fields (Lists of quoted policy names with parameters)::

    RateLimit-Policy: "default-subject";q=300;w=60, "default-ip";q=3000;w=60
    RateLimit: "default-subject";r=299;t=60, "default-ip";r=2999;t=60

``q`` is the quota (requests), ``w`` the window (seconds), ``r`` the remaining
quota and ``t`` the seconds until the quota is restored (for a moving window:
until the oldest counted request leaves the window). A refused request gets 429
problem+json with ``Retry-After`` (RFC 9110 §10.2.3) equal to that ``t``.

When Redis fails the limiter does not fail open: it falls back to the same
strategy over this process's memory (the ``limits`` library's ``MemoryStorage``;
``limits`` has no fallback of its own — Flask-Limiter's ``in_memory_fallback``
is built the same way), so each replica enforces the quotas alone (at most
replicas × quota in all) until Redis answers again. The switch is logged once
each way, counted in ``healthflow_gateway_ratelimit_errors_total``, shown as
``ratelimit: per-process (redis unreachable)`` in the ``/readyz`` details, and
Redis is tried again every :data:`RETRY_SHARED_SECONDS`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Literal

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import (
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)
from prometheus_client import Counter

from healthflow.common.errors import TooManyRequests
from healthflow.gateway.routes import Policy
from healthflow.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

LimitScope = Literal["ip", "subject"]
RETRY_SHARED_SECONDS = 5.0  # while on the fallback, how often Redis is tried again

RATE_LIMITED = Counter(
    "healthflow_gateway_rate_limited_total", "Requests refused with 429", ["policy"]
)
RATELIMIT_ERRORS = Counter(
    "healthflow_gateway_ratelimit_errors_total",
    "Rate-limit checks the shared store failed (answered by the per-process fallback)",
)


@dataclass(frozen=True)
class LimitState:
    """One policy's state after a request: quota and window (s), remaining, reset (s)."""

    policy: str
    quota: int
    window: int
    remaining: int
    reset: int


def storage_uri(redis_url: str) -> str:
    """``redis://h:p/db`` → ``async+redis://h:p/db`` (the ``limits`` async scheme)."""
    if redis_url.startswith("async+"):
        return redis_url
    return "async+" + redis_url


class EdgeRateLimiter:
    """Applies a :class:`~healthflow.gateway.routes.Policy`'s IP and subject limits."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.enabled = settings.ratelimit_enabled
        self.shared = settings.redis_url is not None
        storage: Storage
        if settings.redis_url:
            storage = RedisStorage(
                storage_uri(settings.redis_url),
                key_prefix=settings.ratelimit_key_prefix,
                wrap_exceptions=True,
            )
        else:
            storage = MemoryStorage()
        self.storage = storage
        kind: type[RateLimiter] = (SlidingWindowCounterRateLimiter
                                   if settings.ratelimit_strategy == "sliding-window"
                                   else MovingWindowRateLimiter)
        self.strategy: RateLimiter = kind(storage)
        self.fallback: RateLimiter = kind(MemoryStorage())
        self.degraded = False  # True while the shared store fails
        self._retry_shared_at = 0.0
        self._items: dict[str, RateLimitItem] = {}

    @property
    def mode(self) -> str:
        """``shared (redis)``, ``per-process (redis unreachable)`` or ``per-process``."""
        if not self.shared:
            return "per-process"
        return "per-process (redis unreachable)" if self.degraded else "shared (redis)"

    async def _count(self, item: RateLimitItem, *keys: str) -> tuple[bool, Any]:
        """Hit and read the window, on Redis, or on the fallback while Redis fails."""
        if not self.degraded or time.monotonic() >= self._retry_shared_at:
            try:
                accepted = await self.strategy.hit(item, *keys)
                stats = await self.strategy.get_window_stats(item, *keys)
            except Exception as exc:
                RATELIMIT_ERRORS.inc()
                self._retry_shared_at = time.monotonic() + RETRY_SHARED_SECONDS
                if not self.degraded:
                    self.degraded = True
                    log.error("rate-limit store failed; limits are per process until it "
                              "answers", extra={"error": type(exc).__name__})
            else:
                if self.degraded:
                    self.degraded = False
                    log.warning("rate-limit store answers again; limits are shared")
                return accepted, stats
        accepted = await self.fallback.hit(item, *keys)
        return accepted, await self.fallback.get_window_stats(item, *keys)

    def _item(self, limit: str) -> RateLimitItem:
        item = self._items.get(limit)
        if item is None:
            item = self._items[limit] = parse(limit)
        return item

    async def hit(self, policy: Policy, scope: LimitScope, key: str) -> LimitState | None:
        """Count one request of ``key`` against ``policy``'s ``scope`` limit.

        Returns the state for the response fields, or ``None`` when the policy
        has no such limit (limits disabled).

        Raises:
            TooManyRequests: the quota is spent (429, ``Retry-After`` in seconds,
                the RateLimit fields attached).
        """
        limit = policy.ip_limit if scope == "ip" else policy.subject_limit
        if not self.enabled or limit is None:
            return None
        item = self._item(limit)
        name = f"{policy.name}-{scope}"
        accepted, stats = await self._count(item, policy.name, scope, key)
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        state = LimitState(name, item.amount, item.get_expiry(),
                           max(0, stats.remaining), reset)
        if not accepted:
            RATE_LIMITED.labels(policy.name).inc()
            raise TooManyRequests(
                f"rate limit {name} ({item.amount} requests per {item.get_expiry()} s) "
                f"is spent; retry in {max(1, reset)} s",
                retry_after=max(1, reset),
                headers=dict(fields([state])),
            )
        return state

    async def close(self) -> None:
        close = getattr(self.storage, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):  # best effort at shutdown
                await close()


def _sf_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def fields(states: list[LimitState]) -> list[tuple[str, str]]:
    """The ``RateLimit-Policy`` and ``RateLimit`` header fields for ``states``.

    Empty when ``states`` is empty. Syntax: draft-ietf-httpapi-ratelimit-headers-10
    §§ 3–4, Structured Field Lists (RFC 9651 § 3.1).
    """
    if not states:
        return []
    policy = ", ".join(f"{_sf_string(s.policy)};q={s.quota};w={s.window}" for s in states)
    current = ", ".join(f"{_sf_string(s.policy)};r={s.remaining};t={s.reset}" for s in states)
    return [("RateLimit-Policy", policy), ("RateLimit", current)]
