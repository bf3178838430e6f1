"""Request and response bodies of ``/api/v1/payments``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from healthflow.common.mongo import Document
from healthflow.payment.domain import PaymentStatus


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
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_document(cls, doc: Document, *, with_secret: bool = False) -> PaymentOut:
        payable = doc["status"] != PaymentStatus.SUCCEEDED.value
        return cls.model_validate({
            **doc, "id": doc["_id"],
            "client_secret": doc["client_secret"] if with_secret and payable else None})


class WebhookAck(BaseModel):
    """What the webhook route answers Stripe: ``applied``, ``duplicate`` or ``ignored``."""

    received: bool = True
    outcome: str
