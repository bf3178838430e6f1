"""Use cases of the second factor: TOTP (RFC 6238, ``pyotp``) and one-time recovery codes.

* **Enrolment** by a logged-in user (:func:`start_enrolment`,
  :func:`confirm_enrolment`): a new secret and its ``otpauth://`` URI, confirmed by a
  first code; the confirmation returns ``settings.mfa_recovery_codes`` recovery codes,
  shown once and stored only as SHA-256 (``auth.mfa_enrolled``). The TOTP key is
  stored envelope-encrypted (:func:`healthflow.auth.keys.factor_context`) and opened
  only to check a code.
* **Login** (:func:`challenge_if_needed`, :func:`complete_login`): after a correct
  password, an account with an active factor — or whose roles are in
  ``settings.mfa_required_roles`` — gets a challenge instead of tokens
  (:class:`~healthflow.auth.otp.MfaRequired`); the challenge token with a current
  code, or an unused recovery code (``auth.mfa_recovery_code_used``), gives the tokens.
  A code is accepted once (its time step is recorded), within
  ``settings.mfa_valid_window`` steps of the server's clock. A required-role account
  without a factor enrols inside the challenge (:func:`start_enrolment_at_login`).
  Wrong codes spend the challenge's attempts and the account's failed-login budget.
* **Reset** by an admin (:func:`reset_factor`, ``auth.mfa_reset``): a lost phone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from healthflow.auth import domain, events, otp, service, store
from healthflow.auth.keys import factor_context, totp_secret
from healthflow.auth.throttle import refusal
from healthflow.common.errors import Conflict, Forbidden, UnprocessableContent
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow

if TYPE_CHECKING:  # service imports this module: no name of it is needed at import time
    from healthflow.auth.service import Auth


@dataclass(frozen=True)
class Enrolment:
    """A new TOTP key (base32) and its ``otpauth://`` URI (for a QR code)."""

    secret: str
    otpauth_uri: str


@dataclass(frozen=True)
class SecondFactorLogin:
    """The tokens of a completed login, and the recovery codes when it enrolled."""

    tokens: domain.IssuedTokens
    recovery_codes: list[str] | None


def _required(auth: Auth, user: Document) -> bool:
    return otp.needs_second_factor(user.get("roles", []), auth.settings.mfa_required_roles)


async def _new_pending(auth: Auth, user: Document) -> Enrolment:
    secret = otp.new_totp_secret()
    envelope = await auth.keys.wrapper.wrap(secret.encode("ascii"), factor_context(user["_id"]))
    doc = {"_id": user["_id"], "method": "totp", "secret": envelope, "status": "pending",
           "created_at": utcnow(), "confirmed_at": None, "last_step": None,
           "recovery_codes": {}}
    if not await store.put_pending_factor(auth.runtime.db, doc, session=None):
        raise Conflict("an authenticator is already enrolled; an admin can reset it")
    return Enrolment(secret, otp.totp_uri(secret, account=user["email"],
                                             issuer=auth.settings.mfa_issuer))


async def _activate(auth: Auth, uow: UnitOfWork, user_id: str, step: int) -> list[str]:
    codes = otp.new_recovery_codes(auth.settings.mfa_recovery_codes)
    if not await store.activate_factor(
            auth.runtime.db, user_id, step=step,
            code_hashes=[otp.hash_recovery_code(c) for c in codes], now=utcnow(),
            session=uow.session):
        raise domain.InvalidGrant(otp.INVALID_SECOND_FACTOR)
    uow.publish(events.MfaEnrolled(user_id=user_id, method="totp", recovery_codes=len(codes)),
                subject=user_id)
    return codes


async def _match(auth: Auth, factor: Document, code: str) -> int | None:
    secret = await totp_secret(auth.keys.wrapper, factor)
    return otp.match_totp(secret, code, now=utcnow(),
                             window=auth.settings.mfa_valid_window,
                             after_step=factor.get("last_step"))


