"""Failed-login throttling (``limits``, async API) that an attacker cannot turn against
the account's owner (OWASP Authentication Cheat Sheet, "Account Lockout"; NIST SP
800-63B §5.2.2 rate limiting).

* Per **(account, client address) pair**: each attempt is counted on entry against
  every window of ``settings.login_failures_per_client`` (default ``5/5 minutes``,
  ``10/hour``, ``20/day``), so the wait grows as the client keeps failing: after 5
  failures it waits up to 5 minutes, after 10 up to an hour, after 20 a day. A success
  forgets the pair's failures. Another client is not affected.
* Per **account**, a generous ceiling (``login_failures_account_ceiling``, default
  ``50/15 minutes`` of failures from all clients together) that never locks: while it
  is exceeded, a client with recent failures there gets no more, and any other gets
  ``login_failures_over_ceiling`` (default ``1/15 minutes``) instead of its usual
  budget — which slows a distributed guesser, and still lets a client with no recent
  failures (the owner) try its password at once.
* Per **client address** (``login_failures_per_ip``, default ``20/15 minutes``):
  failures against any accounts, against password spraying. Only failures count, so
  users behind one NAT who log in successfully never spend it.

A spent budget is a :class:`Throttled`: 429 with ``Retry-After`` (RFC 6585 §4,
RFC 9110 §10.2.3) before the password is checked. Counters live in memory, or in
Redis when ``AUTH_REDIS_URL`` / ``REDIS_URL`` is set so that every replica shares
them. Accounts are keyed by a hash of the normalised email, known or not, so the
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
from healthflow.common.errors import TooManyRequests

NO_ADDRESS = "unknown"
"""The pair's client part when the address is not known (direct calls, tests)."""


@dataclass(frozen=True)
class Throttled:
    """A spent budget and seconds until a failure leaves its window. ``scope``:
    ``account`` (this client's budget at this account) or ``ip`` (the address's)."""

    scope: Literal["account", "ip"]
    retry_after: int


def refusal(throttled: Throttled) -> TooManyRequests:
    """The 429 problem (RFC 9457) for ``throttled``, with ``Retry-After`` in seconds."""
    if throttled.scope == "ip":
        detail = ("too many failed logins from this client address; wait "
                  f"{throttled.retry_after} s before trying again")
    else:
        detail = ("too many failed logins from this client for this account; wait "
                  f"{throttled.retry_after} s before trying again (other devices are not "
                  "affected)")
    return TooManyRequests(detail, retry_after=throttled.retry_after)


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
        self.per_client: list[RateLimitItem] = [
            parse(t) for t in settings.login_failures_per_client]
        self.over_ceiling: RateLimitItem = parse(settings.login_failures_over_ceiling)
        self.ceiling: RateLimitItem = parse(settings.login_failures_account_ceiling)
        self.per_ip: RateLimitItem = parse(settings.login_failures_per_ip)
        # Several databases (tests, tenants) may share one Redis: keep their counters apart.
        self.namespace = settings.database_name

    @staticmethod
    def account_key(email_normalized: str) -> str:
        return hashlib.sha256(email_normalized.encode()).hexdigest()[:32]

    @classmethod
    def pair_key(cls, email_normalized: str, ip: str | None) -> str:
        """The (account, client address) pair's key: hashes only (no email, no address)."""
        return hashlib.sha256(
            f"{cls.account_key(email_normalized)}|{ip or NO_ADDRESS}".encode()).hexdigest()[:32]

    async def admit(self, email_normalized: str, ip: str | None) -> Throttled | None:
        """Admit one attempt at the account from ``ip``, or say which budget is spent
        (the address's, then this client's at this account).

        The attempt is counted against the pair at once and atomically (a moving-window
        ``hit`` in each window), so parallel guesses cannot overshoot; :meth:`succeeded`
        forgets it again. The address and the account's ceiling are only tested here and
        charged by :meth:`failed`.
        """
        if ip and not await self.limiter.test(self.per_ip, self.namespace, "ip", ip):
            return Throttled("ip", await self._retry_after(self.per_ip, "ip", ip))
        pair = self.pair_key(email_normalized, ip)
        windows = list(self.per_client)
        account = self.account_key(email_normalized)
        if not await self.limiter.test(self.ceiling, self.namespace, "acct", account):
            # many clients failing: one guess each, none for a client that has failed
            windows.append(self.over_ceiling)
            for item in self.per_client:
                stats = await self.limiter.get_window_stats(item, self.namespace, "pair", pair)
                if stats.remaining < item.amount:
                    return Throttled("account", await self._retry_after(item, "pair", pair))
        for item in windows:
            if not await self.limiter.hit(item, self.namespace, "pair", pair):
                # the longest wait of the spent windows: trying sooner is refused again
                waits = [await self._retry_after(w, "pair", pair) for w in windows
                         if not await self.limiter.test(w, self.namespace, "pair", pair)]
                return Throttled("account", max(waits, default=1))
        return None

    async def failed(self, email_normalized: str, ip: str | None) -> None:
        """Count one failure against the client address and the account's ceiling (the
        pair's was counted on entry)."""
        await self.limiter.hit(self.ceiling, self.namespace, "acct",
                               self.account_key(email_normalized))
        if ip:
            await self.limiter.hit(self.per_ip, self.namespace, "ip", ip)

    async def succeeded(self, email_normalized: str, ip: str | None) -> None:
        """Forget this client's failures at the account (the address's and the account's
        ceiling stay counted: other clients may be guessing)."""
        pair = self.pair_key(email_normalized, ip)
        for item in [*self.per_client, self.over_ceiling]:
            await self.limiter.clear(item, self.namespace, "pair", pair)

    async def _retry_after(self, item: RateLimitItem, kind: str, key: str) -> int:
        stats = await self.limiter.get_window_stats(item, self.namespace, kind, key)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def allow_notice(self, limit: str, kind: str, email_normalized: str) -> bool:
        """Count one ``kind`` notice to the account (``limit`` in ``limits`` notation);
        whether it is still within the budget (e-mails an attacker can trigger)."""
        return await self.limiter.hit(parse(limit), self.namespace, kind,
                                      self.account_key(email_normalized))


    async def spend(self, limit: str, kind: str, key: str) -> int | None:
        """Count one ``kind`` action of ``key`` (an id, hashed here) against ``limit``
        (``limits`` notation); ``None`` while within it, else the seconds to wait."""
        item, hashed = parse(limit), self.account_key(key)
        if await self.limiter.hit(item, self.namespace, kind, hashed):
            return None
        return await self._retry_after(item, kind, hashed)
