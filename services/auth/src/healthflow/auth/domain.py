"""The auth service's rules: no FastAPI, no MongoDB, tested alone.

* Emails and phone numbers: normalisation (a case-insensitive unique email key;
  E.164 phones); the shape of a new account.
* The password policy (NIST SP 800-63B §5.1.1.2 / §3.1.1.2 in rev. 4): 12–128
  characters after NFKC normalisation, not a commonly used password (the 30,000
  most common from the list the ``zxcvbn`` package ships), not trivially
  repetitive, not containing the email's local part.
* Access-token claims (RFC 9068 §2.2).
* Sessions and refresh-token families (RFC 9700 §4.14.2): their documents,
  which presented token is valid, expired, or a reuse that must revoke the
  family; the one answer to every failed grant (:class:`InvalidGrant`).
* Signing-key life cycle: ``next`` → ``active`` → ``retired`` → ``removed``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any, ClassVar

import phonenumbers

from healthflow.common.problems import BadRequest
from healthflow.contracts import auth as contracts_auth

PASSWORD_MIN_LENGTH = 12
PASSWORD_MAX_LENGTH = 128
REFRESH_TOKEN_BYTES = 32  # 256 bits of entropy, 43 URL-safe characters


# --------------------------------------------------------------------------- identity


def normalize_email(email: str) -> str:
    """The unique key of ``email``: stripped and case-folded (``Ada@X.org`` → ``ada@x.org``)."""
    return email.strip().casefold()


def erased_email_key(user_id: str) -> str:
    """The ``email_normalized`` of an erased account: unique, and no address (no ``@``)."""
    return f"erased:{user_id}"


def new_user(*, user_id: str, email: str, full_name: str, phone: str | None,
             roles: Iterable[str], password_hash: str, created_by: str,
             now: datetime) -> dict[str, Any]:
    """A new active account as the ``users`` collection stores it (``now`` aware UTC)."""
    return {
        "_id": user_id,
        "email": email.strip(),
        "email_normalized": normalize_email(email),
        "full_name": full_name,
        "name_folded": full_name.casefold(),
        "phone": phone,
        "roles": sorted({str(r) for r in roles}),
        "status": "active",
        "password_hash": password_hash,
        "created_at": now,
        "updated_at": now,
        "created_by": created_by,
        "deactivated_at": None,
    }


def normalize_phone(phone: str) -> str:
    """``phone`` in E.164 (``+447700900123``).

    Raises:
        ValueError: when it is not a valid international number (it must start
            with ``+`` and a country code; ITU-T E.164).
    """
    text = phone.strip()
    if not text.startswith("+"):
        raise ValueError("the phone number must be in international format, e.g. +447700900123")
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        raise ValueError("the phone number cannot be parsed") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("the phone number is not a valid number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalize_password(password: str) -> str:
    """NFKC form of ``password`` (NIST SP 800-63B §5.1.1.2): hashed and verified in this form."""
    return unicodedata.normalize("NFKC", password)


# --------------------------------------------------------------------------- password policy


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The most common passwords, lower-cased (30,000 entries shipped by ``zxcvbn``)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(p.casefold() for p in FREQUENCY_LISTS["passwords"])


_DECORATION = re.compile(r"^[\d\W_]+|[\d\W_]+$")


@dataclass(frozen=True)
class PolicyViolation:
    """One reason a password was refused: a stable ``code`` and a human ``message``."""

    code: str
    message: str


class PasswordRejected(ValueError):
    """The password breaks the policy; ``violations`` says how."""

    def __init__(self, violations: Sequence[PolicyViolation]) -> None:
        super().__init__("; ".join(v.message for v in violations))
        self.violations = list(violations)


def password_violations(password: str, *, email: str | None = None) -> list[PolicyViolation]:
    """Every rule ``password`` breaks (empty when acceptable).

    Lengths count Unicode code points after NFKC normalisation. A password is
    "common" when, case-folded, it or its core without leading/trailing digits
    and symbols (``Password123!`` → ``password``) is on the common list.
    """
    pw = normalize_password(password)
    found: list[PolicyViolation] = []
    if len(pw) < PASSWORD_MIN_LENGTH:
        found.append(PolicyViolation(
            "too_short", f"the password must have at least {PASSWORD_MIN_LENGTH} characters"))
    if len(pw) > PASSWORD_MAX_LENGTH:
        found.append(PolicyViolation(
            "too_long", f"the password must have at most {PASSWORD_MAX_LENGTH} characters"))
    folded = pw.casefold()
    core = _DECORATION.sub("", folded)
    common = common_passwords()
    if folded in common or (len(core) >= 4 and core in common):
        found.append(PolicyViolation(
            "common", "the password is too common; choose one that is harder to guess"))
    elif len(set(folded)) < 4:
        found.append(PolicyViolation("repetitive", "the password repeats too few characters"))
    if email:
        local = normalize_email(email).split("@", 1)[0]
        if len(local) >= 3 and local in folded:
            found.append(PolicyViolation(
                "contains_email", "the password must not contain your email address"))
    return found


def check_password(password: str, *, email: str | None = None) -> None:
    """Raise :class:`PasswordRejected` when ``password`` breaks the policy."""
    violations = password_violations(password, email=email)
    if violations:
        raise PasswordRejected(violations)


# --------------------------------------------------------------------------- access tokens

AMR_PASSWORD = "pwd"  # noqa: S105 - RFC 8176 method name, not a password
"""RFC 8176 §2 authentication method references: a password, ..."""
AMR_SECOND_FACTOR = ("mfa", "otp", "pwd")
"""... and a password with a one-time code (TOTP, or a single-use recovery code)."""


def access_token_claims(
    *,
    user_id: str,
    roles: Iterable[str],
    permissions: Iterable[str],
    session_id: str,
    client_id: str,
    issuer: str,
    audience: str,
    now: datetime,
    ttl: int,
    auth_time: datetime | None = None,
    amr: Iterable[str] = (AMR_PASSWORD,),
) -> dict[str, Any]:
    """The JWT claims of an access token (RFC 9068 §2.2; times are NumericDate seconds).

    ``iss``, ``aud``, ``sub``, ``exp`` (``now`` + ``ttl`` seconds), ``iat``,
    ``jti`` (UUID4), ``client_id``, ``auth_time`` (when the session began),
    ``amr`` (how the session was authenticated, RFC 8176 values, sorted: ``["pwd"]``
    or ``["mfa", "otp", "pwd"]``; RFC 9068 §2.2.1), ``roles`` and ``permissions``
    (RFC 9068 §2.2.3.1, sorted) and ``sid`` (the session, so logout can name it).
    """
    iat = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": user_id,
        "iat": iat,
        "exp": iat + ttl,
        "jti": str(uuid.uuid4()),
        "client_id": client_id,
        "sid": session_id,
        "amr": sorted(set(amr)),
        "roles": sorted(set(roles)),
        "permissions": sorted(set(permissions)),
    }
    if auth_time is not None:
        claims["auth_time"] = int(auth_time.timestamp())
    return claims


ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - RFC 9068 §2.1 header "typ"


# --------------------------------------------------------------------------- sessions


INVALID_CREDENTIALS = "the email or password is incorrect, or the account is not active"
INVALID_REFRESH = "the refresh token is invalid, expired or revoked; log in again"


class InvalidGrant(BadRequest):
    """RFC 6749 §5.2 ``invalid_grant`` as problem+json (the ``error`` member is kept).

    The one answer to every failed grant: an unknown email, a wrong password and
    an inactive account are indistinguishable in status and body.
    """

    title: ClassVar[str] = "Invalid Grant"
    slug: ClassVar[str] = "invalid-grant"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, error="invalid_grant")


@dataclass(frozen=True)
class IssuedTokens:
    """An access token (JWT), the new refresh token, the access token's lifetime in
    seconds, and the session."""

    access_token: str
    refresh_token: str
    expires_in: int
    session_id: str


def new_session(*, user_id: str, client_id: str, client_ip: str | None, now: datetime,
                max_age: int) -> dict[str, Any]:
    """A new session (refresh-token family, generation 1) that ends ``max_age`` seconds
    after ``now``; the database purges it a day after that."""
    expires_at = now + timedelta(seconds=max_age)
    return {
        "_id": str(uuid.uuid4()),
        "user_id": user_id,
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


def new_refresh_record(token: str, *, session: dict[str, Any], generation: int,
                       now: datetime, idle_ttl: int) -> dict[str, Any]:
    """The stored form of refresh ``token`` (its hash only), number ``generation`` of
    ``session``'s family, issued ``now``."""
    return {
        "_id": hash_refresh_token(token),
        "session_id": session["_id"],
        "user_id": session["user_id"],
        "generation": generation,
        "issued_at": now,
        "expires_at": refresh_expiry(now=now, idle_ttl=idle_ttl,
                                     session_expires_at=session["expires_at"]),
        "used_at": None,
        "purge_at": session["purge_at"],
    }


