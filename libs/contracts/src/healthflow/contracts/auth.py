"""Events the auth service publishes (through the outbox; CloudEvents ``data`` payloads).

Subjects are the user id (or the key id for key events); the actor is the
caller (a user id, or ``system:auth``). No event carries a password, and no
e-mail address, phone number or name in clear: ``user.registered`` seals them
under the person's key (:class:`~healthflow.contracts.sealed.SealedValue`,
crypto-shredding: ``user.erased`` follows the key's destruction), and so does
``user.contact_changed``; the others name
accounts by id only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from healthflow.contracts.base import EventPayload, event_type
from healthflow.contracts.sealed import SealedValue

PUBLISHER = "auth"


@event_type("user.registered", version=2, publisher=PUBLISHER)
class UserRegistered(EventPayload):
    """A new account exists (self-registered patient or admin-created staff).

    Carries the contact data the notification, patient and prescription services
    build their read models from, each value sealed under the person key of
    ``user_id`` (fields ``email``, ``full_name``, ``phone``: E.164, or ``None`` when
    the account has none); opened with the key from auth's
    ``GET /internal/person-keys/{user_id}``. v2: v1 carried them in clear.
    """

    user_id: str
    email: SealedValue
    full_name: SealedValue
    phone: SealedValue | None
    roles: list[str]
    self_registered: bool


@event_type("user.contact_changed", version=1, publisher=PUBLISHER)
class UserContactChanged(EventPayload):
    """``user_id`` changed their own e-mail address or phone number (``changed`` names
    which, sorted), giving their current password (and a second-factor code when they
    have an authenticator). ``email`` and ``phone`` are the account's contact details
    *after* the change (``phone`` ``None`` when it has none), sealed like
    :class:`UserRegistered`'s under the person key of ``user_id``: once the person is
    erased they no longer open, so a late or redelivered event resurrects nothing.
    Consumers holding a clear copy replace it; the notification service tells the old
    address and asks for the new one (or number) to be verified again. Ordered by the
    event's ``time``."""

    user_id: str
    changed: list[Literal["email", "phone"]] = Field(min_length=1, max_length=2)
    email: SealedValue
    phone: SealedValue | None


@event_type("user.erased", version=1, publisher=PUBLISHER)
class UserErased(EventPayload):
    """``user_id``'s personal data was erased at their request (GDPR art. 17), executed
    by the admin ``erased_by``: the person key is destroyed (every sealed value of
    theirs, in any event, no longer opens), the account is anonymised and deactivated
    and its sessions ended. Every service holding a clear copy deletes it."""

    user_id: str
    erased_by: str


@event_type("user.role_changed", version=1, publisher=PUBLISHER)
class UserRoleChanged(EventPayload):
    """A role was given to or taken from ``user_id``; ``roles`` is the set after the change."""

    user_id: str
    role: str
    change: Literal["assigned", "removed"]
    roles: list[str]


@event_type("user.deactivated", version=1, publisher=PUBLISHER)
class UserDeactivated(EventPayload):
    """The account can no longer log in; ``sessions_revoked`` sessions were ended."""

    user_id: str
    sessions_revoked: int = Field(ge=0)


@event_type("user.activated", version=1, publisher=PUBLISHER)
class UserActivated(EventPayload):
    """A deactivated account may log in again."""

    user_id: str


LoginFailureReason = Literal[
    "unknown_account", "bad_password", "account_inactive", "throttled_account", "throttled_ip"
]


@event_type("auth.login_failed", version=1, publisher=PUBLISHER)
class LoginFailed(EventPayload):
    """A token request was refused (``user_id`` when the email matched an account).

    Refusals by a throttle (``throttled_*``) are aggregated: one event opens each
    window of ``AUTH_LOGIN_REFUSALS_WINDOW`` seconds per account or address, and
    ``earlier_refusals`` counts the refusals of that account or address in its
    previous window after the event that opened it (``None`` for other reasons)."""

    user_id: str | None
    reason: LoginFailureReason
    client_ip: str | None
    client_id: str
    earlier_refusals: int | None = Field(default=None, ge=0)


@event_type("auth.login_succeeded", version=1, publisher=PUBLISHER)
class LoginSucceeded(EventPayload):
    """A session began (password grant); ``amr`` says how it was authenticated (RFC 8176
    values, sorted: ``["pwd"]``, or ``["mfa", "otp", "pwd"]`` with a second factor)."""

    user_id: str
    session_id: str
    client_ip: str | None
    client_id: str
    amr: list[str] = Field(default_factory=lambda: ["pwd"])


@event_type("auth.token_refreshed", version=1, publisher=PUBLISHER)
class TokenRefreshed(EventPayload):
    """A refresh token was rotated; ``generation`` counts rotations in the family."""

    user_id: str
    session_id: str
    generation: int = Field(ge=1)
    client_ip: str | None


@event_type("auth.logged_out", version=1, publisher=PUBLISHER)
class LoggedOut(EventPayload):
    """The session (refresh family) was revoked by its owner."""

    user_id: str
    session_id: str