async def start_enrolment(auth: Auth, *, user_id: str) -> Enrolment:
    """Begin enrolling an authenticator for the caller (a new pending key replaces an
    unconfirmed one).

    Raises:
        Unauthorized: (401) the account is gone or inactive.
        Conflict: (409) an authenticator is already active.
    """
    return await _new_pending(auth, await service.get_own(auth.runtime, user_id))


async def confirm_enrolment(auth: Auth, *, user_id: str, code: str) -> list[str]:
    """Activate the caller's pending authenticator with a first ``code``; the recovery
    codes (plain, shown once).

    Raises:
        Conflict: (409) nothing pending (start first) or already active.
        UnprocessableContent: (422) the code does not match.
    """
    factor = await store.get_factor(auth.runtime.db, user_id)
    if factor is None or factor["status"] != "pending":
        raise Conflict("no authenticator enrolment is pending; start one first")
    step = await _match(auth, factor, code)
    if step is None:
        raise UnprocessableContent("code: does not match the authenticator's current code")

    async def apply(uow: UnitOfWork) -> list[str]:
        return await _activate(auth, uow, user_id, step)

    return await auth.runtime.transact(apply, actor=user_id)


async def challenge_if_needed(auth: Auth, user: Document, *, client_id: str,
                              client_ip: str | None) -> None:
    """After a correct password: raise :class:`~healthflow.auth.otp.MfaRequired` with a
    new challenge when ``user`` has an active factor or a role that requires one;
    return (no second factor) otherwise."""
    factor = await store.get_factor(auth.runtime.db, user["_id"])
    active = factor is not None and factor["status"] == "active"
    if not active and not _required(auth, user):
        return
    token = domain.new_refresh_token()  # 256 random bits
    ttl = auth.settings.mfa_challenge_ttl
    await store.insert_challenge(auth.runtime.db, otp.new_mfa_challenge(
        token_hash=domain.hash_refresh_token(token), user_id=user["_id"], client_id=client_id,
        client_ip=client_ip, enrolment=not active, now=utcnow(), ttl=ttl))
    raise otp.MfaRequired(token, enrolment_required=not active, expires_in=ttl)


async def _challenge(auth: Auth, mfa_token: str) -> tuple[str, Document, Document]:
    digest = domain.hash_refresh_token(mfa_token)
    challenge = await store.get_challenge(auth.runtime.db, digest, now=utcnow())
    if challenge is None or challenge["attempts"] >= auth.settings.mfa_challenge_attempts:
        raise domain.InvalidGrant(otp.INVALID_SECOND_FACTOR)
    user = await store.get_user(auth.runtime.db, challenge["user_id"])
    if user is None or user["status"] != "active":
        raise domain.InvalidGrant(otp.INVALID_SECOND_FACTOR)
    return digest, challenge, user


async def start_enrolment_at_login(auth: Auth, *, mfa_token: str) -> Enrolment:
    """Inside an enrolment challenge (a required role, no factor yet): the key to enrol;
    :func:`complete_login` with its first code activates it and logs in.

    Raises:
        domain.InvalidGrant: (400) an unknown, expired or exhausted challenge, or one
            that is not an enrolment.
    """
    _, challenge, user = await _challenge(auth, mfa_token)
    if not challenge["enrolment"]:
        raise domain.InvalidGrant(otp.INVALID_SECOND_FACTOR)
    return await _new_pending(auth, user)


