"""Rules of the notification service: no FastAPI, no MongoDB, tested alone.

* which message each event causes, on which channels (:data:`APPOINTMENT_TEMPLATES`);
* whether a channel may be used for a user (consent, preference, address:
  :func:`suppression`) and when (quiet hours: :func:`quiet_until`);
* deterministic delivery ids (:func:`delivery_id`);
* a task offer's channels and Web Push (:func:`task_offer_channels`,
  :func:`task_push_data`; ``Urgency``, ``TTL``, ``Topic``: :func:`push_headers`,
  :func:`push_ttl`, :func:`push_topic`);
* reminder times (:func:`reminder_times`), local times with the zone
  abbreviation (:func:`format_local`), email verification tokens (:func:`verification_token`).

All times are aware UTC unless a name says local.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"  # Web Push to the user's subscribed browsers
    IN_APP = "in_app"  # the in-app feed (and its Server-Sent Events stream)


class Status(StrEnum):
    """Delivery states: queued → sent → delivered, or → failed; suppressed, cancelled end early."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    SUPPRESSED = "suppressed"  # never sent: no consent, opted out, no address, inactive
    CANCELLED = "cancelled"  # no longer useful (a reminder whose visit has begun)


CONSENT_CHANNELS = (Channel.EMAIL, Channel.SMS, Channel.PUSH)
"""Channels that need the patient's consent. The in-app feed is part of the service
the user signed up for and needs none."""

DEFAULT_CONSENT = {Channel.EMAIL: True, Channel.SMS: True, Channel.PUSH: True}
"""Consent a user has until a ``patient.consent_changed`` event says otherwise: the
patient gave contact details at registration for the purpose of their care
(GDPR Art. 6(1)(b)); withdrawal (Art. 7(3)) is honoured from the event on."""

QUIET_HOURS_CHANNELS = frozenset({Channel.SMS, Channel.PUSH})
"""Channels that interrupt (a phone buzzes); email and the feed wait to be read."""


class Clock(Protocol):
    """Where the delivery engine and the reminder scheduler read the time."""

    def now(self) -> datetime:
        """Now, aware UTC."""
        ...


