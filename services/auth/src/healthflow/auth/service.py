"""Use cases of the auth service; the routes and the command line both call these.

* Accounts: create (patients sign up through :mod:`.credentials`), staff, the first
  admin, read, list, activate, deactivate, give and take roles (``user.*`` events).
* Sessions: log in (password grant), refresh (rotation), log out (``auth.*``).
  A session is one refresh-token family (RFC 9700 §4.14.2): every refresh marks
  the presented token used and issues its successor; presenting a used token
  again revokes the whole family and publishes ``auth.refresh_reuse_detected``.
  Sessions end at an absolute lifetime (``settings.session_max_age``) however
  often they are refreshed; refresh tokens also expire when idle
  (``settings.refresh_token_ttl``). Every failed grant is the same
  :class:`~healthflow.auth.domain.InvalidGrant` (400), with a dummy Argon2
  verification for unknown emails so that timing does not tell either.
* Revocation (:mod:`healthflow.auth.revocation`): logout and a reused refresh token
  end the session's access tokens everywhere (``auth.session_revoked``);
  :func:`revoke_all_sessions` (deactivation, password change or reset) and a role
  change end every access token of the user issued until now
  (``auth.user_tokens_revoked``). Signing keys are :mod:`healthflow.auth.signing`.

Each change runs in one ``runtime.transact`` and publishes its event there, so
the write and the event commit together.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from healthflow.auth import domain, events, failures, mfa, personal, revocation, store, throttle
from healthflow.auth.keys import KeyRing
from healthflow.auth.passwords import PasswordHasher
from healthflow.auth.settings import Settings
from healthflow.auth.throttle import LoginThrottle
from healthflow.common.errors import (
    BadRequest,
    Conflict,
    NotFound,
    Unauthorized,
    UnprocessableContent,
)
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.keywrap import KeyWrapper
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import STAFF_ROLES, Role, permissions_for
from healthflow.common.service import ServiceRuntime
from healthflow.contracts.auth import EMAIL_CHANGE_PURPOSE

log = logging.getLogger(__name__)

revoke_all_sessions = revocation.revoke_all_sessions
"""End every session of a user and refuse each of their access tokens issued until now,
at every service (password change or reset, deactivation):
:func:`healthflow.auth.revocation.revoke_all_sessions`."""



@dataclass
class Auth:
    """What the use cases of a running app need (one per app, ``app.state.auth``)."""

    runtime: ServiceRuntime
    settings: Settings
    hasher: PasswordHasher
    throttle: LoginThrottle
    keys: KeyRing


# --------------------------------------------------------------------------- accounts


class EmailTaken(Conflict):
    """An account with this email exists (409 for admins creating staff)."""


async def create_account(runtime: ServiceRuntime, hasher: PasswordHasher,
                         wrapper: KeyWrapper, *, email: str, password: str, full_name: str,
                         phone: str | None, roles: Iterable[str], actor: str | None,
                         self_registered: bool) -> Document:
    """Create an active account with its person key (wrapped by ``wrapper``) and publish
    ``user.registered`` (personal values sealed under that key); the stored document.

    The password must already satisfy the policy (the request models check
    it); it is hashed here. ``actor`` ``None`` means the new user acts.

    Raises:
        EmailTaken: (409) an account with this email (compared case-insensitively) exists.
    """
    user_id = str(uuid.uuid4())
    user = domain.new_user(user_id=user_id, email=email, full_name=full_name, phone=phone,
                           roles=roles, password_hash=await hasher.hash(password),
                           created_by=actor or user_id, now=utcnow())
    key, key_doc = await personal.new_person_key_document(wrapper, user_id)

    async def apply(uow: UnitOfWork) -> None:
        try:
            await store.insert_user(runtime.db, user, session=uow.session)
        except DuplicateKeyError:
            raise EmailTaken("an account with this email already exists") from None
        await store.insert_person_key(runtime.db, key_doc, session=uow.session)
        uow.publish(personal.registered_event(key, user, self_registered=self_registered),
                    subject=user_id, actor=actor or user_id)

    await runtime.transact(apply, actor=actor or user_id)
    return user


async def ensure_first_admin(runtime: ServiceRuntime, hasher: PasswordHasher,
                             wrapper: KeyWrapper, *, email: str, password: str,
                             full_name: str) -> tuple[Document, bool]:
    """The account ``email`` and whether it was created now (as an admin).

    An existing account (any roles) is returned unchanged.

    Raises:
        PasswordRejected: (a ``ValueError``) the password breaks the policy.
    """
    existing = await store.find_user_by_email(runtime.db, domain.normalize_email(email))
    if existing is not None:
        return existing, False
    domain.check_password(password, email=email)
    user = await create_account(runtime, hasher, wrapper, email=email, password=password,
                                full_name=full_name, phone=None, roles=[Role.ADMIN],
                                actor="system:auth", self_registered=False)
    return user, True


async def get_account(runtime: ServiceRuntime, user_id: str) -> Document:
    """The user ``user_id``. Raises NotFound (404)."""
    user = await store.get_user(runtime.db, user_id)
    if user is None:
        raise NotFound(f"no user has the id {user_id}")
    return user


async def get_own(runtime: ServiceRuntime, user_id: str) -> Document:
    """The caller's account. Raises Unauthorized (401) when it is gone or inactive."""
    user = await store.get_user(runtime.db, user_id)
    if user is None or user["status"] != "active":
        raise Unauthorized("the account behind this token no longer exists or is inactive")
    return user


