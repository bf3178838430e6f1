"""Closing invoice checkouts that no longer match their invoice.

A card checkout (:mod:`.checkouts`) is a Stripe PaymentIntent for exactly the invoice's
outstanding share when it was opened. Once the invoice is voided, paid another way (at
the desk, by another checkout) or its share changed (a claim adjudicated), the intent
would take money that is not owed (the webhook would then refund it as ``overpaid``),
and it stays open at Stripe. Every such change calls :func:`schedule_close` in its
transaction: each open checkout (``requires_payment`` or ``declined``) of the invoice
whose amount is no longer what is owed gets a job in the Stripe job queue
:data:`CLOSE`, keyed ``close-checkout-<checkout id>`` (once per checkout), retried
with backoff through a Stripe outage like the other Stripe jobs.

The job (:func:`close_checkout`) checks again in its own transaction, cancels the
PaymentIntent at Stripe and marks the checkout ``cancelled`` (its client secret
dropped). An intent Stripe already took is left to its webhook (applied, or refunded
as overpaid); one still processing fails the job, which is retried.
"""

from __future__ import annotations

import logging

from healthflow.common import jobs
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.payment import store
from healthflow.payment.domain import EXPIRABLE, InvoiceStatus
from healthflow.payment.provider import Stripe

log = logging.getLogger(__name__)

CLOSE = "invoice-checkout-close"
"""The Stripe job queue of stale invoice checkouts to cancel (payload
``{checkout_id}``, key ``close-checkout-<checkout id>``)."""

CANCELLED = "cancelled"
"""The status of a checkout whose PaymentIntent was cancelled at Stripe."""

OPEN = [s.value for s in EXPIRABLE]


class CheckoutStillProcessing(RuntimeError):
    """Stripe is processing the checkout's intent: it cannot be cancelled yet (the job
    is retried)."""


def outstanding(invoice: Document) -> int:
    """The patient's share still owed, in minor units (0 for a cancelled invoice)."""
    if invoice["status"] != InvoiceStatus.ISSUED.value:
        return 0
    return int(invoice["total_gross"] - invoice.get("insurance_share", 0) - invoice["paid"])


async def schedule_close(uow: UnitOfWork, invoice: Document,
                         paying: str | None = None) -> int:
    """In the transaction that changed ``invoice`` (as it is now): a close job for each
    open checkout of it whose amount is not what is owed any more, but ``paying`` (the
    checkout whose success is being recorded); how many were due."""
    owed = outstanding(invoice)
    stale = await uow.db[store.INVOICE_CHECKOUTS].find(
        {"invoice_id": invoice["_id"], "status": {"$in": OPEN}, "amount": {"$ne": owed},
         "_id": {"$ne": paying}}, {"_id": 1}, session=uow.session).to_list()
    for doc in stale:
        await jobs.enqueue(uow.db, CLOSE, {"checkout_id": doc["_id"]},
                           key=f"close-checkout-{doc['_id']}", session=uow.session)
    return len(stale)


async def close_checkout(uow: UnitOfWork, stripe: Stripe, checkout_id: str) -> bool:
    """The ``invoice-checkout-close`` job: cancel the checkout's PaymentIntent at Stripe
    and mark it ``cancelled`` when it is still open and stale; whether it did.

    Raises:
        CheckoutStillProcessing: Stripe is processing a payment on it (retried).
    """
    checkout = await uow.db[store.INVOICE_CHECKOUTS].find_one({"_id": checkout_id},
                                                              session=uow.session)
    if checkout is None or checkout["status"] not in OPEN:
        return False
    invoice = await store.get_invoice(uow.db, checkout["invoice_id"], session=uow.session)
    if invoice is not None and outstanding(invoice) == checkout["amount"]:
        return False  # owed again as it was (nothing changed after all)
    at_stripe = await stripe.cancel_intent(checkout["intent_id"])
    if at_stripe == "succeeded":
        return False  # paid at the last moment: its webhook records or refunds it
    if at_stripe != "canceled":
        raise CheckoutStillProcessing(f"PaymentIntent {checkout['intent_id']} is {at_stripe}")
    await uow.db[store.INVOICE_CHECKOUTS].update_one(
        {"_id": checkout_id}, {"$set": {"status": CANCELLED, "client_secret": None,
                                        "updated_at": utcnow()}}, session=uow.session)
    log.info("stale invoice checkout cancelled", extra={"checkout_id": checkout_id})
    return True
