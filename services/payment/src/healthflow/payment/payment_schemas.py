"""Response bodies of ``/api/v1/payments`` (an appointment's payment, its refund and
review flag; the webhook's acknowledgement)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from healthflow.common.mongo import Document
from healthflow.payment.domain import EXPIRABLE, PaymentStatus


class RefundOut(BaseModel):
    """What went back (``amount`` minor units of ``currency``; 0: the policy refunds
    nothing) and why (``reason``: see ``payment.refunded``); ``at`` aware UTC."""

    id: str | None
    amount: int
    currency: str
    reason: str
    at: datetime
    status: str | None = None  # "failed": Stripe reported it failed; ``amount`` excludes it


class DisputeOut(BaseModel):
    """A chargeback of the payment: Stripe's dispute ``id`` and ``status``
    (``needs_response`` ... while open; ``won``, ``lost``, ``warning_closed``), the
    ``amount`` in dispute (minor units of ``currency``), Stripe's ``reason`` code; times
    aware UTC (``closed_at`` None while open)."""

    id: str
    status: str
    amount: int
    currency: str
    reason: str
    opened_at: datetime
    closed_at: datetime | None = None


class ReviewOut(BaseModel):
    """Why a person must look at a payment: ``reason`` a code (``webhook:amount_mismatch``,
    ``reconcile:<error class>``, ``reconcile:cancelled_unrefunded``,
    ``dispute:<Stripe dispute status>``, ``refund:failed``), ``at`` aware UTC."""

    reason: str
    at: datetime


class PaymentOut(BaseModel):
    """One appointment's payment. ``amount`` is an integer in minor units of ``currency``
    (ISO 4217); ``client_secret`` (the PaymentIntent's, for Stripe.js / the stripe
    library to confirm with a card) is shown to the paying patient only, and only
    while payment is still possible; times aware UTC."""

    id: str
    appointment_id: str
    patient_id: str
    amount: int
    currency: str
    status: PaymentStatus
    intent_id: str
    client_secret: str | None = None
    refund: RefundOut | None = None
    dispute: DisputeOut | None = None
    hospital_id: str | None = None  # the consultation's hospital (None: not placed)
    review: ReviewOut | None = None  # flagged for a person to look at
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_document(cls, doc: Document, *, with_secret: bool = False) -> PaymentOut:
        payable = PaymentStatus(doc["status"]) in EXPIRABLE
        return cls.model_validate({
            **doc, "id": doc["_id"],
            "client_secret": doc["client_secret"] if with_secret and payable else None})


class WebhookAck(BaseModel):
    """What the webhook route answers Stripe: ``applied``, ``duplicate``, ``ignored``,
    ``mismatch``, ``refunded``, ``disputed`` or ``refund_failed``."""

    received: bool = True
    outcome: str