async def find_users(runtime: ServiceRuntime, **filters: Any) -> tuple[list[Document],
                                                                       str | None]:
    """One page of users: :func:`healthflow.auth.store.list_users`' filters and cursor."""
    return await store.list_users(runtime.db, **filters)


async def _ensure_other_admin_remains(runtime: ServiceRuntime, user: Document,
                                      uow: UnitOfWork) -> None:
    if Role.ADMIN in user["roles"] and user["status"] == "active":
        admins = await store.count_active_with_role(runtime.db, Role.ADMIN, session=uow.session)
        if admins <= 1:
            raise Conflict("this is the last active admin; make another admin first")


async def _get_for_update(runtime: ServiceRuntime, uow: UnitOfWork, user_id: str) -> Document:
    user = await store.get_user(runtime.db, user_id, session=uow.session)
    if user is None:
        raise NotFound(f"no user has the id {user_id}")
    return user


async def deactivate(runtime: ServiceRuntime, user_id: str, *, actor: str) -> Document:
    """Deactivate ``user_id``, revoke all their sessions and void their pending e-mail
    change links; publish ``user.deactivated``.

    Idempotent: an inactive user is returned unchanged, without an event.

    Raises:
        NotFound (404); Conflict (409): the user is the last active admin.
    """

    async def apply(uow: UnitOfWork) -> Document:
        user = await _get_for_update(runtime, uow, user_id)
        if user["status"] == "inactive":
            return user
        await _ensure_other_admin_remains(runtime, user, uow)
        now = utcnow()
        updated = await store.update_user(
            runtime.db, user_id,
            {"$set": {"status": "inactive", "deactivated_at": now, "updated_at": now}},
            session=uow.session)
        await store.cancel_contact_links(runtime.db, user_id, [EMAIL_CHANGE_PURPOSE], now=now,
                                         session=uow.session)
        revoked = await revoke_all_sessions(runtime, user_id, reason="user_deactivated",
                                            actor=actor, uow=uow)
        uow.publish(events.UserDeactivated(user_id=user_id, sessions_revoked=revoked),
                    subject=user_id)
        assert updated is not None
        return updated

    return await runtime.transact(apply, actor=actor)


async def activate(runtime: ServiceRuntime, user_id: str, *, actor: str) -> Document:
    """Let ``user_id`` log in again; publish ``user.activated`` (idempotent).

    Raises:
        NotFound (404); Conflict (409): the account was erased (it has no address left).
    """

    async def apply(uow: UnitOfWork) -> Document:
        user = await _get_for_update(runtime, uow, user_id)
        if user["status"] == "active":
            return user
        if user.get("erased_at") is not None:
            raise Conflict("this account was erased; it cannot be activated again")
        updated = await store.update_user(
            runtime.db, user_id,
            {"$set": {"status": "active", "deactivated_at": None, "updated_at": utcnow()}},
            session=uow.session)
        uow.publish(events.UserActivated(user_id=user_id), subject=user_id)
        assert updated is not None
        return updated

    return await runtime.transact(apply, actor=actor)


