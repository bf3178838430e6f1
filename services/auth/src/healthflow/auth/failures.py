"""Failed token requests as events: each failure is one ``auth.login_failed``, except
refusals by the failed-login throttle, which are counted per account or address and
window (``refused_logins``) so that refused traffic cannot grow the audit log without
bound: the first refusal of each window is the event, carrying the previous window's
count (``earlier_refusals``)."""

from __future__ import annotations

import hashlib

from prometheus_client import Counter

from healthflow.auth import events, store
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import utcnow
from healthflow.common.service import ServiceRuntime

LOGINS_REFUSED = Counter("healthflow_auth_logins_refused_total",
                         "Token requests refused by the failed-login throttle", ["scope"])


async def record_failure(runtime: ServiceRuntime, *, user_id: str | None,
                         reason: events.LoginFailureReason, client_ip: str | None,
                         client_id: str, earlier_refusals: int | None = None) -> None:
    """Publish one ``auth.login_failed`` (the account by id, never by email)."""

    async def apply(uow: UnitOfWork) -> None:
        uow.publish(events.LoginFailed(user_id=user_id, reason=reason, client_ip=client_ip,
                                       client_id=client_id, earlier_refusals=earlier_refusals),
                    subject=user_id)

    await runtime.transact(apply, actor=user_id or "anonymous")


async def record_refusal(runtime: ServiceRuntime, window: float, scope: str, email_key: str,
                         client_ip: str | None, client_id: str) -> None:
    """Count a throttled refusal (``scope`` ``account`` or ``ip``); the first of each
    ``window`` seconds per account or address becomes an ``auth.login_failed``."""
    LOGINS_REFUSED.labels(scope).inc()
    keyed = email_key if scope == "account" else (client_ip or "unknown")
    key = f"{scope}:{hashlib.sha256(keyed.encode()).hexdigest()}"
    earlier = await store.count_refusal(runtime.db, key, utcnow(), window)
    if earlier is None:
        return
    why: events.LoginFailureReason = (
        "throttled_account" if scope == "account" else "throttled_ip")
    known = await store.find_user_by_email(runtime.db, email_key)
    await record_failure(runtime, user_id=known["_id"] if known else None, reason=why,
                         client_ip=client_ip, client_id=client_id, earlier_refusals=earlier)
