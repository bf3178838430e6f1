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

When Redis is unreachable the limiter fails open (logs, counts
``healthflow_gateway_ratelimit_errors_total``): availability of care wins over
throttling, and the auth service keeps its own login throttling.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Literal

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

RATE_LIMITED = Counter(
    "healthflow_gateway_rate_limited_total", "Requests refused with 429", ["policy"]
)
RATELIMIT_ERRORS = Counter(
    "healthflow_gateway_ratelimit_errors_total",
    "Rate-limit checks skipped because the store failed (fail-open)",
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
        self.strategy: RateLimiter
        if settings.ratelimit_strategy == "sliding-window":
            self.strategy = SlidingWindowCounterRateLimiter(storage)
        else:
            self.strategy = MovingWindowRateLimiter(storage)
        self._items: dict[str, RateLimitItem] = {}

    def _item(self, limit: str) -> RateLimitItem:
        item = self._items.get(limit)
        if item is None:
            item = self._items[limit] = parse(limit)
        return item

    async def hit(self, policy: Policy, scope: LimitScope, key: str) -> LimitState | None:
        """Count one request of ``key`` against ``policy``'s ``scope`` limit.

        Returns the state for the response fields, or ``None`` when the policy
        has no such limit or the store failed (fail-open).

        Raises:
            TooManyRequests: the quota is spent (429, ``Retry-After`` in seconds,
                the RateLimit fields attached).
        """
        limit = policy.ip_limit if scope == "ip" else policy.subject_limit
        if not self.enabled or limit is None:
            return None
        item = self._item(limit)
        name = f"{policy.name}-{scope}"
        try:
            accepted = await self.strategy.hit(item, policy.name, scope, key)
            stats = await self.strategy.get_window_stats(item, policy.name, scope, key)
        except Exception as exc:
            RATELIMIT_ERRORS.inc()
            log.warning("rate-limit store failed; request allowed",
                        extra={"error": type(exc).__name__})
            return None
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
