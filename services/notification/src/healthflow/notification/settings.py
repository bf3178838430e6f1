"""Notification service settings (environment variables prefixed ``NOTIFICATION_``).

Durations are seconds (floats) unless a name says minutes. The providers'
defaults point at loopback: an SMTP server on ``127.0.0.1:8025`` and a
Twilio-compatible Messages API on ``http://127.0.0.1:8026``, where the local mailbox
of ``make run`` listens (``healthflow.devkit.mailbox``, development only; the
service starts no stand-in itself); production sets the real ones.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from healthflow.common.keywrap import KeyEncryptionSettings
from healthflow.common.outbound import OutboundPolicy
from healthflow.common.settings import ServiceSettings
from healthflow.common.topology import SERVICES

INFO = SERVICES["notification"]


class Settings(KeyEncryptionSettings):
    """Settings of the notification service; see :class:`ServiceSettings` for the shared ones."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_prefix=INFO.env_prefix
    )

    stand_in_fields: ClassVar[tuple[str, ...]] = (
        *ServiceSettings.stand_in_fields, "smtp_host", "twilio_base_url", "twilio_account_sid")

    service_name: str = INFO.name
    port: int = Field(default=INFO.port, ge=1, le=65535)

    # Sending caps per destination (issue 16: no SMS pumping to premium numbers one
    # registers, no mail-bombing): messages sent to one phone number / e-mail address
    # within ``destination_cap_window`` seconds, SMS verification codes included; past it
    # a message is dropped (suppressed, ``destination_capped``). Security e-mails
    # (``domain.SECURITY_EMAIL_TEMPLATES``) count but are never dropped (auth caps them).
    sms_per_number_cap: int = Field(default=10, ge=1)
    email_per_address_cap: int = Field(default=30, ge=1)
    destination_cap_window: float = Field(default=3600.0, gt=0)

    # Email (SMTP through aiosmtplib). ``smtp_security``: "none", "starttls" (RFC 3207)
    # or "tls" (implicit TLS, RFC 8314). Auth is used when a username is set.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=8025, ge=1, le=65535)
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # A PEM file of CA certificates to trust for the server's TLS certificate (a private
    # CA); None: the system's trust store. Certificates are always verified.
    smtp_ca_file: str | None = None
    smtp_timeout: float = Field(default=10.0, gt=0)
    email_from: str = "HealthFlow <no-reply@healthflow.example>"

    # SMS (Twilio's Python library). ``twilio_base_url`` replaces https://api.twilio.com.
    twilio_account_sid: str = "AC00000000000000000000000000000000"
    twilio_auth_token: SecretStr = SecretStr("embedded-twilio-auth-token")
    twilio_from: str = "+15005550006"
    twilio_base_url: str = "http://127.0.0.1:8026"
    twilio_timeout: float = Field(default=10.0, gt=0)
    # The public URL Twilio posts delivery statuses to (and signs): set it to the
    # gateway's address of POST /api/v1/notifications/twilio/status. None: no callbacks
    # are requested, and callbacks are validated against the URL the request arrived at.
    twilio_status_callback_url: str | None = None

    # Web Push (VAPID, RFC 8292). Without a key, one is generated once and kept in the
    # service's database (envelope-encrypted with KEY_ENCRYPTION_KEYS, see
    # healthflow.notification.vapid) so that every replica signs with the same key.
    vapid_private_key: SecretStr | None = None
    vapid_subject: str = "mailto:ops@healthflow.example"
    push_timeout: float = Field(default=10.0, gt=0)
    push_ttl: int = Field(default=3600, ge=0)
    # Hosts of the push services browsers subscribe with ("host" or ".suffix"):
    # endpoints elsewhere are refused (healthflow.common.outbound). Chrome, Firefox,
    # Edge, Safari.
    push_allowed_hosts: list[str] = Field(default_factory=lambda: [
        "fcm.googleapis.com", "updates.push.services.mozilla.com", ".notify.windows.com",
        ".push.apple.com"])
    # Development sinks only: plain http and loopback/private addresses.
    push_allow_insecure_sink: bool = False
    push_max_subscriptions: int = Field(default=5, ge=1)  # per user (browsers, devices)

    @property
    def push_policy(self) -> OutboundPolicy:
        """Where Web Push may go (see :mod:`healthflow.common.outbound`)."""
        return OutboundPolicy(self.push_allowed_hosts,
                              require_https=not self.push_allow_insecure_sink,
                              allow_private=self.push_allow_insecure_sink)

    # Content and policy
    default_locale: Literal["en", "de"] = "en"
    default_timezone: str = "UTC"
    # Quiet hours in the user's local time, "HH:MM-HH:MM" (may wrap midnight); "" for none.
    # Non-urgent SMS and Web Push wait until they end; email and the in-app feed do not.
    default_quiet_hours: str = "21:00-08:00"
    reminder_offsets_minutes: list[int] = Field(default_factory=lambda: [24 * 60, 60])
    app_base_url: str = "https://app.healthflow.example"
    email_verification_secret: SecretStr = SecretStr("embedded-email-verification-secret")
    email_verification_ttl: float = Field(default=48 * 3600.0, gt=0)
    # Non-essential e-mail (reminders, appointment and document notices) goes only to a
    # verified address (healthflow.notification.verification); the local runner turns it
    # off for the demo and e2e accounts (NOTIFICATION_REQUIRE_VERIFIED_EMAIL=false).
    require_verified_email: bool = True
    # Phone verification by a one-time SMS code (healthflow.notification.verification):
    # 6 digits, stored only as HMAC-SHA256 under email_verification_secret, valid
    # phone_code_ttl seconds for phone_code_max_attempts tries, one new code per
    # phone_code_cooldown seconds and phone_codes_per_day a day (24 h from the first) per
    # account and per number, so a guesser gets at most codes × tries a day.
    # Non-essential SMS (reminders, appointment notices) goes only to a verified number;
    # the local runner turns it off like the e-mail gate
    # (NOTIFICATION_REQUIRE_VERIFIED_PHONE=false).
    phone_code_ttl: float = Field(default=600.0, gt=0)
    phone_code_max_attempts: int = Field(default=5, ge=1, le=20)
    phone_code_cooldown: float = Field(default=60.0, ge=0)
    phone_codes_per_day: int = Field(default=5, ge=1, le=100)
    require_verified_phone: bool = True
    # Shared with the auth service (platform-wide ACCOUNT_LINK_SECRET): the key of the
    # password-reset links' tokens (healthflow.common.links).
    account_link_secret: SecretStr = SecretStr("embedded-account-link-secret")

    # Delivery engine
    dispatch_interval: float = Field(default=1.0, gt=0)
    reminder_interval: float = Field(default=5.0, gt=0)
    dispatch_concurrency: int = Field(default=16, ge=1, le=512)
    dispatch_batch: int = Field(default=200, ge=1, le=10_000)
    delivery_lease: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=8, ge=1, le=100)
    retry_base: float = Field(default=30.0, gt=0)
    retry_max: float = Field(default=3600.0, gt=0)
    stream_heartbeat: float = Field(default=15.0, gt=0)

    @field_validator("reminder_offsets_minutes")
    @classmethod
    def _positive_offsets(cls, value: list[int]) -> list[int]:
        if any(v <= 0 for v in value):
            raise ValueError("reminder offsets must be positive minutes before the start")
        return sorted(set(value), reverse=True)
