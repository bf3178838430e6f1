"""The second factor's rules: TOTP (RFC 6238) codes and time steps, recovery codes, the
login challenge and its problem. No FastAPI, no MongoDB (like :mod:`.domain`)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, ClassVar

import pyotp

from healthflow.common.problems import Forbidden

TOTP_STEP = 30  # seconds (RFC 6238 §4.1 default X)
TOTP_DIGITS = 6
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i look-alikes
RECOVERY_CODE_LENGTH = 10  # 31^10 ≈ 2^49.5 per code
MFA_CHALLENGE_BYTES = 32
INVALID_SECOND_FACTOR = "the code is incorrect, already used, or the login took too long"


class MfaRequired(Forbidden):
    """The password was right; a second factor must follow (403, RFC 9457 extension
    members ``error: "mfa_required"``, ``mfa_token`` — the challenge for
    ``POST /api/v1/auth/token/mfa`` — and ``enrolment_required``: the user must set
    up an authenticator first, through ``POST /api/v1/auth/token/mfa/enrolment``)."""

    title: ClassVar[str] = "Second Factor Required"
    slug: ClassVar[str] = "mfa-required"

    def __init__(self, mfa_token: str, *, enrolment_required: bool, expires_in: int) -> None:
        super().__init__("enter the code from your authenticator app"
                         if not enrolment_required else
                         "your role requires an authenticator app: enrol one to log in",
                         error="mfa_required", mfa_token=mfa_token,
                         enrolment_required=enrolment_required, expires_in=expires_in)


def needs_second_factor(roles: Iterable[str], required_roles: Iterable[str]) -> bool:
    """Whether an account with ``roles`` must use a second factor."""
    return bool(set(roles) & set(required_roles))


def new_totp_secret() -> str:
    """A fresh TOTP key: 160 random bits (RFC 4226 §4 recommends 160), base32 (RFC 4648)."""
    return pyotp.random_base32(length=32)


def totp_uri(secret: str, *, account: str, issuer: str) -> str:
    """The ``otpauth://totp/…`` URI authenticator apps import (Key Uri Format: SHA-1,
    6 digits, 30 s, the de-facto standard every app reads)."""
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP).provisioning_uri(
        name=account, issuer_name=issuer)


def totp_step(now: datetime) -> int:
    """The RFC 6238 time step ``T = floor(unix time / 30)`` of ``now`` (aware)."""
    return int(now.timestamp()) // TOTP_STEP


def match_totp(secret: str, code: str, *, now: datetime, window: int,
               after_step: int | None) -> int | None:
    """The time step whose code ``code`` is, within ``window`` steps of ``now``, and
    later than ``after_step`` (a step already used is refused: RFC 6238 §5.2 — one code,
    one login); ``None`` when it matches none. Compared in constant time."""
    candidate = code.strip().replace(" ", "")
    if not (candidate.isdigit() and len(candidate) == TOTP_DIGITS):
        return None
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP)
    current = totp_step(now)
    found = None
    for step in range(current - window, current + window + 1):
        if hmac.compare_digest(totp.at(step * TOTP_STEP), candidate) and (
                after_step is None or step > after_step):
            found = step
    return found


def new_recovery_codes(count: int) -> list[str]:
    """``count`` one-time recovery codes, ``xxxxx-xxxxx`` from :data:`RECOVERY_ALPHABET`."""
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def hash_recovery_code(code: str) -> str:
    """SHA-256 hex of a recovery code without separators and case (the stored form)."""
    normalized = "".join(code.split()).replace("-", "").casefold()
    return hashlib.sha256(normalized.encode()).hexdigest()


def new_mfa_challenge(*, token_hash: str, user_id: str, client_id: str,
                      client_ip: str | None, enrolment: bool, now: datetime,
                      ttl: int) -> dict[str, Any]:
    """A pending second-factor step as ``mfa_challenges`` stores it (the token hashed)."""
    expires_at = now + timedelta(seconds=ttl)
    return {"_id": token_hash, "user_id": user_id, "client_id": client_id,
            "client_ip": client_ip, "enrolment": enrolment, "attempts": 0,
            "created_at": now, "expires_at": expires_at,
            "purge_at": expires_at + timedelta(hours=1)}
