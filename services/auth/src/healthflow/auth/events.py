"""Events the auth service publishes (re-exported from :mod:`healthflow.contracts`).

The models (type string, publisher, schema version and fields) live in the
contracts package, which consumers import too; this module re-exports them so
call sites keep writing ``events.<Model>(...)``.
"""

from __future__ import annotations

from healthflow.contracts.auth import (
    LoggedOut,
    LoginFailed,
    LoginFailureReason,
    LoginSucceeded,
    MfaEnrolled,
    MfaRecoveryCodeUsed,
    MfaReset,
    PasswordChanged,
    PasswordChangeMethod,
    PasswordResetRequested,
    RefreshReuseDetected,
    RegistrationAttempted,
    RevocationReason,
    SessionRevoked,
    SigningKeyRevoked,
    SigningKeyRotated,
    TokenRefreshed,
    UserActivated,
    UserContactChanged,
    UserDeactivated,
    UserErased,
    UserRegistered,
    UserRoleChanged,
    UserTokensRevoked,
)

__all__ = [
    "LoggedOut",
    "LoginFailed",
    "LoginFailureReason",
    "LoginSucceeded",
    "MfaEnrolled",
    "MfaRecoveryCodeUsed",
    "MfaReset",
    "PasswordChangeMethod",
    "PasswordChanged",
    "PasswordResetRequested",
    "RefreshReuseDetected",
    "RegistrationAttempted",
    "RevocationReason",
    "SessionRevoked",
    "SigningKeyRevoked",
    "SigningKeyRotated",
    "TokenRefreshed",
    "UserActivated",
    "UserContactChanged",
    "UserDeactivated",
    "UserErased",
    "UserRegistered",
    "UserRoleChanged",
    "UserTokensRevoked",
]
