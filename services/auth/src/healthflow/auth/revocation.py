"""Revocation use cases of the auth service: what makes access tokens refused everywhere.

A revocation is recorded (``revocations`` collection, purged once every token it
concerns has expired) and published in the transaction of the change that causes it:
``auth.session_revoked`` (logout, a reused refresh token), ``auth.user_tokens_revoked``
(deactivation, role changes, :func:`revoke_all_sessions` for password changes and
resets). Every service's verifier holds them (:mod:`healthflow.common.revocation`) and
reads :func:`revocation_snapshot` when it starts. Key revocation is
:func:`healthflow.auth.signing.revoke_key`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from healthflow.auth import events, store
from healthflow.common.auth import LEEWAY_SECONDS
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.service import ServiceRuntime


def revoked_until(runtime: ServiceRuntime, now: datetime) -> datetime:
    """When a revocation recorded ``now`` can be forgotten: every token it concerns has
    expired by then (no verifier accepts a lifetime beyond ``token_max_lifetime``)."""
    return now + timedelta(seconds=runtime.settings.token_max_lifetime + LEEWAY_SECONDS)


async def revoke_session_tokens(runtime: ServiceRuntime, uow: UnitOfWork,
                                 session_doc: Document, *, reason: events.RevocationReason,
                                 now: datetime) -> None:
    until = revoked_until(runtime, now)
    await store.record_revocation(runtime.db, "session", session_doc["_id"], reason=reason,
                                  at=now, until=until, session=uow.session)
    uow.publish(events.SessionRevoked(session_id=session_doc["_id"],
                                      user_id=session_doc["user_id"], reason=reason,
                                      until=until), subject=session_doc["user_id"])


async def revoke_user_tokens(runtime: ServiceRuntime, uow: UnitOfWork, user_id: str, *,
                              reason: events.RevocationReason, now: datetime) -> None:
    # Whole seconds, as ``iat`` is: a token issued in this second is refused too.
    not_before = now.replace(microsecond=0)
    until = revoked_until(runtime, now)
    await store.record_revocation(runtime.db, "user", user_id, reason=reason, at=now,
                                  until=until, not_before=not_before, session=uow.session)
    uow.publish(events.UserTokensRevoked(user_id=user_id, not_before=not_before,
                                         reason=reason, until=until), subject=user_id)


async def issue_time(runtime: ServiceRuntime, user_id: str, now: datetime) -> datetime:
    """The ``iat`` of a token minted ``now``: one second past the user's "not before" when
    that is this very second (``iat`` is whole seconds and tokens with ``iat`` ≤ "not
    before" are refused, so a token issued just after a revocation would be refused)."""
    not_before = await store.user_not_before(runtime.db, user_id)
    if not_before is not None and not_before >= now.replace(microsecond=0):
        return not_before + timedelta(seconds=1)
    return now


async def revoke_all_sessions(runtime: ServiceRuntime, user_id: str, *,
                              reason: events.RevocationReason, actor: str,
                              uow: UnitOfWork | None = None) -> int:
    """End every session of ``user_id`` (their refresh families) and refuse, at every
    service within seconds, each access token of theirs issued until now (``iat`` ≤ now,
    whole seconds); publishes ``auth.user_tokens_revoked``. Returns how many active
    sessions were revoked.

    For deactivation and password change or reset (``reason``). Inside ``uow``, when
    given (so the change that causes it commits with it); else in a transaction of its
    own in ``actor``'s name. A user that does not exist is not an error (0).
    """

    async def apply(work: UnitOfWork) -> int:
        now = utcnow()
        revoked = await store.revoke_user_sessions(runtime.db, user_id, reason=reason, now=now,
                                                   session=work.session)
        await revoke_user_tokens(runtime, work, user_id, reason=reason, now=now)
        return revoked

    if uow is not None:
        return await apply(uow)
    return await runtime.transact(apply, actor=actor)


async def revocation_snapshot(runtime: ServiceRuntime,
                              since: datetime | None = None) -> dict[str, Any]:
    """What every verifier must refuse now (:data:`healthflow.common.revocation.Snapshot`:
    ``sessions`` ``[{id, until}]``, ``users`` ``[{id, not_before, until}]``, ``keys``
    ``[{kid, until}]``, and ``as_of``; times as epoch seconds); only what was recorded
    at or after ``since`` when given (a poller's increment)."""
    now = utcnow()
    snapshot: dict[str, Any] = {"sessions": [], "users": [], "keys": [],
                                "as_of": now.timestamp()}
    for doc in await store.current_revocations(runtime.db, now, since):
        until = doc["until"].timestamp()
        if doc["kind"] == "session":
            snapshot["sessions"].append({"id": doc["ref"], "until": until})
        elif doc["kind"] == "user":
            snapshot["users"].append({"id": doc["ref"], "until": until,
                                      "not_before": doc["not_before"].timestamp()})
        elif doc["kind"] == "key":
            snapshot["keys"].append({"kid": doc["ref"], "until": until})
    return snapshot