def new_refresh_token() -> str:
    """A fresh opaque refresh token (256 random bits, URL-safe base64)."""
    return secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


def hash_refresh_token(token: str) -> str:
    """SHA-256 hex of ``token``: the only form stored (a high-entropy secret needs no salt)."""
    return hashlib.sha256(token.encode()).hexdigest()


class RefreshOutcome(StrEnum):
    """What presenting a refresh token means."""

    ROTATE = "rotate"  # valid: issue its successor
    REUSED = "reused"  # already used: a replay, revoke the family (RFC 9700 §4.14.2)
    EXPIRED = "expired"  # idle lifetime over
    SESSION_ENDED = "session_ended"  # family revoked or past its absolute lifetime


def assess_refresh(
    *,
    token_used: bool,
    token_expires_at: datetime,
    session_revoked: bool,
    session_expires_at: datetime,
    now: datetime,
) -> RefreshOutcome:
    """Decide what to do with a presented refresh token of a known family.

    Reuse wins over every other state while the family is still live: a replay
    of a rotated-out token means two parties hold the family, so the family is
    revoked even when the legitimate client's current token is still valid.
    """
    if session_revoked or now >= session_expires_at:
        return RefreshOutcome.SESSION_ENDED
    if token_used:
        return RefreshOutcome.REUSED
    if now >= token_expires_at:
        return RefreshOutcome.EXPIRED
    return RefreshOutcome.ROTATE


