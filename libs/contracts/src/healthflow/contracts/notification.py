"""Contracts of the events the notification service publishes (through the outbox).

Payloads name the delivery, channel, template, triggering event type, user
and the provider's id: never the message body nor the address (the audit log
keeps them, and it must not hold PHI it does not need).
"""

from __future__ import annotations

from healthflow.contracts.base import EventPayload, event_type

PUBLISHER = "notification"


class DeliveryEvent(EventPayload):
    """Fields both outcomes share."""

    delivery_id: str
    channel: str  # email | sms | push
    template: str  # e.g. appointment_booked, appointment_reminder, welcome
    trigger: str | None  # the event type that caused it; None for reminders
    user_id: str
    provider_id: str | None  # SMTP Message-ID, Twilio message SID, push message URL
    attempts: int


@event_type("notification.sent", version=1, publisher=PUBLISHER)
class NotificationSent(DeliveryEvent):
    """The provider accepted the message."""


@event_type("notification.failed", version=1, publisher=PUBLISHER)
class NotificationFailed(DeliveryEvent):
    """The message could not be delivered: permanently refused, out of retries, or
    reported undelivered by the provider. ``reason`` is a short code, no PHI."""

    reason: str
