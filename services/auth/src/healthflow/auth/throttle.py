"""Failed-login throttling per account and per client address (``limits``, async API).

Failures are counted in a moving window (``settings.login_failures_per_account``,
default 5 per 15 minutes; ``..._per_ip``, default 20 per 15 minutes). While a
budget is spent, token requests for that account or from that address are
refused with 429 and ``Retry-After`` (RFC 9110 §10.2.3; RFC 6585 §4) before the
password is even checked. A successful login forgets the account's failures.
Counters live in memory, or in Redis when ``AUTH_REDIS_URL`` / ``REDIS_URL`` is
set so that every replica shares them.

Accounts are keyed by a hash of the normalised email, known or not, so the
throttle behaves the same for unknown emails (no enumeration through it).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Literal

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from healthflow.auth.settings import Settings


@dataclass(frozen=True)
class Throttled:
    """A spent budget: which one, and seconds until a failure leaves the window."""

    scope: Literal["account", "ip"]
    retry_after: int


class LoginThrottle:
    """Counts failed logins; says when a request must wait."""

    def __init__(self, settings: Settings) -> None:
        if settings.redis_url:
            uri = "async+" + settings.redis_url if not settings.redis_url.startswith(
                "async+") else settings.redis_url
            storage = storage_from_string(uri, key_prefix="healthflow-auth")
        else:
            storage = storage_from_string("async+memory://")
        self.storage = storage
        self.limiter = MovingWindowRateLimiter(storage)
        self.per_account: RateLimitItem = parse(settings.login_failures_per_account)
        self.per_ip: RateLimitItem = parse(settings.login_failures_per_ip)
        # Several databases (tests, tenants) may share one Redis: keep their counters apart.
        self.namespace = settings.database_name

    @staticmethod
    def account_key(email_normalized: str) -> str:
        return hashlib.sha256(email_normalized.encode()).hexdigest()[:32]

    async def admit(self, email_normalized: str, ip: str | None) -> Throttled | None:
        """Admit one login attempt, or say which budget is spent (address, then account).

        The attempt is counted against the account at once and atomically (a
        moving-window ``hit``), so parallel guesses cannot overshoot the budget;
        :meth:`succeeded` forgets it again. The address is only tested here and
        charged by :meth:`failed`, so many users behind one NAT who log in
        successfully never exhaust it.
        """
        if ip and not await self.limiter.test(self.per_ip, self.namespace, "ip", ip):
            return Throttled("ip", await self._retry_after(self.per_ip, "ip", ip))
        account = self.account_key(email_normalized)
        if not await self.limiter.hit(self.per_account, self.namespace, "acct", account):
            return Throttled("account", await self._retry_after(self.per_account, "acct", account))
        return None

    async def failed(self, ip: str | None) -> None:
        """Count one failure against the client address (the account's was counted on entry)."""
        if ip:
            await self.limiter.hit(self.per_ip, self.namespace, "ip", ip)

    async def succeeded(self, email_normalized: str) -> None:
        """Forget the account's failures (the address's stay counted)."""
        await self.limiter.clear(self.per_account, self.namespace, "acct",
                                 self.account_key(email_normalized))

    async def _retry_after(self, item: RateLimitItem, kind: str, key: str) -> int:
        stats = await self.limiter.get_window_stats(item, self.namespace, kind, key)
        return max(1, math.ceil(stats.reset_time - time.time()))


    async def allow_notice(self, limit: str, kind: str, email_normalized: str) -> bool:
        """Count one ``kind`` notice to the account (``limit`` in ``limits`` notation);
        whether it is still within the budget (e-mails an attacker can trigger)."""
        return await self.limiter.hit(parse(limit), self.namespace, kind,
                                      self.account_key(email_normalized))
