"""Session use cases: log in (password grant), refresh (rotation), log out.

A session is one refresh-token family (RFC 9700 §4.14.2): every refresh marks
the presented token used and issues its successor; presenting a used token
again revokes the whole family and publishes ``auth.refresh_reuse_detected``.
Sessions end at an absolute lifetime (``settings.session_max_age``) however
often they are refreshed; refresh tokens also expire when idle
(``settings.refresh_token_ttl``).

Every failure of a grant is answered with the same :class:`InvalidGrant`
(RFC 6749 §5.2 ``invalid_grant``, 400): an unknown email, a wrong password and
an inactive account are indistinguishable in status, body and (a dummy Argon2
verification) timing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from healthflow.auth import store
from healthflow.auth.domain import (
    RefreshOutcome,
    access_token_claims,
    assess_refresh,
    hash_refresh_token,
    new_refresh_token,
    normalize_email,
    refresh_expiry,
)
from healthflow.auth.events import (
    LoggedOut,
    LoginFailed,
    LoginFailureReason,
    LoginSucceeded,
    RefreshReuseDetected,
    TokenRefreshed,
)
from healthflow.auth.keys import KeyRing
from healthflow.auth.passwords import PasswordHasher
from healthflow.auth.settings import Settings
from healthflow.auth.throttle import LoginThrottle
from healthflow.common.errors import BadRequest, TooManyRequests
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import permissions_for
from healthflow.common.service import ServiceRuntime

INVALID_CREDENTIALS = "the email or password is incorrect, or the account is not active"
INVALID_REFRESH = "the refresh token is invalid, expired or revoked; log in again"


class InvalidGrant(BadRequest):
    """RFC 6749 §5.2 ``invalid_grant`` as problem+json (the ``error`` member is kept)."""

    title: ClassVar[str] = "Invalid Grant"
    slug: ClassVar[str] = "invalid-grant"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, error="invalid_grant")


@dataclass(frozen=True)
class IssuedTokens:
    """An access token (JWT), its lifetime in seconds, and the new refresh token."""

    access_token: str
    refresh_token: str
    expires_in: int
    session_id: str


@dataclass
class Auth:
    """What the session use cases need (one per app)."""

    runtime: ServiceRuntime
    settings: Settings
    hasher: PasswordHasher
    throttle: LoginThrottle
    keys: KeyRing

    # ------------------------------------------------------------------ helpers

    def _mint(self, user: Document, session_id: str, client_id: str, auth_time: datetime,
              now: datetime) -> str:
        roles = list(user.get("roles", []))
        claims = access_token_claims(
            user_id=user["_id"], roles=roles, permissions=permissions_for(roles),
            session_id=session_id, client_id=client_id, issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience, now=now, ttl=self.settings.access_token_ttl,
            auth_time=auth_time,
        )
        return self.keys.sign(claims)

    async def _issue_refresh(self, uow: UnitOfWork, *, session_doc: Document, generation: int,
                             now: datetime) -> str:
        token = new_refresh_token()
        await store.insert_refresh_token(self.runtime.db, {
            "_id": hash_refresh_token(token),
            "session_id": session_doc["_id"],
            "user_id": session_doc["user_id"],
            "generation": generation,
            "issued_at": now,
            "expires_at": refresh_expiry(now=now, idle_ttl=self.settings.refresh_token_ttl,
                                         session_expires_at=session_doc["expires_at"]),
            "used_at": None,
            "purge_at": session_doc["purge_at"],
        }, session=uow.session)
        return token

    async def _record_failure(self, *, user_id: str | None, reason: LoginFailureReason,
                              client_ip: str | None, client_id: str) -> None:
        async def apply(uow: UnitOfWork) -> None:
            uow.publish(LoginFailed(user_id=user_id, reason=reason, client_ip=client_ip,
                                    client_id=client_id),
                        subject=user_id)

        await self.runtime.transact(apply, actor=user_id or "anonymous")

    # ------------------------------------------------------------------ use cases

    async def login(self, *, email: str, password: str, client_id: str,
                    client_ip: str | None) -> IssuedTokens:
        """Password grant: check throttles, verify, open a session, issue tokens.

        Raises:
            TooManyRequests: the account's or the address's failure budget is
                spent (429 with ``Retry-After``); recorded as ``auth.login_failed``.
            InvalidGrant: unknown email, wrong password or inactive account
                (one answer for all three); recorded as ``auth.login_failed``.
        """
        email_key = normalize_email(email)
        throttled = await self.throttle.admit(email_key, client_ip)
        if throttled is not None:
            why: LoginFailureReason = (
                "throttled_account" if throttled.scope == "account" else "throttled_ip")
            known = await store.find_user_by_email(self.runtime.db, email_key)
            await self._record_failure(user_id=known["_id"] if known else None, reason=why,
                                       client_ip=client_ip, client_id=client_id)
            raise TooManyRequests(
                "too many failed logins; wait before trying again",
                retry_after=throttled.retry_after,
            )
        user = await store.find_user_by_email(self.runtime.db, email_key)
        ok = await self.hasher.verify(user["password_hash"] if user else None, password)
        reason: LoginFailureReason | None = None
        if user is None:
            reason = "unknown_account"
        elif not ok:
            reason = "bad_password"
        elif user["status"] != "active":
            reason = "account_inactive"
        if reason is not None:
            await self.throttle.failed(client_ip)
            await self._record_failure(user_id=user["_id"] if user else None, reason=reason,
                                       client_ip=client_ip, client_id=client_id)
            raise InvalidGrant(INVALID_CREDENTIALS)
        assert user is not None
        await self.throttle.succeeded(email_key)
        new_hash = (await self.hasher.hash(password)
                    if self.hasher.needs_rehash(user["password_hash"]) else None)
        return await self._open_session(user, client_id=client_id, client_ip=client_ip,
                                        new_hash=new_hash)

    async def _open_session(self, user: Document, *, client_id: str, client_ip: str | None,
                            new_hash: str | None) -> IssuedTokens:
        async def apply(uow: UnitOfWork) -> tuple[str, str, datetime]:
            now = utcnow()
            expires_at = now + timedelta(seconds=self.settings.session_max_age)
            session_doc: Document = {
                "_id": str(uuid.uuid4()),
                "user_id": user["_id"],
                "client_id": client_id,
                "status": "active",
                "created_at": now,
                "expires_at": expires_at,
                "purge_at": expires_at + timedelta(days=1),
                "generation": 1,
                "last_used_at": now,
                "revoked_at": None,
                "revoked_reason": None,
                "client_ip": client_ip,
            }
            await store.insert_session(self.runtime.db, session_doc, session=uow.session)
            refresh = await self._issue_refresh(uow, session_doc=session_doc, generation=1,
                                                now=now)
            if new_hash is not None:  # parameters changed since this hash was made
                await store.update_user(self.runtime.db, user["_id"],
                                        {"$set": {"password_hash": new_hash}},
                                        session=uow.session)
            uow.publish(LoginSucceeded(user_id=user["_id"], session_id=session_doc["_id"],
                                       client_ip=client_ip, client_id=client_id),
                        subject=user["_id"])
            return session_doc["_id"], refresh, now

        session_id, refresh, now = await self.runtime.transact(apply, actor=user["_id"])
        access = self._mint(user, session_id, client_id, auth_time=now, now=now)
        return IssuedTokens(access, refresh, self.settings.access_token_ttl, session_id)

    async def refresh(self, *, refresh_token: str, client_ip: str | None) -> IssuedTokens:
        """Rotate ``refresh_token``: mark it used, issue its successor and a new access token.

        Roles and permissions are read afresh, so role changes apply here.

        Raises:
            InvalidGrant: unknown, expired or revoked token, ended session,
                inactive user — or a reused token, in which case the whole family
                was revoked and ``auth.refresh_reuse_detected`` published first.
        """
        token_hash = hash_refresh_token(refresh_token)

        async def apply(uow: UnitOfWork) -> tuple[RefreshOutcome, Any]:
            db = self.runtime.db
            now = utcnow()
            record = await store.get_refresh_token(db, token_hash, session=uow.session)
            if record is None:
                return RefreshOutcome.SESSION_ENDED, None
            session_doc = await store.get_session(db, record["session_id"], session=uow.session)
            if session_doc is None:
                return RefreshOutcome.SESSION_ENDED, None
            outcome = assess_refresh(
                token_used=record["used_at"] is not None,
                token_expires_at=record["expires_at"],
                session_revoked=session_doc["status"] != "active",
                session_expires_at=session_doc["expires_at"],
                now=now,
            )
            if outcome is RefreshOutcome.ROTATE and not await store.mark_refresh_used(
                db, token_hash, now=now, session=uow.session
            ):
                outcome = RefreshOutcome.REUSED  # a concurrent request used it first
            if outcome is RefreshOutcome.REUSED:
                await store.revoke_session(db, session_doc["_id"], reason="refresh_reuse",
                                           now=now, session=uow.session)
                uow.publish(
                    RefreshReuseDetected(
                        user_id=session_doc["user_id"], session_id=session_doc["_id"],
                        presented_generation=record["generation"],
                        current_generation=session_doc["generation"], client_ip=client_ip,
                    ),
                    subject=session_doc["user_id"],
                )
                return outcome, None
            if outcome is not RefreshOutcome.ROTATE:
                return outcome, None
            user = await store.get_user(db, session_doc["user_id"], session=uow.session)
            if user is None or user["status"] != "active":
                await store.revoke_session(db, session_doc["_id"], reason="user_inactive",
                                           now=now, session=uow.session)
                return RefreshOutcome.SESSION_ENDED, None
            generation = int(session_doc["generation"]) + 1
            new_token = await self._issue_refresh(uow, session_doc=session_doc,
                                                  generation=generation, now=now)
            await store.advance_session(db, session_doc["_id"], generation=generation, now=now,
                                        session=uow.session)
            uow.publish(TokenRefreshed(user_id=user["_id"], session_id=session_doc["_id"],
                                       generation=generation, client_ip=client_ip),
                        subject=user["_id"])
            return outcome, (user, session_doc, new_token, now)

        outcome, result = await self.runtime.transact(apply, actor="system:auth")
        if outcome is not RefreshOutcome.ROTATE:
            raise InvalidGrant(INVALID_REFRESH)
        user, session_doc, new_token, now = result
        access = self._mint(user, session_doc["_id"], session_doc["client_id"],
                            auth_time=session_doc["created_at"], now=now)
        return IssuedTokens(access, new_token, self.settings.access_token_ttl,
                            session_doc["_id"])

    async def logout(self, *, user_id: str, session_id: str | None) -> bool:
        """Revoke the caller's session ``session_id`` (its refresh family).

        Returns whether an active session was revoked (logging out twice is
        harmless). Access tokens already issued simply expire.
        """
        if not session_id:
            return False

        async def apply(uow: UnitOfWork) -> bool:
            doc = await store.get_session(self.runtime.db, session_id, session=uow.session)
            if doc is None or doc["user_id"] != user_id:
                return False
            revoked = await store.revoke_session(self.runtime.db, session_id, reason="logout",
                                                 now=utcnow(), session=uow.session)
            if revoked:
                uow.publish(LoggedOut(user_id=user_id, session_id=session_id), subject=user_id)
            return revoked

        return await self.runtime.transact(apply, actor=user_id)