async def change_role(runtime: ServiceRuntime, user_id: str, role: Role, *, assign: bool,
                      actor: str) -> Document:
    """Give (``assign``) or take ``role`` from ``user_id``; publish ``user.role_changed``.

    Idempotent: no change, no event. Access tokens issued until now are refused
    everywhere (``auth.user_tokens_revoked``); the session stays, and the next
    refresh carries the new set.

    Raises:
        UnprocessableContent (422): giving a role that is not a staff role.
        NotFound (404); Conflict (409): removing ``admin`` from the last active admin.
    """
    if assign and role not in STAFF_ROLES:
        raise UnprocessableContent(f"{role.value} is not a staff role; patients register")

    async def apply(uow: UnitOfWork) -> Document:
        user = await _get_for_update(runtime, uow, user_id)
        if (role in user["roles"]) == assign:
            return user
        if not assign and role is Role.ADMIN:
            await _ensure_other_admin_remains(runtime, user, uow)
        operator = "$addToSet" if assign else "$pull"
        updated = await store.update_user(
            runtime.db, user_id,
            {operator: {"roles": str(role)}, "$set": {"updated_at": utcnow()}},
            session=uow.session)
        assert updated is not None
        uow.publish(events.UserRoleChanged(user_id=user_id, role=str(role),
                                           change="assigned" if assign else "removed",
                                           roles=sorted(updated["roles"])),
                    subject=user_id)
        await revocation.revoke_user_tokens(runtime, uow, user_id, reason="role_changed",
                                            now=utcnow())
        return updated

    return await runtime.transact(apply, actor=actor)


# --------------------------------------------------------------------------- sessions


def _mint(auth: Auth, user: Document, session_doc: Document, now: datetime) -> str:
    """An access token of ``session_doc`` (its client, start and ``amr``) for ``user``."""
    roles = list(user.get("roles", []))
    claims = domain.access_token_claims(
        user_id=user["_id"], roles=roles, permissions=permissions_for(roles),
        session_id=session_doc["_id"], client_id=session_doc["client_id"],
        issuer=auth.settings.jwt_issuer, audience=auth.settings.jwt_audience, now=now,
        ttl=auth.settings.access_token_ttl, auth_time=session_doc["created_at"],
        amr=session_doc.get("amr") or (domain.AMR_PASSWORD,))
    return auth.keys.sign(claims)


async def _issue_refresh(auth: Auth, uow: UnitOfWork, session_doc: Document, generation: int,
                         now: datetime) -> str:
    token = domain.new_refresh_token()
    record = domain.new_refresh_record(token, session=session_doc, generation=generation,
                                       now=now, idle_ttl=auth.settings.refresh_token_ttl)
    await store.insert_refresh_token(auth.runtime.db, record, session=uow.session)
    return token


