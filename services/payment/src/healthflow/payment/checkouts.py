"""Card payment of what remains of an invoice for its patient (issue 15: "what remains
for the patient, who can then pay it").

:func:`open_invoice_checkout` (``POST /api/v1/invoices/{id}/checkout``) opens a
Stripe PaymentIntent for exactly the invoice's outstanding patient share (the total
less an adjudicated ``insurance_share`` less what was paid), idempotency key
``invoice-<id>-<outstanding>``: a repeat while that amount is owed returns the same
intent and client secret; once the share changed (a desk payment) a new one is opened.
Its record (collection ``invoice_checkouts``, id a UUID v5 of the key) is found by the
webhook (:func:`apply_intent_event`): a success records the money on the invoice
(:func:`healthflow.payment.invoices.receive`, source ``card``) and publishes
``invoice.paid``; a decline leaves the intent open for another card. A success that
would overpay (the share was paid meanwhile by another checkout or at the desk) is
refunded in full at once (``overpaid``), so the patient never pays twice. A
checkout the invoice no longer matches (voided, paid another way, its share changed)
is cancelled at Stripe (:mod:`.checkout_closing`).
"""

from __future__ import annotations

import uuid
from typing import Any

from healthflow.common.auth import Principal
from healthflow.common.errors import NotFound
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Permission
from healthflow.common.problems import UnprocessableContent
from healthflow.common.service import ServiceRuntime
from healthflow.contracts.payment import InvoicePaid
from healthflow.payment import invoices, store
from healthflow.payment.checkout_closing import CANCELLED, outstanding
from healthflow.payment.domain import (
    AmountMismatch,
    InvoiceConflict,
    PaymentStatus,
    ensure_reported_money,
)
from healthflow.payment.provider import Stripe

CHECKOUTS = store.INVOICE_CHECKOUTS
"""Card checkouts of invoices: ``{_id, invoice_id, patient_id, amount, currency,
intent_id, client_secret, status (requires_payment|declined|succeeded|refunded|
cancelled: stale, closed at Stripe by :mod:`.checkout_closing`), created_at, updated_at,
refund_id?}``."""

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://healthflow/payment/invoice-checkout")


async def open_invoice_checkout(runtime: ServiceRuntime, stripe: Stripe,
                                principal: Principal, invoice_id: str
                                ) -> tuple[Document, bool]:
    """The checkout of the invoice's outstanding share for its own patient
    (``invoices:read_own``), and whether it was opened now.

    Raises:
        NotFound: (404) unknown, or not the caller's own invoice (finance staff pay at
            the desk: ``POST /invoices/{id}/payments``).
        InvoiceConflict: (409) cancelled, or nothing is owed by the patient any more.
    """
    invoice = await store.get_invoice(runtime.db, invoice_id)
    if invoice is None or invoice["patient_id"] != principal.subject \
            or not principal.has(Permission.INVOICES_READ_OWN):
        raise NotFound(f"no invoice {invoice_id}")
    amount = outstanding(invoice)
    if amount <= 0:
        raise InvoiceConflict(f"nothing is owed on invoice {invoice_id} "
                              f"(status {invoice['status']}, paid {invoice['paid']})")
    key = f"invoice-{invoice_id}-{amount}"
    checkout_id = str(uuid.uuid5(NAMESPACE, key))
    found = await runtime.db[CHECKOUTS].find_one({"_id": checkout_id})
    if found is not None:
        return found, False
    intent = await stripe.create_intent(
        amount=amount, currency=invoice["currency"], idempotency_key=key,
        metadata={"invoice_id": invoice_id, "checkout_id": checkout_id})
    now = utcnow()
    doc = {"_id": checkout_id, "invoice_id": invoice_id, "patient_id": invoice["patient_id"],
           "amount": amount, "currency": invoice["currency"], "intent_id": intent.id,
           "client_secret": intent.client_secret,
           "status": PaymentStatus.REQUIRES_PAYMENT.value, "created_at": now,
           "updated_at": now}
    # a concurrent first request inserted the same id: Stripe returned it the same intent
    result = await runtime.db[CHECKOUTS].update_one({"_id": checkout_id},
                                                    {"$setOnInsert": doc}, upsert=True)
    return doc, result.upserted_id is not None


async def by_intent(uow: UnitOfWork, intent_id: str) -> Document | None:
    return await uow.db[CHECKOUTS].find_one({"intent_id": intent_id}, session=uow.session)


async def apply_intent_event(uow: UnitOfWork, stripe: Stripe, checkout: Document,
                             reported: PaymentStatus, intent: dict[str, Any]) -> str:
    """Apply a verified ``payment_intent.succeeded|payment_failed`` of an invoice
    checkout (in the webhook's transaction): ``applied``, ``ignored`` (already paid or
    refunded: a late failure never undoes a success), ``mismatch`` (the intent's money is
    not the checkout's: nothing recorded) or ``refunded`` (it would overpay)."""
    if checkout["status"] in (PaymentStatus.SUCCEEDED.value, PaymentStatus.REFUNDED.value,
                              CANCELLED):
        return "ignored"
    if reported is not PaymentStatus.SUCCEEDED:
        await _set(uow, checkout, PaymentStatus.DECLINED.value)
        return "applied"
    try:
        ensure_reported_money(checkout["amount"], checkout["currency"],
                              int(intent.get("amount_received", intent.get("amount")) or 0),
                              str(intent.get("currency") or ""))
    except AmountMismatch:
        return "mismatch"
    invoice = await store.get_invoice(uow.db, checkout["invoice_id"], session=uow.session)
    assert invoice is not None
    try:
        after = await invoices.receive(uow, invoice, checkout["amount"], source="card",
                                       by="stripe", now=utcnow(), payment_id=checkout["_id"])
    except (InvoiceConflict, UnprocessableContent):  # paid meanwhile: give it back
        refund_id = await stripe.refund(checkout["intent_id"], checkout["amount"],
                                        f"refund-{checkout['_id']}")
        await _set(uow, checkout, PaymentStatus.REFUNDED.value,
                   {"refund_id": refund_id, "refund_reason": "overpaid"})
        return "refunded"
    await _set(uow, checkout, PaymentStatus.SUCCEEDED.value, {"client_secret": None})
    uow.publish(InvoicePaid(
        invoice_id=invoice["_id"], checkout_id=checkout["_id"],
        patient_id=checkout["patient_id"], amount=checkout["amount"],
        currency=checkout["currency"], intent_id=checkout["intent_id"],
        status=after["status"]), subject=invoice["_id"], patientid=checkout["patient_id"])
    return "applied"


async def _set(uow: UnitOfWork, checkout: Document, status: str,
               extra: Document | None = None) -> None:
    await uow.db[CHECKOUTS].update_one(
        {"_id": checkout["_id"]},
        {"$set": {"status": status, "updated_at": utcnow(), **(extra or {})}},
        session=uow.session)