def refresh_expiry(*, now: datetime, idle_ttl: int, session_expires_at: datetime) -> datetime:
    """When a refresh token issued ``now`` expires: the idle limit, capped by the session's end."""
    return min(now + timedelta(seconds=idle_ttl), session_expires_at)


# --------------------------------------------------------------------------- signing keys


class KeyState(StrEnum):
    """Life cycle of a signing key.

    ``next`` is published in the JWKS but does not sign yet (so every verifier's
    cache learns it first); ``active`` signs; ``retired`` stays published until
    every token it signed has expired; ``removed`` is neither published nor kept
    secret material; ``revoked`` (an admin's decision, e.g. a compromise) is no
    longer published, and every token it signed is refused at once.
    """

    NEXT = "next"
    ACTIVE = "active"
    RETIRED = "retired"
    REMOVED = "removed"
    REVOKED = "revoked"


PUBLISHED_STATES = frozenset({KeyState.NEXT, KeyState.ACTIVE, KeyState.RETIRED})


@dataclass(frozen=True)
class KeyInfo:
    """What the rotation plan needs to know of a key."""

    kid: str
    state: KeyState
    created_at: datetime
    remove_after: datetime | None = None


@dataclass(frozen=True)
class RotationPlan:
    """One rotation: promote ``activate``, retire ``retire`` until ``retire_until``."""

    activate: str | None
    retire: str | None
    retire_until: datetime
    remove: tuple[str, ...]
    needs_next: bool


@dataclass(frozen=True)
class Rotation:
    """The outcome of a key rotation (key ids only)."""

    activated_kid: str
    retired_kid: str | None
    next_kid: str
    retired_until: datetime | None
    removed_kids: tuple[str, ...]


def plan_rotation(keys: Sequence[KeyInfo], *, now: datetime, max_token_age: int) -> RotationPlan:
    """The transitions of a rotation at ``now``.

    The oldest ``next`` key becomes ``active`` (a fresh one must be created when
    none exists: then the new key signs at once, which is only safe at first
    start); the ``active`` key becomes ``retired`` until ``now + max_token_age``
    seconds (its last token's expiry plus skew); retired keys past their time
    are ``removed``; a new ``next`` key is always created.
    """
    nexts = sorted((k for k in keys if k.state is KeyState.NEXT), key=lambda k: k.created_at)
    active = [k for k in keys if k.state is KeyState.ACTIVE]
    return RotationPlan(
        activate=nexts[0].kid if nexts else None,
        retire=active[0].kid if active else None,
        retire_until=now + timedelta(seconds=max_token_age),
        remove=expired_keys(keys, now=now),
        needs_next=True,
    )


def expired_keys(keys: Sequence[KeyInfo], *, now: datetime) -> tuple[str, ...]:
    """Retired keys whose tokens have all expired (to be removed)."""
    return tuple(
        k.kid for k in keys
        if k.state is KeyState.RETIRED and k.remove_after is not None and k.remove_after <= now
    )


# --------------------------------------------------------------------------- password resets

PASSWORD_RESET_PURPOSE = contracts_auth.PASSWORD_RESET_PURPOSE
"""The ``purpose`` of :func:`healthflow.common.links.account_link_token` for reset links."""

INVALID_RESET_LINK = "the reset link is invalid, expired or already used; ask for a new one"


class InvalidResetLink(BadRequest):
    """A reset token that names no usable link (unknown, used, superseded, expired, or
    its account inactive): one answer for all (400)."""

    title: ClassVar[str] = "Invalid Reset Link"
    slug: ClassVar[str] = "invalid-reset-link"

    def __init__(self) -> None:
        super().__init__(INVALID_RESET_LINK)


def new_password_reset(*, token_hash: str, reset_id: str, user_id: str, now: datetime,
                       ttl: int) -> dict[str, Any]:
    """A reset link as ``password_resets`` stores it: valid ``ttl`` seconds from ``now``
    (aware UTC), purged a day after it expires; the token only as ``token_hash``."""
    expires_at = now + timedelta(seconds=ttl)
    return {
        "_id": token_hash,
        "reset_id": reset_id,
        "user_id": user_id,
        "created_at": now,
        "expires_at": expires_at,
        "used_at": None,
        "outcome": None,
        "purge_at": expires_at + timedelta(days=1),
    }