async def login(auth: Auth, *, email: str, password: str, client_id: str | None,
                client_ip: str | None) -> domain.IssuedTokens:
    """Password grant: check the client and the throttles, verify, open a session.

    ``client_id`` ``None`` is the default client.

    Raises:
        BadRequest: ``invalid_client``, a ``client_id`` not registered (400).
        TooManyRequests: this client's failure budget at the account, or the
            address's, is spent (429 with ``Retry-After``; another client with the right
            password is not refused: :mod:`.throttle`); counted, and the first of each window
            recorded as ``auth.login_failed`` (:func:`failures.record_refusal`).
        domain.InvalidGrant: unknown email, wrong password or inactive account
            (one answer for all three); recorded as ``auth.login_failed``.
        otp.MfaRequired: (403) the password was right and a second factor must
            follow (:func:`healthflow.auth.mfa.challenge_if_needed`).
    """
    settings = auth.settings
    client_id = client_id or settings.default_client_id
    if client_id not in settings.client_ids and client_id != settings.default_client_id:
        raise BadRequest("the client_id is not registered", error="invalid_client")
    email_key = domain.normalize_email(email)
    throttled = await auth.throttle.admit(email_key, client_ip)
    if throttled is not None:
        await failures.record_refusal(auth.runtime, auth.settings.login_refusals_window,
                                      throttled.scope, email_key, client_ip, client_id)
        raise throttle.refusal(throttled)
    user = await store.find_user_by_email(auth.runtime.db, email_key)
    ok = await auth.hasher.verify(user["password_hash"] if user else None, password)
    reason: events.LoginFailureReason | None = None
    if user is None:
        reason = "unknown_account"
    elif not ok:
        reason = "bad_password"
    elif user["status"] != "active":
        reason = "account_inactive"
    if reason is not None:
        await auth.throttle.failed(email_key, client_ip)
        await failures.record_failure(auth.runtime, user_id=user["_id"] if user else None,
                                      reason=reason, client_ip=client_ip, client_id=client_id)
        raise domain.InvalidGrant(domain.INVALID_CREDENTIALS)
    assert user is not None
    await auth.throttle.succeeded(email_key, client_ip)
    # a second factor first, where the account has one or its roles require one
    await mfa.challenge_if_needed(auth, user, client_id=client_id, client_ip=client_ip)
    new_hash = (await auth.hasher.hash(password)
                if auth.hasher.needs_rehash(user["password_hash"]) else None)
    return await open_session(auth, user, client_id=client_id, client_ip=client_ip,
                              new_hash=new_hash)


async def open_session(auth: Auth, user: Document, *, client_id: str, client_ip: str | None,
                       new_hash: str | None,
                       also: Callable[[UnitOfWork, str], Awaitable[None]] | None = None,
                       amr: Sequence[str] = (domain.AMR_PASSWORD,),
                       ) -> domain.IssuedTokens:
    """Begin a session for ``user`` authenticated by ``amr`` (RFC 8176 values, kept with
    the session for every token it issues; publish ``auth.login_succeeded``);
    ``also(uow, session_id)`` runs in the same transaction (the second factor's
    bookkeeping)."""

    async def apply(uow: UnitOfWork) -> tuple[Document, str]:
        now = utcnow()
        session_doc = domain.new_session(user_id=user["_id"], client_id=client_id,
                                         client_ip=client_ip, now=now,
                                         max_age=auth.settings.session_max_age)
        session_doc["amr"] = sorted(set(amr))
        await store.insert_session(auth.runtime.db, session_doc, session=uow.session)
        refresh_token = await _issue_refresh(auth, uow, session_doc, 1, now)
        if new_hash is not None:  # parameters changed since this hash was made
            await store.update_user(auth.runtime.db, user["_id"],
                                    {"$set": {"password_hash": new_hash}}, session=uow.session)
        if also is not None:
            await also(uow, session_doc["_id"])
        uow.publish(events.LoginSucceeded(user_id=user["_id"], session_id=session_doc["_id"],
                                          client_ip=client_ip, client_id=client_id,
                                          amr=session_doc["amr"]),
                    subject=user["_id"])
        return session_doc, refresh_token

    session_doc, refresh_token = await auth.runtime.transact(apply, actor=user["_id"])
    access = _mint(auth, user, session_doc, now=await revocation.issue_time(
        auth.runtime, user["_id"], session_doc["created_at"]))
    return domain.IssuedTokens(access, refresh_token, auth.settings.access_token_ttl,
                               session_doc["_id"])


