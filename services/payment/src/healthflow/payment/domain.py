"""Payment rules: the status of an appointment's payment and how Stripe's reports move it
(no I/O).

One payment per appointment, backed by one Stripe PaymentIntent. Statuses:

=================  =========================================================
status             meaning
=================  =========================================================
requires_payment   the PaymentIntent exists; the patient has not paid yet
declined           the last card was declined; the slot stays held, the
                   patient may try another card
succeeded          Stripe reported ``payment_intent.succeeded``
expired            the hold ended unpaid; the intent was cancelled at Stripe
                   first, so no card can succeed on it afterwards
cancelled          the appointment was cancelled before it was paid (the intent
                   cancelled at Stripe likewise)
refunded           all of it went back (:class:`RefundPolicy`)
partially_refunded part of it went back
=================  =========================================================

Stripe delivers webhooks at least once and in no guaranteed order
(https://docs.stripe.com/webhooks#event-ordering), so :func:`next_status` is a
monotone rule: ``succeeded`` is never left by a later failure report, and a
report that changes nothing returns ``None``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypedDict

from healthflow.common.problems import UnprocessableContent


class PaymentStatus(StrEnum):
    REQUIRES_PAYMENT = "requires_payment"
    DECLINED = "declined"
    SUCCEEDED = "succeeded"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"


FINAL = frozenset(PaymentStatus) - {PaymentStatus.REQUIRES_PAYMENT, PaymentStatus.DECLINED}
"""Statuses no Stripe report about the intent moves any more."""
EXPIRABLE = frozenset({PaymentStatus.REQUIRES_PAYMENT, PaymentStatus.DECLINED})
"""Statuses whose hold ends at its deadline."""

INTENT_EVENTS: dict[str, PaymentStatus] = {
    "payment_intent.succeeded": PaymentStatus.SUCCEEDED,
    "payment_intent.payment_failed": PaymentStatus.DECLINED,
}
"""The Stripe event types this service acts on, and the status each reports."""

CURRENCY = re.compile(r"^[A-Z]{3}$")


class AmountMismatch(UnprocessableContent):
    """422: Stripe reports another amount or currency than the payment asked for."""

    title, slug = "Amount Mismatch", "payment-amount-mismatch"


def next_status(current: PaymentStatus, reported: PaymentStatus) -> PaymentStatus | None:
    """The status after Stripe reports ``reported``, or ``None`` when nothing changes
    (a repeat, or a failure reported after the success it preceded)."""
    if current in FINAL or current is reported:
        return None
    return reported


def check_money(amount: int, currency: str) -> tuple[int, str]:
    """``(amount, currency)`` of a charge: an integer above zero in minor units and an
    ISO 4217 alphabetic code (returned upper case; Stripe takes it lower case).

    Raises:
        ValueError: a non-integer or non-positive amount, or a malformed currency.
    """
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValueError(f"the amount must be a positive integer of minor units, not {amount!r}")
    code = currency.upper()
    if not CURRENCY.match(code):
        raise ValueError(f"{currency!r} is not an ISO 4217 currency code")
    return amount, code


def ensure_reported_money(amount: int, currency: str, reported_amount: int,
                          reported_currency: str) -> None:
    """Stripe's PaymentIntent must carry exactly the payment's amount and currency.

    Raises:
        AmountMismatch: (422) it does not (a tampered or foreign intent).
    """
    if reported_amount != amount or reported_currency.upper() != currency:
        raise AmountMismatch(
            f"Stripe reports {reported_amount} {reported_currency.upper()}, "
            f"the payment is {amount} {currency}")


PAYMENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://healthflow/payment")
"""The UUID namespace of payment ids (RFC 9562 section 5.5, version 5)."""


class IntentRequest(TypedDict):
    """The keyword arguments of ``Stripe.create_intent``."""

    amount: int
    currency: str
    idempotency_key: str
    metadata: dict[str, str]


def payment_id_of(appointment_id: str) -> str:
    """The payment id of an appointment's payment: a UUID version 5 (RFC 9562 §5.5) of
    the appointment id, so that a retried checkout sends Stripe the same parameters under
    the same idempotency key (https://docs.stripe.com/api/idempotent_requests: a reused
    key with other parameters is refused with ``idempotency_error``)."""
    return str(uuid.uuid5(PAYMENT_NAMESPACE, appointment_id))


def intent_request(appointment_id: str, amount: int, currency: str) -> IntentRequest:
    """The keyword arguments of :meth:`Stripe.create_intent` for an appointment's fee:
    ``{amount, currency, idempotency_key: "appointment-<id>", metadata: {appointment_id,
    payment_id}}``; a function of its arguments only, so every retry sends the same."""
    return {"amount": amount, "currency": currency,
            "idempotency_key": f"appointment-{appointment_id}",
            "metadata": {"appointment_id": appointment_id,
                         "payment_id": payment_id_of(appointment_id)}}


PROVIDER_ROLES = frozenset({"doctor", "staff"})
"""Who cancels on the hospital's side (``AppointmentCancelled.cancelled_by_role``)."""


@dataclass(frozen=True)
class RefundPolicy:
    """How much of a paid appointment goes back when it is cancelled.

    * cancelled before the payment was recorded (never confirmed): everything;
    * the doctor or the hospital's staff cancel: everything, always;
    * the patient cancels at least ``full_window`` before the start: everything;
    * the patient cancels later: ``late_percent`` (0–100) of the amount, rounded down
      to a whole minor unit (``amount * late_percent // 100``; integers only).
    """

    full_window: timedelta
    late_percent: int

    def refund(self, amount: int, *, cancelled_by_role: str, cancelled_at: datetime,
               start: datetime, paid_at: datetime | None = None) -> tuple[int, str]:
        """``(minor units to refund, reason code)``; times aware UTC. Reason codes:
        ``cancelled_before_recorded`` (cancelled before ``paid_at``, when this service
        recorded the success: the appointment was never confirmed, whatever order the
        events came in), ``cancelled_by_provider``, ``inside_window``,
        ``late_cancellation``."""
        if paid_at is not None and cancelled_at < paid_at:
            return amount, "cancelled_before_recorded"
        if cancelled_by_role in PROVIDER_ROLES:
            return amount, "cancelled_by_provider"
        if start - cancelled_at >= self.full_window:
            return amount, "inside_window"
        return amount * self.late_percent // 100, "late_cancellation"


def paid_at(history: list[dict[str, Any]]) -> datetime | None:
    """When the payment reached ``succeeded`` (its history entries ``{status, at}``)."""
    times = [h["at"] for h in history if h["status"] == PaymentStatus.SUCCEEDED.value]
    return max(times) if times else None


def refunded_status(amount: int, refunded: int) -> PaymentStatus | None:
    """The status after refunding ``refunded`` of ``amount`` minor units (``None``: 0)."""
    if refunded <= 0:
        return None
    return PaymentStatus.REFUNDED if refunded >= amount else PaymentStatus.PARTIALLY_REFUNDED
