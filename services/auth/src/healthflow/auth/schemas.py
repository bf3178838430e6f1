"""Request and response models of the auth API (requests refuse unknown fields)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from healthflow.auth.domain import PasswordRejected, check_password, normalize_phone
from healthflow.common.mongo import Document
from healthflow.common.permissions import STAFF_ROLES, Role


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _phone(value: str) -> str:
    return normalize_phone(value)


Phone = Annotated[str, StringConstraints(max_length=32), AfterValidator(_phone)]
FullName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# The policy itself (12–128 characters, …) is checked with the email, below; this
# bound only keeps absurd bodies away from the checks.
Password = Annotated[SecretStr, Field(max_length=1024)]


def _check_password(password: SecretStr, email: str) -> None:
    try:
        check_password(password.get_secret_value(), email=email)
    except PasswordRejected as exc:
        raise ValueError(f"password: {exc}") from None


class RegisterRequest(Request):
    """Patient self-registration. ``phone`` is E.164 (``+447700900123``)."""

    email: EmailStr
    password: Password
    full_name: FullName
    phone: Phone

    @model_validator(mode="after")
    def _policy(self) -> RegisterRequest:
        _check_password(self.password, self.email)
        return self


class CreateUserRequest(Request):
    """A staff account created by an admin; ``roles`` are staff roles (not ``patient``)."""

    email: EmailStr
    password: Password
    full_name: FullName
    phone: Phone | None = None
    roles: list[Role] = Field(min_length=1, max_length=len(Role))

    @field_validator("roles")
    @classmethod
    def _staff_only(cls, roles: list[Role]) -> list[Role]:
        wrong = [r.value for r in roles if r not in STAFF_ROLES]
        if wrong:
            raise ValueError(f"not staff roles: {', '.join(wrong)} (patients register themselves)")
        return sorted(set(roles))

    @model_validator(mode="after")
    def _policy(self) -> CreateUserRequest:
        _check_password(self.password, self.email)
        return self


class RefreshRequest(Request):
    """``refresh_token``: the opaque token last issued for the session."""

    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class TokenResponse(BaseModel):
    """RFC 6749 §5.1 token response; ``expires_in`` is the access token's lifetime in seconds."""

    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105
    expires_in: int


class UserOut(BaseModel):
    """An account as admins and its owner see it (never the password hash)."""

    id: str
    email: str
    full_name: str
    phone: str | None
    roles: list[str]
    status: Literal["active", "inactive"]
    created_at: datetime
    updated_at: datetime
    deactivated_at: datetime | None = None
    erased_at: datetime | None = None
    """When the person's data was erased (the address, name and phone are then empty)."""

    @classmethod
    def of(cls, doc: Document) -> UserOut:
        return cls(
            id=doc["_id"], email=doc["email"], full_name=doc["full_name"],
            phone=doc.get("phone"), roles=sorted(doc.get("roles", [])), status=doc["status"],
            created_at=doc["created_at"], updated_at=doc["updated_at"],
            deactivated_at=doc.get("deactivated_at"), erased_at=doc.get("erased_at"),
        )


class MeOut(UserOut):
    """The caller's account and the permissions its roles grant."""

    permissions: list[str]


class KeyOut(BaseModel):
    """A signing key's public facts (never key material)."""

    kid: str
    alg: str
    state: Literal["next", "active", "retired", "removed", "revoked"]
    created_at: datetime
    activated_at: datetime | None = None
    retired_at: datetime | None = None
    remove_after: datetime | None = None
    removed_at: datetime | None = None
    revoked_at: datetime | None = None


class RotationOut(BaseModel):
    """What a rotation did: the key that now signs, the one retired and until when."""

    activated_kid: str
    retired_kid: str | None
    next_kid: str
    retired_until: datetime | None
    removed_kids: list[str]


class JWKS(BaseModel):
    """RFC 7517 §5 JWK Set (public keys only)."""

    keys: list[dict[str, Any]]


class ChangePasswordRequest(Request):
    """The caller's current password and the new one (the registration policy applies)."""

    current_password: Password
    new_password: Password


class PasswordResetRequest(Request):
    """The address to send a reset link to."""

    email: EmailStr


class PasswordResetComplete(Request):
    """The token of the e-mailed link and the new password (the registration policy
    applies)."""

    token: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    new_password: Password


class PasswordResetAccepted(BaseModel):
    """The one answer to a reset request, whether or not the address has an account."""

    detail: str


Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=16)]


class TotpCode(Request):
    """A 6-digit code from the authenticator app (RFC 6238)."""

    code: Code


class ContactChangeRequest(Request):
    """The caller's new e-mail address and/or phone number (E.164), their current password
    and, when they have an authenticator, its current ``code`` (RFC 6238)."""

    current_password: Password
    email: EmailStr | None = None
    phone: Phone | None = None
    code: Code | None = None

    @model_validator(mode="after")
    def _something(self) -> ContactChangeRequest:
        if self.email is None and self.phone is None:
            raise ValueError("give a new email, a new phone, or both")
        return self


class ContactChangeAccepted(BaseModel):
    """The one answer to a contact change, whether or not the new address was free."""

    detail: str


class EnrolmentOut(BaseModel):
    """A new authenticator key: ``secret`` (base32) to type in, or ``otpauth_uri`` to show
    as a QR code. Confirm it with a first code."""

    secret: str
    otpauth_uri: str


class RecoveryCodesOut(BaseModel):
    """One-time recovery codes, shown once: each stands in for the authenticator at one
    login."""

    recovery_codes: list[str]


class MfaChallengeRequest(Request):
    """The ``mfa_token`` of a ``mfa_required`` answer."""

    mfa_token: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class MfaLoginRequest(MfaChallengeRequest):
    """The second step of a login: a ``code`` from the authenticator, or one unused
    ``recovery_code`` (exactly one of the two)."""

    code: Code | None = None
    recovery_code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                    max_length=32)] | None = None

    @model_validator(mode="after")
    def _one(self) -> MfaLoginRequest:
        if (self.code is None) == (self.recovery_code is None):
            raise ValueError("give exactly one of code and recovery_code")
        return self


class MfaTokenResponse(TokenResponse):
    """The tokens; ``recovery_codes`` (shown once) when this login enrolled the
    authenticator."""

    recovery_codes: list[str] | None = None