async def refresh(auth: Auth, *, refresh_token: str, client_ip: str | None) -> domain.IssuedTokens:
    """Rotate ``refresh_token``: mark it used, issue its successor and a new access token.

    Roles and permissions are read afresh, so role changes apply here.

    Raises:
        domain.InvalidGrant: unknown, expired or revoked token, ended session,
            inactive user — or a reused token, in which case the whole family
            was revoked and ``auth.refresh_reuse_detected`` published first.
    """
    token_hash = domain.hash_refresh_token(refresh_token)

    async def apply(uow: UnitOfWork) -> tuple[Document, Document, str, datetime] | None:
        return await _rotate(auth, uow, token_hash, client_ip)

    rotated = await auth.runtime.transact(apply, actor="system:auth")
    if rotated is None:  # committed: a reuse revoked the family, an inactive user's session
        raise domain.InvalidGrant(domain.INVALID_REFRESH)
    user, session_doc, new_token, now = rotated
    access = _mint(auth, user, session_doc,
                   now=await revocation.issue_time(auth.runtime, user["_id"], now))
    return domain.IssuedTokens(access, new_token, auth.settings.access_token_ttl,
                               session_doc["_id"])


async def _rotate(auth: Auth, uow: UnitOfWork, token_hash: str, client_ip: str | None
                  ) -> tuple[Document, Document, str, datetime] | None:
    """Inside :func:`refresh`'s transaction: the user, session, successor token and time,
    or ``None`` when the token must be refused (after revoking what must be revoked)."""
    db, now = auth.runtime.db, utcnow()
    record = await store.get_refresh_token(db, token_hash, session=uow.session)
    if record is None:
        return None
    session_doc = await store.get_session(db, record["session_id"], session=uow.session)
    if session_doc is None:
        return None
    outcome = domain.assess_refresh(
        token_used=record["used_at"] is not None, token_expires_at=record["expires_at"],
        session_revoked=session_doc["status"] != "active",
        session_expires_at=session_doc["expires_at"], now=now)
    if outcome is domain.RefreshOutcome.ROTATE and not await store.mark_refresh_used(
            db, token_hash, now=now, session=uow.session):
        outcome = domain.RefreshOutcome.REUSED  # a concurrent request used it first
    if outcome is domain.RefreshOutcome.REUSED:
        await store.revoke_session(db, session_doc["_id"], reason="refresh_reuse", now=now,
                                   session=uow.session)
        await revocation.revoke_session_tokens(auth.runtime, uow, session_doc,
                                               reason="refresh_reuse", now=now)
        uow.publish(events.RefreshReuseDetected(
            user_id=session_doc["user_id"], session_id=session_doc["_id"],
            presented_generation=record["generation"],
            current_generation=session_doc["generation"], client_ip=client_ip),
            subject=session_doc["user_id"])
        return None
    if outcome is not domain.RefreshOutcome.ROTATE:
        return None
    user = await store.get_user(db, session_doc["user_id"], session=uow.session)
    if user is None or user["status"] != "active":
        await store.revoke_session(db, session_doc["_id"], reason="user_inactive", now=now,
                                   session=uow.session)
        return None
    generation = int(session_doc["generation"]) + 1
    new_token = await _issue_refresh(auth, uow, session_doc, generation, now)
    await store.advance_session(db, session_doc["_id"], generation=generation, now=now,
                                session=uow.session)
    uow.publish(events.TokenRefreshed(user_id=user["_id"], session_id=session_doc["_id"],
                                      generation=generation, client_ip=client_ip),
                subject=user["_id"])
    return user, session_doc, new_token, now


async def logout(auth: Auth, *, user_id: str, session_id: str | None) -> bool:
    """Revoke the caller's session ``session_id`` (its refresh family); publish ``auth.logged_out``.

    Returns whether an active session was revoked (logging out twice is
    harmless). The session's access tokens are refused everywhere within seconds
    (``auth.session_revoked``).
    """
    if not session_id:
        return False

    async def apply(uow: UnitOfWork) -> bool:
        doc = await store.get_session(auth.runtime.db, session_id, session=uow.session)
        if doc is None or doc["user_id"] != user_id:
            return False
        now = utcnow()
        revoked = await store.revoke_session(auth.runtime.db, session_id, reason="logout",
                                             now=now, session=uow.session)
        if revoked:
            uow.publish(events.LoggedOut(user_id=user_id, session_id=session_id), subject=user_id)
            await revocation.revoke_session_tokens(auth.runtime, uow, doc, reason="logout", now=now)
        return revoked

    return await auth.runtime.transact(apply, actor=user_id)
