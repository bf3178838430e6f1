"""HTTP routes of the payment service under ``/api/v1/payments``.

* ``GET /checkout/{appointment_id}``: the appointment's payment with its client secret
  (the paying patient) or without (``payments:read_any``).
* ``GET ""``: the caller's payments (finance: anyone's, ``?patient_id=``).
* ``POST /webhooks/stripe``: public, accepted only with a valid ``Stripe-Signature``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request

from healthflow.common.auth import Principal, require_any
from healthflow.common.http import get_runtime
from healthflow.common.permissions import Permission as P
from healthflow.common.service import ServiceRuntime
from healthflow.payment import service
from healthflow.payment.schemas import PaymentOut, WebhookAck

router = APIRouter(prefix="/api/v1/payments", tags=["payments"])

Runtime = Annotated[ServiceRuntime, Depends(get_runtime)]
Reader = require_any(P.PAYMENTS_READ_OWN, P.PAYMENTS_READ_ANY)


@router.get("/checkout/{appointment_id}", summary="The payment of an appointment")
async def checkout(runtime: Runtime,
                   appointment_id: Annotated[str, Path(max_length=64)],
                   principal: Principal = Reader) -> PaymentOut:
    """404 until the booking has reached this service (retry), and for other patients'."""
    doc = await service.checkout(runtime, principal, appointment_id)
    return PaymentOut.from_document(doc, with_secret=doc["patient_id"] == principal.subject)


@router.get("", summary="Payments, newest first (own; finance: any)")
async def list_payments(runtime: Runtime, principal: Principal = Reader,
                        patient_id: Annotated[str | None, Query(max_length=64)] = None,
                        limit: Annotated[int, Query(ge=1, le=100)] = 50) -> list[PaymentOut]:
    docs = await service.list_payments(runtime, principal, patient_id, limit)
    return [PaymentOut.from_document(d) for d in docs]


@router.post("/webhooks/stripe", summary="Stripe webhook (signed)")
async def stripe_webhook(request: Request, runtime: Runtime,
                         stripe_signature: Annotated[str | None, Header()] = None
                         ) -> WebhookAck:
    """Public, but applied only when ``Stripe-Signature`` verifies over the raw body
    (``stripe.Webhook.construct_event``); 400 otherwise. A repeat answers 200
    ``duplicate`` so that Stripe stops retrying."""
    outcome = await service.apply_webhook(runtime, await request.body(), stripe_signature)
    return WebhookAck(outcome=outcome)
