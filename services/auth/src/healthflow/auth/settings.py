"""Settings of the auth service (environment prefix ``AUTH_``, then the unprefixed name).

Durations are seconds. The Argon2id defaults are RFC 9106 §4's second recommended
option (t=3, m=64 MiB, p=4), above the OWASP Password Storage Cheat Sheet minimum
(m=19 MiB, t=2, p=1); tests lower them through ``AUTH_ARGON2_*`` to stay fast.
"""

from __future__ import annotations

from limits import parse
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from healthflow.common.keywrap import KeyEncryptionSettings
from healthflow.common.settings import env_name


class Settings(KeyEncryptionSettings):
    """Auth service settings (see :class:`healthflow.common.settings.ServiceSettings`)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_prefix="AUTH_"
    )

    service_name: str = "auth"
    port: int = Field(default=8101, ge=1, le=65535)

    # Tokens and sessions (seconds)
    access_token_ttl: int = Field(default=15 * 60, ge=30, le=24 * 3600)
    refresh_token_ttl: int = Field(default=14 * 24 * 3600, ge=60)
    """Idle lifetime: a refresh token unused for this long expires."""
    session_max_age: int = Field(default=30 * 24 * 3600, ge=60)
    """Absolute lifetime of a session (refresh family), however often it is refreshed."""
    default_client_id: str = "healthflow"
    client_ids: list[str] = Field(
        default_factory=lambda: ["healthflow", "healthflow-web", "healthflow-mobile",
                                 "healthflow-paramedic", "healthflow-swagger"]
    )
    """OAuth client ids accepted in the token request (RFC 9068 ``client_id`` claim)."""

    # Signing keys
    key_refresh_interval: float = Field(default=30.0, gt=0)
    """How often a replica reloads the key set (another replica may have rotated)."""
    key_retire_grace: int = Field(default=60, ge=0)
    """Seconds a retired key stays published beyond the access-token lifetime (clock skew)."""

    # Argon2id (RFC 9106); memory in KiB
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_cost: int = Field(default=65_536, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)
    hash_concurrency: int = Field(default=2, ge=1)
    """Argon2 computations allowed at once (each holds ``argon2_memory_cost`` KiB)."""

    # Failed-login throttling (the ``limits`` library)
    redis_url: str | None = None
    """``redis://host:port/db``: share the counters between replicas; in memory when unset."""
    login_failures_per_client: list[str] = Field(
        default_factory=lambda: ["5/5 minutes", "10/hour", "20/day"], min_length=1)
    """``limits`` windows of failed logins one client address may make at one account
    (all of them apply, so the wait grows as it keeps failing; a success forgets them)."""
    login_failures_account_ceiling: str = "50/15 minutes"
    """Failures at one account from all clients together past which each client gets only
    ``login_failures_over_ceiling``: slows a distributed guesser, never locks the owner."""
    login_failures_over_ceiling: str = "1/15 minutes"
    login_failures_per_ip: str = "20/15 minutes"
    """Failures one client address may make at any accounts (password spraying)."""
    login_refusals_window: float = Field(default=900.0, gt=0)
    """Seconds: throttled refusals of one account or address make one ``auth.login_failed``
    per window (the rest are counted, and the count travels with the next window's)."""
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    """Addresses or networks of the proxies (the gateway) whose ``X-Forwarded-For`` names
    the real client address (JSON list, e.g. ``AUTH_TRUSTED_PROXIES='["10.0.0.0/8"]'``).
    Loopback by default: the service is reachable only through the gateway."""

    # Password resets (healthflow.auth.credentials)
    password_reset_ttl: int = Field(default=30 * 60, ge=60, le=24 * 3600)
    """Seconds a reset link stays valid (it is also void after its first use)."""
    password_resets_per_hour: int = Field(default=3, ge=1, le=100)
    """Reset e-mails sent for one account per hour; further requests get the same
    answer and send nothing (no mail-bombing of the owner)."""
    account_link_secret: SecretStr = SecretStr("embedded-account-link-secret")
    """Shared with the notification service (platform-wide ``ACCOUNT_LINK_SECRET``): the
    key of the reset links' tokens (:mod:`healthflow.common.links`)."""
    registration_notices: str = "3/hour"
    """``limits`` notation: e-mails per account telling its owner that someone tried to
    register with their address (the answer to the registration is the same anyway)."""

    # Contact changes (healthflow.auth.contact)
    email_change_ttl: int = Field(default=60 * 60, ge=60, le=24 * 3600)
    """Seconds the confirmation link sent to a new e-mail address stays valid (void after
    its first use, or a newer request)."""
    contact_revert_ttl: int = Field(default=7 * 24 * 3600, ge=3600, le=30 * 24 * 3600)
    """Seconds the "this wasn't me" link in the notice to the old address stays valid."""
    contact_changes: str = "3/day"
    """``limits`` notation: contact-change requests one account may make (past them 429);
    each sends mail to addresses the requester chooses."""

    # Second factor: TOTP (RFC 6238) and recovery codes (healthflow.auth.mfa)
    mfa_required_roles: list[str] = Field(
        default_factory=lambda: ["admin", "compliance_officer", "doctor"])
    """Roles whose logins need a second factor; a user with one and no authenticator yet
    enrols during the login. Others may enrol. The local platform runner sets
    ``AUTH_MFA_REQUIRED_ROLES='[]'`` unless told otherwise (docs/decisions.md)."""
    mfa_issuer: str = "HealthFlow"
    """The issuer an authenticator app shows (``otpauth://`` URI)."""
    mfa_challenge_ttl: int = Field(default=300, ge=30, le=3600)
    """Seconds between a correct password and the second factor."""
    mfa_challenge_attempts: int = Field(default=5, ge=1, le=20)
    """Wrong codes one challenge tolerates (the account's failed-login budget counts too)."""
    mfa_valid_window: int = Field(default=1, ge=0, le=2)
    """Time steps (30 s) a code may lag or lead the server's clock (RFC 6238 §5.2)."""
    mfa_recovery_codes: int = Field(default=10, ge=1, le=20)

    def own_production_problems(self) -> list[str]:
        problems = super().own_production_problems()
        if self.internal_service_key is None:  # auth checks every /internal caller with it
            problems.append(f"{env_name(type(self), 'internal_service_key')} (or "
                            "INTERNAL_SERVICE_KEY): production needs the key the /internal "
                            "routes check their callers' tokens with")
        return problems

    @model_validator(mode="after")
    def _limits_parse(self) -> Settings:
        for text in [*self.login_failures_per_client, self.login_failures_account_ceiling,
                     self.login_failures_over_ceiling, self.login_failures_per_ip,
                     self.registration_notices, self.contact_changes]:
            parse(text)  # ValueError names the text
        return self

    @model_validator(mode="after")
    def _ttl_within_max_lifetime(self) -> Settings:
        # Every verifier refuses tokens living longer than TOKEN_MAX_LIFETIME.
        if self.access_token_ttl > self.token_max_lifetime:
            raise ValueError("access_token_ttl must not exceed token_max_lifetime")
        return self

    @model_validator(mode="after")
    def _grace_covers_reload(self) -> Settings:
        # A replica that has not reloaded yet still signs with a just-retired key;
        # the grace keeps that key published long enough for those tokens.
        if self.key_retire_grace < self.key_refresh_interval:
            raise ValueError("key_retire_grace must be at least key_refresh_interval")
        return self