@event_type("auth.refresh_reuse_detected", version=1, publisher=PUBLISHER)
class RefreshReuseDetected(EventPayload):
    """An already-used refresh token was presented: the family was revoked (RFC 9700 §4.14.2).

    ``presented_generation`` is the replayed token's place in the family,
    ``current_generation`` the newest one issued.
    """

    user_id: str
    session_id: str
    presented_generation: int
    current_generation: int
    client_ip: str | None


@event_type("auth.signing_key_rotated", version=1, publisher=PUBLISHER)
class SigningKeyRotated(EventPayload):
    """``activated_kid`` now signs; ``retired_kid`` stays published until ``retired_until``."""

    activated_kid: str
    retired_kid: str | None
    next_kid: str
    retired_until: datetime | None
    removed_kids: list[str]


RevocationReason = Literal[
    "logout", "user_deactivated", "role_changed", "password_changed", "password_reset",
    "refresh_reuse", "admin", "key_compromised",
]


@event_type("auth.session_revoked", version=1, publisher=PUBLISHER)
class SessionRevoked(EventPayload):
    """Access tokens of session ``session_id`` (their ``sid`` claim) are refused from now on.

    Every service's token verifier consumes it (``healthflow.common.revocation``);
    ``until`` (aware UTC) is when the last access token of the session would have
    expired anyway, after which verifiers forget the entry.
    """

    session_id: str
    user_id: str
    reason: RevocationReason
    until: datetime


@event_type("auth.user_tokens_revoked", version=1, publisher=PUBLISHER)
class UserTokensRevoked(EventPayload):
    """Access tokens of ``user_id`` issued at or before ``not_before`` (their ``iat``,
    aware UTC, whole seconds) are refused from now on, at every service; ``until`` as in
    :class:`SessionRevoked`."""

    user_id: str
    not_before: datetime
    reason: RevocationReason
    until: datetime


@event_type("auth.signing_key_revoked", version=1, publisher=PUBLISHER)
class SigningKeyRevoked(EventPayload):
    """The signing key ``kid`` was revoked (compromise): it left the JWKS, and every token
    it signed is refused at once, everywhere; ``until`` as in :class:`SessionRevoked`."""

    kid: str
    reason: RevocationReason
    until: datetime


PASSWORD_RESET_PURPOSE = "password-reset"  # noqa: S105 - a label, not a secret
"""The ``purpose`` under which a reset link's token is derived from its ``reset_id``."""


@event_type("auth.password_reset_requested", version=1, publisher=PUBLISHER)
class PasswordResetRequested(EventPayload):
    """Someone asked for a password-reset link for ``user_id`` (an existing, active account).

    ``reset_id`` names the request, never the link: the link's token is
    :func:`healthflow.common.links.account_link_token` of ``reset_id`` under the secret
    only auth and notification hold (``ACCOUNT_LINK_SECRET``), so neither this event nor
    the audit log that keeps it can reset a password. The notification service e-mails
    the link; it is void after ``expires_at`` (aware UTC) or its first use.
    """

    user_id: str
    reset_id: str
    expires_at: datetime


PasswordChangeMethod = Literal["change", "reset"]


@event_type("auth.password_changed", version=1, publisher=PUBLISHER)
class PasswordChanged(EventPayload):
    """``user_id``'s password was changed by its owner (``change``: the current one was
    given) or through a reset link (``reset``: ``reset_id`` names the request); every
    session of the user was revoked (``sessions_revoked`` of them)."""

    user_id: str
    method: PasswordChangeMethod
    reset_id: str | None = None
    sessions_revoked: int = Field(ge=0)


@event_type("auth.mfa_enrolled", version=1, publisher=PUBLISHER)
class MfaEnrolled(EventPayload):
    """``user_id`` confirmed a second factor (``totp``: RFC 6238) with a first code, and
    received one-time recovery codes (``recovery_codes`` of them; never the codes)."""

    user_id: str
    method: Literal["totp"]
    recovery_codes: int = Field(ge=0)


@event_type("auth.mfa_reset", version=1, publisher=PUBLISHER)
class MfaReset(EventPayload):
    """``user_id``'s second factor and recovery codes were removed by ``reset_by`` (an
    admin's user id, e.g. for a lost phone); the next login asks for a new enrolment
    where the user's roles require one."""

    user_id: str
    reset_by: str


@event_type("auth.mfa_recovery_code_used", version=1, publisher=PUBLISHER)
class MfaRecoveryCodeUsed(EventPayload):
    """A one-time recovery code stood in for ``user_id``'s authenticator at a login;
    ``remaining`` unused codes are left."""

    user_id: str
    session_id: str
    remaining: int = Field(ge=0)


@event_type("auth.registration_attempted", version=1, publisher=PUBLISHER)
class RegistrationAttempted(EventPayload):
    """Someone tried to register with the address of the existing account ``user_id``;
    they got the same answer as a new registration (no account enumeration) and the
    owner is told by e-mail. At most a few per account and hour are published."""

    user_id: str