async def complete_login(auth: Auth, *, mfa_token: str, code: str | None,
                         recovery_code: str | None,
                         client_ip: str | None) -> SecondFactorLogin:
    """The second step of a login: ``code`` (TOTP) or ``recovery_code`` for the challenge
    ``mfa_token``; opens the session. In an enrolment challenge the code confirms the
    pending key and the answer carries the new recovery codes.

    Raises:
        TooManyRequests: (429) this client's failed-login budget at the account, or
            the address's, is spent.
        domain.InvalidGrant: (400 ``invalid_grant``) a wrong or reused code, a used
            recovery code, an unknown, expired or exhausted challenge — one answer.
    """
    digest, challenge, user = await _challenge(auth, mfa_token)
    email_key = user["email_normalized"]
    throttled = await auth.throttle.admit(email_key, client_ip)
    if throttled is not None:
        raise refusal(throttled)
    factor = await store.get_factor(auth.runtime.db, user["_id"])
    expected = "pending" if challenge["enrolment"] else "active"
    step = None
    if factor is not None and factor["status"] == expected and code:
        step = await _match(auth, factor, code)
    code_hash = (otp.hash_recovery_code(recovery_code)
                 if recovery_code and expected == "active" else None)
    if step is None and code_hash is None:
        await _count_failure(auth, digest, email_key, client_ip)
        raise domain.InvalidGrant(otp.INVALID_SECOND_FACTOR)
    recovery_codes: list[str] | None = None

    async def second_factor(uow: UnitOfWork, session_id: str) -> None:
        nonlocal recovery_codes
        db, user_id = auth.runtime.db, user["_id"]
        if not await store.take_challenge(db, digest, session=uow.session):
            raise domain.InvalidGrant(otp.INVALID_SECOND_FACTOR)
        if challenge["enrolment"]:
            assert step is not None
            recovery_codes = await _activate(auth, uow, user_id, step)
        elif step is not None:
            if not await store.advance_step(db, user_id, step, session=uow.session):
                raise domain.InvalidGrant(otp.INVALID_SECOND_FACTOR)  # replayed
        else:
            assert code_hash is not None
            after = await store.use_recovery_code(db, user_id, code_hash, now=utcnow(),
                                                  session=uow.session)
            if after is None:
                raise domain.InvalidGrant(otp.INVALID_SECOND_FACTOR)
            remaining = sum(1 for used in after["recovery_codes"].values() if used is None)
            uow.publish(events.MfaRecoveryCodeUsed(user_id=user_id, session_id=session_id,
                                                   remaining=remaining), subject=user_id)

    try:
        tokens = await service.open_session(
            auth, user, client_id=challenge["client_id"], client_ip=client_ip, new_hash=None,
            also=second_factor, amr=domain.AMR_SECOND_FACTOR)
    except domain.InvalidGrant:
        await _count_failure(auth, digest, email_key, client_ip)
        raise
    await auth.throttle.succeeded(email_key, client_ip)
    return SecondFactorLogin(tokens, recovery_codes)


async def _count_failure(auth: Auth, digest: str, email_key: str,
                         client_ip: str | None) -> None:
    await store.count_challenge_attempt(auth.runtime.db, digest)
    await auth.throttle.failed(email_key, client_ip)


STEP_UP_REQUIRED = "a current code of your authenticator app is required for this change"


async def step_up(auth: Auth, user: Document, code: str | None,
                  client_ip: str | None) -> bool:
    """Ask an account with an active authenticator for a fresh ``code`` (RFC 6238) before a
    sensitive change made with an access token (the contact details); whether one was
    checked (``False``: the account has no active authenticator). The code's step is used
    up, so it cannot be replayed (here or at a login).

    Raises:
        Forbidden: (403) no code, or a wrong or reused one (counted as a failed login).
    """
    factor = await store.get_factor(auth.runtime.db, user["_id"])
    if factor is None or factor["status"] != "active":
        return False
    step = await _match(auth, factor, code) if code else None
    if step is None or not await store.advance_step(auth.runtime.db, user["_id"], step,
                                                    session=None):
        await auth.throttle.failed(user["email_normalized"], client_ip)
        raise Forbidden(STEP_UP_REQUIRED)
    return True


async def reset_factor(auth: Auth, *, user_id: str, actor: str) -> bool:
    """Remove ``user_id``'s authenticator and recovery codes (an admin, for a lost phone);
    whether one existed (``auth.mfa_reset`` then).

    Raises:
        NotFound: (404) no such user.
    """
    await service.get_account(auth.runtime, user_id)

    async def apply(uow: UnitOfWork) -> bool:
        removed = await store.delete_factor(auth.runtime.db, user_id, session=uow.session)
        if removed:
            uow.publish(events.MfaReset(user_id=user_id, reset_by=actor), subject=user_id)
        return removed

    return await auth.runtime.transact(apply, actor=actor)
