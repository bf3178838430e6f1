"""Use cases of a user's password: sign-up that tells nothing, change, reset by e-mail link.

* **Sign-up** (:func:`register`): a patient registers; an address that already has an
  account gets the same answer, and its owner an e-mail.

* **Change** (:func:`change_password`): the owner gives the current password (checked
  against the same failed-login budgets as a login, so a stolen access token cannot
  guess it) and a new one that passes the registration policy.
* **Reset** (:func:`request_password_reset`, :func:`reset_password`): anyone may ask
  for a link for an address; the answer is the same whether or not an account has it.
  For an active account a link is recorded (only the SHA-256 of its token), valid
  ``settings.password_reset_ttl`` seconds and usable once; a newer link voids older
  ones; at most ``settings.password_resets_per_hour`` links per account and hour are
  sent. ``auth.password_reset_requested`` carries the request id, from which the
  notification service derives the token under the secret both hold
  (:mod:`healthflow.common.links`) and e-mails the link.
* Either way the new password is stored (Argon2id), every session of the user is
  ended (:func:`end_sessions_after_password_change`), a pending e-mail change's
  confirmation link is voided and ``auth.password_changed`` is published, in one
  transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from healthflow.auth import domain, events, revocation, service, store
from healthflow.auth.service import Auth, get_own
from healthflow.auth.throttle import refusal
from healthflow.common.errors import Forbidden, UnprocessableContent
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.links import account_link_token, token_digest
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Role
from healthflow.contracts.auth import EMAIL_CHANGE_PURPOSE

log = logging.getLogger(__name__)

WRONG_CURRENT_PASSWORD = "the current password is incorrect"  # noqa: S105 - a message


async def end_sessions_after_password_change(auth: Auth, uow: UnitOfWork, user_id: str, *,
                                             reason: events.RevocationReason) -> int:
    """End every session of ``user_id`` inside ``uow`` after its password changed; how many.

    The refresh-token families are revoked in auth's database and every access token
    of the user issued until now is refused by every service within seconds
    (:func:`healthflow.auth.revocation.revoke_all_sessions`: ``auth.user_tokens_revoked``
    commits with the new password).
    """
    return await revocation.revoke_all_sessions(auth.runtime, user_id, reason=reason,
                                                actor=user_id, uow=uow)


def _check_new_password(password: str, email: str) -> None:
    try:
        domain.check_password(password, email=email)
    except domain.PasswordRejected as exc:
        raise UnprocessableContent(f"new_password: {exc}") from None


async def _store_new_password(auth: Auth, uow: UnitOfWork, user: Document, new_hash: str, *,
                              method: events.PasswordChangeMethod,
                              reset_id: str | None) -> int:
    now = utcnow()
    await store.update_user(auth.runtime.db, user["_id"],
                            {"$set": {"password_hash": new_hash, "password_changed_at": now,
                                      "updated_at": now}},
                            session=uow.session)
    # a pending address change must not outlive the password that asked for it
    await store.cancel_contact_links(auth.runtime.db, user["_id"], [EMAIL_CHANGE_PURPOSE],
                                     now=now, session=uow.session)
    revoked = await end_sessions_after_password_change(
        auth, uow, user["_id"], reason="password_changed" if method == "change"
        else "password_reset")
    uow.publish(events.PasswordChanged(user_id=user["_id"], method=method, reset_id=reset_id,
                                       sessions_revoked=revoked), subject=user["_id"])
    return revoked


async def check_current_password(auth: Auth, user: Document, password: str,
                                 client_ip: str | None, *,
                                 second_factor: Callable[[], Awaitable[None]] | None = None
                                 ) -> None:
    """Check the account owner's ``password`` (and then ``second_factor``, e.g. an
    authenticator code: :func:`healthflow.auth.mfa.step_up`) before a change to the
    account, against the same failed-login budgets as a login (a stolen access token
    cannot guess either).

    The attempt is counted against this client's budget at the account on entry, before
    anything is checked; it is forgotten only when the password *and* the second factor
    pass, so a known password does not buy unlimited guesses at the code. A wrong one
    counts against the address and the account's ceiling as well.

    Raises:
        TooManyRequests: (429, ``Retry-After``) this client's failed-login budget at
            the account, or the address's, is spent (:mod:`healthflow.auth.throttle`).
        Forbidden: (403) the password is wrong, or ``second_factor`` refused (counted as
            a failed login).
    """
    email_key = user["email_normalized"]
    throttled = await auth.throttle.admit(email_key, client_ip)
    if throttled is not None:
        raise refusal(throttled)
    if not await auth.hasher.verify(user["password_hash"], password):
        await auth.throttle.failed(email_key, client_ip)
        raise Forbidden(WRONG_CURRENT_PASSWORD)
    if second_factor is not None:
        try:
            await second_factor()
        except Forbidden:
            await auth.throttle.failed(email_key, client_ip)
            raise
    await auth.throttle.succeeded(email_key, client_ip)


async def change_password(auth: Auth, *, user_id: str, current_password: str,
                          new_password: str, client_ip: str | None) -> int:
    """The owner ``user_id`` replaces their password; returns the sessions ended (all,
    the caller's too: it logs in again with the new password).

    Raises:
        Unauthorized: (401) the account is gone or inactive.
        TooManyRequests: (429, ``Retry-After``) this client's failed-login budget at
            the account, or the address's, is spent (:mod:`healthflow.auth.throttle`).
        Forbidden: (403) ``current_password`` is wrong (counted as a failed login).
        UnprocessableContent: (422) ``new_password`` breaks the policy
            (:func:`healthflow.auth.domain.password_violations`) or equals the current one.
    """
    user = await get_own(auth.runtime, user_id)
    await check_current_password(auth, user, current_password, client_ip)
    if domain.normalize_password(new_password) == domain.normalize_password(current_password):
        raise UnprocessableContent("new_password: must differ from the current password")
    _check_new_password(new_password, user["email"])
    new_hash = await auth.hasher.hash(new_password)

    async def apply(uow: UnitOfWork) -> int:
        return await _store_new_password(auth, uow, user, new_hash, method="change",
                                         reset_id=None)

    return await auth.runtime.transact(apply, actor=user_id)


async def request_password_reset(auth: Auth, *, email: str) -> str | None:
    """Send a reset link to ``email`` if an active account has it; the request id, or
    ``None`` when nothing was sent (no such account, inactive, or over the hourly cap).

    Callers answer the same in every case (no account enumeration).
    """
    db, settings = auth.runtime.db, auth.settings
    user = await store.find_user_by_email(db, domain.normalize_email(email))
    if user is None or user["status"] != "active":
        return None
    now = utcnow()
    recent = await store.count_resets_since(db, user["_id"], now - timedelta(hours=1))
    if recent >= settings.password_resets_per_hour:
        log.info("password reset not sent: hourly cap reached", extra={"user_id": user["_id"]})
        return None
    reset_id = str(uuid.uuid4())
    token = account_link_token(settings.account_link_secret.get_secret_value().encode(),
                               domain.PASSWORD_RESET_PURPOSE, reset_id)
    doc = domain.new_password_reset(token_hash=token_digest(token), reset_id=reset_id,
                                    user_id=user["_id"], now=now,
                                    ttl=settings.password_reset_ttl)

    async def apply(uow: UnitOfWork) -> None:
        await store.insert_reset(db, doc, session=uow.session)
        uow.publish(events.PasswordResetRequested(user_id=user["_id"], reset_id=reset_id,
                                                  expires_at=doc["expires_at"]),
                    subject=user["_id"])

    await auth.runtime.transact(apply, actor="anonymous")
    return reset_id


async def reset_password(auth: Auth, *, token: str, new_password: str) -> int:
    """Set a new password with the reset link's ``token``; returns the sessions ended.

    The link is used up only when the password is accepted (a refused password can be
    retried with the same link).

    Raises:
        InvalidResetLink: (400) the token names no unused, unexpired link of an active
            account.
        UnprocessableContent: (422) ``new_password`` breaks the policy.
    """
    db = auth.runtime.db
    digest = token_digest(token)
    pending = await store.find_usable_reset(db, digest, now=utcnow())
    user = await store.get_user(db, pending["user_id"]) if pending else None
    if pending is None or user is None or user["status"] != "active":
        raise domain.InvalidResetLink()
    _check_new_password(new_password, user["email"])
    new_hash = await auth.hasher.hash(new_password)

    async def apply(uow: UnitOfWork) -> int:
        used = await store.use_reset(db, digest, now=utcnow(), session=uow.session)
        if used is None:  # used or voided by a concurrent request meanwhile
            raise domain.InvalidResetLink()
        return await _store_new_password(auth, uow, user, new_hash, method="reset",
                                         reset_id=used["reset_id"])

    revoked = await auth.runtime.transact(apply, actor=user["_id"])
    return revoked


async def register(auth: Auth, *, email: str, password: str, full_name: str,
                   phone: str | None) -> Document:
    """A patient registers themselves (see :func:`healthflow.auth.service.create_account`).

    An address that already has an account gets the same answer as a new one (a user
    document of the same shape, never stored, with an id that names nobody), after the
    same work (the password is hashed either way), so the answer does not tell whether
    the address is registered; the owner is told by e-mail
    (``auth.registration_attempted``, at most ``settings.registration_notices``).
    """
    try:
        return await service.create_account(
            auth.runtime, auth.hasher, auth.keys.wrapper, email=email, password=password,
            full_name=full_name, phone=phone, roles=[Role.PATIENT], actor=None,
            self_registered=True)
    except service.EmailTaken:
        await notify_address_owner(auth, email)
        decoy_id = str(uuid.uuid4())
        return domain.new_user(user_id=decoy_id, email=email, full_name=full_name,
                               phone=phone, roles=[Role.PATIENT], password_hash="",
                               created_by=decoy_id, now=utcnow())


async def notify_address_owner(auth: Auth, email: str) -> None:
    """Tell the owner of the account that has ``email`` (if any) that someone tried to
    take their address (``auth.registration_attempted``, at most
    ``settings.registration_notices``): a sign-up, or another account's contact change."""
    email_key = domain.normalize_email(email)
    owner = await store.find_user_by_email(auth.runtime.db, email_key)
    if owner is None or not await auth.throttle.allow_notice(
            auth.settings.registration_notices, "registration", email_key):
        return

    async def apply(uow: UnitOfWork) -> None:
        uow.publish(events.RegistrationAttempted(user_id=owner["_id"]), subject=owner["_id"])

    await auth.runtime.transact(apply, actor="anonymous")