class SystemClock:
    """The real clock (aware UTC, millisecond precision like BSON)."""

    def now(self) -> datetime:
        now = datetime.now(UTC)
        return now.replace(microsecond=(now.microsecond // 1000) * 1000)


class SettableClock:
    """A clock that moves only when told to (tests, drills, benchmarks)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the clock needs an aware time")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when.astimezone(UTC)

    def advance(self, **delta: float) -> datetime:
        """Move forward by ``timedelta(**delta)``; returns the new now."""
        self._now += timedelta(**delta)
        return self._now


@dataclass(frozen=True)
class MessageKind:
    """What an event makes: its template, whether it is urgent, its channels."""

    template: str
    channels: tuple[Channel, ...] = (Channel.EMAIL, Channel.SMS, Channel.PUSH, Channel.IN_APP)
    urgent: bool = False


APPOINTMENT_TEMPLATES: Mapping[str, MessageKind] = {
    "appointment.booked": MessageKind("appointment_booked"),
    "appointment.confirmed": MessageKind("appointment_confirmed"),
    "appointment.rescheduled": MessageKind("appointment_rescheduled"),
    "appointment.cancelled": MessageKind("appointment_cancelled"),
    "appointment.no_show": MessageKind(
        "appointment_no_show", channels=(Channel.EMAIL, Channel.IN_APP)
    ),
}
DOCTOR_TEMPLATES: Mapping[str, MessageKind] = {
    "appointment.booked": MessageKind("doctor_appointment_booked",
                                      channels=(Channel.PUSH, Channel.IN_APP)),
    "appointment.rescheduled": MessageKind("doctor_appointment_rescheduled",
                                           channels=(Channel.PUSH, Channel.IN_APP)),
    "appointment.cancelled": MessageKind("doctor_appointment_cancelled",
                                         channels=(Channel.PUSH, Channel.IN_APP)),
}
"""What the doctor's own account (``doctor_user_id``) is told: a feed item and a push,
with the time and place only (never the patient's name)."""
REMINDER = MessageKind("appointment_reminder")
WELCOME = MessageKind("welcome", channels=(Channel.EMAIL, Channel.IN_APP))
PASSWORD_RESET = MessageKind("password_reset", channels=(Channel.EMAIL,))
"""``auth.password_reset_requested``: the reset link, by e-mail only (it must reach the
address the account was registered with; never shown in the feed or a push)."""
PASSWORD_CHANGED = MessageKind("password_changed", channels=(Channel.EMAIL, Channel.IN_APP))
REGISTRATION_ATTEMPTED = MessageKind("registration_attempted", channels=(Channel.EMAIL,))
"""``auth.registration_attempted``: someone tried to sign up with the owner's address."""
"""``auth.password_changed``: the owner is told, so a change they did not make is noticed."""
CONTACT_CHANGED = MessageKind("contact_changed", channels=(Channel.EMAIL, Channel.IN_APP))
"""``user.contact_changed``: the owner is told their address or number changed, by e-mail to
the address the account had before (the one a hijacker would not read) and in the feed."""
EMAIL_VERIFICATION = MessageKind("email_verification", channels=(Channel.EMAIL,))
"""``user.contact_changed`` with a new address: the verification link, to that address."""
PHONE_VERIFICATION = MessageKind("phone_verification", channels=(Channel.SMS,), urgent=True)
"""The one-time code of ``POST …/phone/verification``, by SMS only, at once (urgent: the
user is waiting for it, quiet hours do not hold it back)."""
PRESCRIPTION_ISSUED = MessageKind("prescription_issued")
"""``prescription.issued``: the patient's "new prescription ready" (no medication named:
the message only points to the app, where the patient signs in to read it)."""
XRAY_REPORT_READY = MessageKind("xray_report_ready")
"""``xray.reported``: the patient's "your X-ray report is ready" (no body part, finding or
doctor named: the message only points to the app, where the patient signs in to read it)."""

EMERGENCY_ACCESS = MessageKind("emergency_access",
                               channels=(Channel.EMAIL, Channel.PUSH, Channel.IN_APP))
"""``record.emergency_access_granted``: the patient is told a clinician without a care
relationship opened their record in an emergency (break-the-glass), that it is logged and
reviewed, and where to see who read it (no clinician, reason or content named)."""

EMERGENCY_INBOUND = MessageKind("emergency_inbound",
                                channels=(Channel.PUSH, Channel.SMS, Channel.IN_APP),
                                urgent=True)
"""``emergency.destination_chosen``: a hospital's receiving doctors and nurses are told
an ambulance is bringing a patient (priority and department only: no name, no
condition beyond the triage class)."""

TASK_OFFERED = MessageKind("task_offered", channels=(Channel.PUSH, Channel.SMS),
                           urgent=True)
"""``paramedic.task_offered`` / ``xray_task_offered`` / ``task_unacknowledged``: an urgent
Web Push to every browser of the offered paramedic and, as the fallback, an SMS — the
channels of one event are :func:`task_offer_channels`. The call sign, the task id and
where to answer only: no patient, no place."""

TASK_OFFERED_TRIGGERS = frozenset({"paramedic.task_offered", "paramedic.xray_task_offered"})
"""The events that offer a task (``paramedic.task_unacknowledged`` only re-sends one)."""

TASK_APP_PATH = "/paramedic/tasks/{task_id}"
"""Where in the app a task offer opens (the push's ``path``; the app's base URL prefixes it
in ``url``)."""
PAYMENT_REFUNDED = MessageKind("payment_refunded")
"""``payment.refunded``: how much of a consultation's payment went back to the patient."""
PAYMENT_REFUND_FAILED = MessageKind("payment_refund_failed",
                                    channels=(Channel.EMAIL, Channel.PUSH, Channel.IN_APP))
"""``payment.refund_failed``: a refund the patient was told of did not reach their card."""

ENDED_STATUSES = frozenset({"cancelled", "no_show", "completed"})
"""Appointment statuses after which a late booking confirmation is no longer sent."""

ENDS_REMINDERS = frozenset(
    {"appointment.cancelled", "appointment.no_show", "appointment.completed",
     "appointment.checked_in"}
)
"""Appointment events after which no reminder is useful."""

SETS_REMINDERS = frozenset({"appointment.booked", "appointment.confirmed",
                            "appointment.rescheduled"})


def delivery_id(source_id: str, channel: str, recipient: str, template: str) -> str:
    """The id of the one message ``source_id`` (event or reminder firing) causes.

    SHA-256 over the four parts (unit-separated), first 128 bits in hex: the same
    event on the same channel to the same recipient with the same template always
    has the same id, so a redelivered event finds its delivery already there.
    """
    raw = "\x1f".join((source_id, str(channel), recipient, template)).encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def task_offer_channels(trigger: str, stream_connected: bool | None) -> tuple[Channel, ...]:
    """The channels an offer event reaches the paramedic on.

    An offer (:data:`TASK_OFFERED_TRIGGERS`) is always pushed at once (Web Push, whatever
    the app's stream does) and also texted when the app had no task stream open
    (``stream_connected`` False; ``None``, an older publisher, is not known to be
    closed); ``paramedic.task_unacknowledged`` (the open stream carried the offer, the
    app never acknowledged it) is texted only: the push went out with the offer.
    """
    if trigger not in TASK_OFFERED_TRIGGERS:
        return (Channel.SMS,)
    return (Channel.PUSH, Channel.SMS) if stream_connected is False else (Channel.PUSH,)


def task_push_data(raw: Mapping[str, Any]) -> dict[str, Any]:
    """What a task offer's Web Push carries besides title and body: ``task_id``, ``kind``
    (``emergency`` | ``xray``), ``call_sign`` (the unit id when the unit has none),
    ``unit_id``, the app ``path`` to open and a ``tag`` per task (a re-offer replaces the
    shown notification). Identifiers only: no emergency, order, patient or place."""
    task_id = str(raw["task_id"])
    return {"task_id": task_id, "kind": "xray" if raw.get("order_id") is not None
            else "emergency", "call_sign": raw.get("call_sign") or raw["unit_id"],
            "unit_id": raw["unit_id"], "path": TASK_APP_PATH.format(task_id=task_id),
            "tag": f"task:{task_id}"}


def push_topic(key: str) -> str:
    """An RFC 8030 §5.4 ``Topic`` for ``key``: at most 32 characters of the URL-safe base64
    alphabet (the first 32 hex digits of its SHA-256). The push service replaces a stored,
    undelivered message with a newer one of the same topic."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def push_ttl(now: datetime, expires_at: datetime | None, ceiling: int) -> int:
    """The ``TTL`` (RFC 8030 §5.2, whole seconds) of a push sent at ``now``: ``ceiling``
    (``settings.push_ttl``), or less when the delivery expires sooner (a task offer's
    answer deadline) — the push service drops it once it is no use; at least 1."""
    if expires_at is None:
        return ceiling
    left = math.ceil((expires_at - now).total_seconds())
    return max(1, min(ceiling, left))


def push_headers(*, urgent: bool, topic: str | None) -> dict[str, str]:
    """Extra Web Push request headers: ``Urgency: high`` for an urgent kind (RFC 8030
    §5.3: delivered even to a device saving its battery; others keep the default
    ``normal``) and the ``Topic`` when the message has one."""
    headers = {"Urgency": "high"} if urgent else {}
    if topic:
        headers["Topic"] = topic
    return headers


def suppression(
    channel: Channel,
    *,
    consent: Mapping[str, bool],
    preferences: Mapping[str, bool],
    address: str | None,
    active: bool = True,
) -> str | None:
    """Why ``channel`` must not be used, or ``None`` when it may.

    Reasons: ``inactive`` (account deactivated), ``no_consent`` (withdrawn;
    urgency never overrides it), ``opted_out`` (the user's preference),
    ``no_address``.
    """
    if not active:
        return "inactive"
    if channel in CONSENT_CHANNELS and not consent.get(channel, DEFAULT_CONSENT[channel]):
        return "no_consent"
    if not preferences.get(channel, True):
        return "opted_out"
    if channel is not Channel.IN_APP and not address:
        return "no_address"
    return None


@dataclass(frozen=True)
class QuietHours:
    """A daily window in local wall-clock time; ``start > end`` wraps midnight."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str | None) -> QuietHours | None:
        """``"21:00-08:00"`` → the window; ``""``/``None`` → none.

        Raises:
            ValueError: not ``HH:MM-HH:MM``, or start equals end.
        """
        if not text:
            return None
        try:
            a, b = text.split("-")
            start, end = time.fromisoformat(a.strip()), time.fromisoformat(b.strip())
        except ValueError:
            raise ValueError(f"quiet hours must look like 21:00-08:00, not {text!r}") from None
        if start == end:
            raise ValueError("quiet hours must not start and end at the same time")
        return cls(start.replace(second=0, microsecond=0), end.replace(second=0, microsecond=0))

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def contains(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


def zone(name: str | None, fallback: str = "UTC") -> ZoneInfo:
    """The IANA zone ``name`` (or ``fallback`` when it is missing or unknown)."""
    for candidate in (name, fallback, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def quiet_until(now: datetime, window: QuietHours | None, tz: ZoneInfo) -> datetime | None:
    """When quiet hours that contain ``now`` end (aware UTC), or ``None`` outside them.

    The end is the next local ``window.end`` wall-clock time in ``tz``; across a
    DST change the local time is resolved with ``fold=0`` (the earlier instant).
    """
    if window is None:
        return None
    local = now.astimezone(tz)
    if not window.contains(local.time().replace(tzinfo=None)):
        return None
    end_date = local.date()
    if local.time().replace(tzinfo=None) >= window.end:
        end_date += timedelta(days=1)
    end_local = datetime.combine(end_date, window.end, tzinfo=tz)
    return end_local.astimezone(UTC)


def reminder_times(
    start: datetime, offsets_minutes: Iterable[int], now: datetime
) -> list[tuple[int, datetime]]:
    """``(offset, due_at)`` for each offset whose time is still ahead of ``now``.

    A booking made 30 minutes ahead gets no 24 h and no 1 h reminder: the
    confirmation is the reminder.
    """
    due = [(m, start - timedelta(minutes=m)) for m in offsets_minutes]
    return [(m, at) for m, at in due if at > now]


_DAY_NAMES = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "de": ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
}
_MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December")
SUPPORTED_LOCALES = ("en", "de")


def format_local(when: datetime, tz: ZoneInfo, locale: str) -> str:
    """``when`` as the patient reads it, in ``tz`` with the zone's abbreviation.

    en: ``Monday, 23 November 2026, 09:30 CET``; de: ``Montag, 23.11.2026, 09:30 Uhr CET``.
    24-hour clock in both (ISO 8601 time of day).
    """
    local = when.astimezone(tz)
    abbreviation = local.tzname() or tz.key
    if locale == "de":
        day = _DAY_NAMES["de"][local.weekday()]
        return f"{day}, {local:%d.%m.%Y}, {local:%H:%M} Uhr {abbreviation}"
    day = _DAY_NAMES["en"][local.weekday()]
    return (f"{day}, {local.day} {_MONTHS_EN[local.month - 1]} {local.year}, "
            f"{local:%H:%M} {abbreviation}")


def pick_locale(requested: str | None, default: str) -> str:
    return requested if requested in SUPPORTED_LOCALES else default


def verification_token(secret: bytes, user_id: str, email: str, expires_at: datetime) -> str:
    """An email-verification token: ``<user>.<expiry epoch s>.<HMAC-SHA256>`` (RFC 2104).

    The MAC covers the user id, the lower-cased address and the expiry, so it is
    good for one address until ``expires_at``; base64url without padding.
    """
    expiry = str(int(expires_at.timestamp()))
    message = "\x1f".join((user_id, email.strip().lower(), expiry)).encode()
    mac = hmac.new(secret, message, hashlib.sha256).digest()
    return f"{user_id}.{expiry}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def check_verification_token(
    secret: bytes, token: str, email: str, now: datetime
) -> str | None:
    """The user id ``token`` vouches for, or ``None`` if forged, for another address or expired."""
    try:
        user_id, expiry, _ = token.rsplit(".", 2)
        expires_at = datetime.fromtimestamp(int(expiry), UTC)
    except (ValueError, OverflowError, OSError):
        return None
    expected = verification_token(secret, user_id, email, expires_at)
    if not hmac.compare_digest(expected, token) or now >= expires_at:
        return None
    return user_id


def mask_address(channel: str, address: str | None) -> str | None:
    """Enough of an address to tell which one was used, not enough to use it.

    ``a***@example.org``, ``+49******4567``; push endpoints by host only.
    """
    if not address:
        return None
    if channel == Channel.EMAIL:
        local, _, domain_part = address.partition("@")
        return f"{local[:1]}***@{domain_part}"
    if channel == Channel.SMS:
        return address[:3] + "*" * max(0, len(address) - 7) + address[-4:]
    if channel == Channel.PUSH:
        from urllib.parse import urlparse

        return urlparse(address).netloc or "push"
    return None


def appointment_context(
    data: Mapping[str, Any], *, locale: str, doctor_name: str | None, place: str | None,
    fallback_tz: str,
) -> dict[str, Any]:
    """Template variables for an appointment message: minimum necessary only.

    Date and time in the appointment's IANA zone (with its abbreviation), the
    doctor's display name and the place when known, the mode. Never the reason,
    notes or anything clinical (HIPAA 45 CFR 164.502(b) minimum necessary).
    """
    tz = zone(data.get("timezone"), fallback_tz)
    start = _aware(data["start"])
    context: dict[str, Any] = {
        "when": format_local(start, tz, locale),
        "doctor": doctor_name,
        "place": place,
        "online": data.get("mode") == "online",
        "appointment_id": data.get("appointment_id"),
    }
    if data.get("previous_start"):
        context["previous_when"] = format_local(_aware(data["previous_start"]), tz, locale)
    return context


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        raise ValueError(f"not a time: {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_time(value: Any) -> datetime:
    """An aware UTC datetime from an event field (RFC 3339 string or datetime).

    Raises:
        ValueError: the value is not a time.
    """
    return _aware(value)
