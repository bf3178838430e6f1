"""Request and response models of the notification API (requests forbid extra fields)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from healthflow.notification import domain


class ChannelSwitches(BaseModel):
    """Which channels the user wants (consent is separate and always wins)."""

    model_config = ConfigDict(extra="forbid")

    email: bool = True
    sms: bool = True
    push: bool = True
    in_app: bool = True


class PreferencesIn(BaseModel):
    """``PUT /preferences``: the whole preference set.

    ``quiet_hours`` is ``"HH:MM-HH:MM"`` in ``timezone`` (may wrap midnight), or
    ``""`` for none; ``timezone`` an IANA zone name, ``None`` to use the
    appointment's zone (else the service default).
    """

    model_config = ConfigDict(extra="forbid")

    channels: ChannelSwitches = Field(default_factory=ChannelSwitches)
    locale: Literal["en", "de"] = "en"
    timezone: str | None = Field(default=None, max_length=64)
    quiet_hours: str = Field(default="21:00-08:00", max_length=11)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and domain.zone(value, "").key != value:
            raise ValueError("not a known IANA time zone")
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str) -> str:
        window = domain.QuietHours.parse(value)
        return str(window) if window else ""


class ConsentOut(BaseModel):
    """Consent per channel as last reported by the patient service (default: granted)."""

    email: bool
    sms: bool
    push: bool


class PreferencesOut(BaseModel):
    user_id: str
    channels: ChannelSwitches
    locale: str
    timezone: str | None
    quiet_hours: str
    consent: ConsentOut
    updated_at: datetime | None


class FeedItem(BaseModel):
    id: str
    template: str
    title: str
    body: str
    appointment_id: str | None
    created_at: datetime
    read_at: datetime | None


class DeliveryOut(BaseModel):
    """One delivery log entry: no body, the address masked."""

    id: str
    user_id: str
    channel: str
    template: str
    trigger: str | None
    status: str
    reason: str | None
    to: str | None = Field(description="masked address")
    attempts: int
    next_attempt_at: datetime | None
    provider_id: str | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    failed_at: datetime | None


class PushKeys(BaseModel):
    model_config = ConfigDict(extra="forbid")

    p256dh: str = Field(min_length=16, max_length=256)
    auth: str = Field(min_length=8, max_length=64)


class PushSubscriptionIn(BaseModel):
    """A browser's ``PushSubscription.toJSON()`` (W3C Push API)."""

    model_config = ConfigDict(extra="ignore")  # expirationTime and future members

    endpoint: AnyHttpUrl
    keys: PushKeys


class PushSubscriptionOut(BaseModel):
    id: str
    endpoint: str
    created_at: datetime


class VapidKeyOut(BaseModel):
    """The ``applicationServerKey`` for ``PushManager.subscribe`` (base64url P-256 point)."""

    public_key: str


class EmailVerificationIn(BaseModel):
    """``token``: from the welcome mail's ``/verify-email?token=…`` link."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=256)


class EmailVerificationOut(BaseModel):
    user_id: str
    email_verified: bool


class PhoneCodeSentOut(BaseModel):
    """A one-time code is on its way by SMS to ``to`` (masked); it works until
    ``expires_at`` (aware UTC)."""

    to: str = Field(description="masked number")
    expires_at: datetime


class PhoneVerificationIn(BaseModel):
    """``code``: the 6 digits of the SMS."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[0-9]{6}$")


class PhoneVerificationOut(BaseModel):
    user_id: str
    phone_verified: bool
