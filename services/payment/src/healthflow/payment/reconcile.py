"""Reconciliation: repair a success whose webhook never arrived.

Stripe retries a webhook for days, but an endpoint that was down, misconfigured or
behind a lost delivery leaves a paid appointment ``pending_payment`` until its hold
expires. :func:`reconcile` asks Stripe for the PaymentIntent of every payment still
unpaid here (``requires_payment``, ``declined``) opened within the window, and of
every such invoice checkout, and applies a ``succeeded`` one exactly as its webhook
would (``payment.succeeded``, the appointment confirmed; ``invoice.paid``). The same
monotone rule as the webhook (:func:`~healthflow.payment.domain.next_status`; for a
checkout, its status) makes it safe beside a late webhook,
another replica's pass, or a repeat: one effect.

It also finds appointments cancelled within the window whose payment succeeded and was
never refunded (a refund job that died, a cancellation of an older release) and
enqueues their ``refund-<payment id>`` job (:func:`~healthflow.payment.refunds.enqueue_refund`;
the key makes it once). One cancelled before the cancellation was recorded in full
cannot be decided by the policy: it is flagged ``reconcile:cancelled_unrefunded``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial

from healthflow.common import jobs
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import utcnow
from healthflow.common.problems import ServiceUnavailable
from healthflow.common.service import ServiceRuntime
from healthflow.payment import checkouts, invoices, refunds, store
from healthflow.payment.domain import (
    EXPIRABLE,
    PaymentStatus,
    ensure_reported_money,
    next_status,
)
from healthflow.payment.ledger import move
from healthflow.payment.provider import Intent, Stripe
from healthflow.payment.store import flag_for_review

log = logging.getLogger(__name__)


async def reconcile(runtime: ServiceRuntime, stripe: Stripe, *, window: timedelta,
                    limit: int = 200) -> int:
    """One pass over up to ``limit`` unpaid payments opened within ``window`` (newest
    first); how many it repaired. Stripe being unavailable (a transient 503,
    :mod:`~healthflow.payment.provider`) is logged and left to the next pass; a payment
    that cannot be checked otherwise (an amount mismatch, an intent Stripe does not
    know) is logged (ids and error class only), flagged for review
    (:func:`~healthflow.payment.store.flag_for_review`) and skipped: the others are
    still repaired."""
    since = utcnow() - window
    docs = await store.find_payments(runtime.db, {
        "status": {"$in": [s.value for s in EXPIRABLE]}, "created_at": {"$gte": since}},
        limit)
    repaired = 0
    for doc in docs:
        try:
            repaired += await _repair(runtime, stripe, doc["_id"], doc["intent_id"])
        except ServiceUnavailable:  # Stripe out for now: the next pass checks it again
            log.warning("payment not reconciled: Stripe unavailable",
                        extra={"payment_id": doc["_id"]})
        except Exception as exc:  # one bad payment must not stop the others' repair
            log.error("payment not reconciled: flagged for review",
                      extra={"payment_id": doc["_id"], "error": type(exc).__name__})
            await flag_for_review(runtime.db, doc["_id"], f"reconcile:{type(exc).__name__}")
    repaired += await _reconcile_checkouts(runtime, stripe, since, limit)
    return repaired + await _refund_cancelled(runtime, since, limit)


async def _refund_cancelled(runtime: ServiceRuntime, since: datetime, limit: int) -> int:
    """Enqueue the refund of each succeeded, unrefunded payment whose appointment was
    cancelled since ``since``; how many."""
    claims = await runtime.db[store.APPOINTMENTS].find(
        {"cancelled_at": {"$gte": since}}).sort("cancelled_at", -1).limit(limit).to_list()
    found = 0
    for claim in claims:
        doc = await store.by_appointment(runtime.db, claim["_id"])
        if doc is None or doc["status"] != PaymentStatus.SUCCEEDED.value or "refund" in doc:
            continue
        if await runtime.db[jobs.JOBS].find_one({"_id": refunds.refund_key(claim["_id"])}):
            continue  # queued (Stripe still out), or dead and listed by make jobs
        payload = claim.get("cancellation")
        if payload is None:
            await flag_for_review(runtime.db, doc["_id"], "reconcile:cancelled_unrefunded")
            continue

        async def enqueue(uow: UnitOfWork, appointment_id: str = claim["_id"],
                          payload: dict[str, object] = payload) -> None:
            await refunds.enqueue_refund(uow, appointment_id, payload)

        await runtime.transact(enqueue, actor="reconciliation")
        log.warning("cancelled appointment's payment unrefunded: refund job enqueued",
                    extra={"payment_id": doc["_id"]})
        found += 1
    return found


async def _reconcile_checkouts(runtime: ServiceRuntime, stripe: Stripe, since: datetime,
                               limit: int) -> int:
    """The same for invoice checkouts (:mod:`~healthflow.payment.checkouts`): a succeeded
    intent is applied as its webhook would be (the money on the invoice, ``invoice.paid``,
    or a refund when it would overpay). One that cannot be checked is logged and
    skipped (checkouts have no review flag: the next pass tries again)."""
    docs = await runtime.db[checkouts.CHECKOUTS].find(
        {"status": {"$in": [s.value for s in EXPIRABLE]}, "created_at": {"$gte": since}}
    ).sort("created_at", -1).limit(limit).to_list()
    repaired = 0
    for doc in docs:
        try:
            intent = await stripe.retrieve_intent(doc["intent_id"])
            if intent.status != "succeeded":
                continue
            seen = {"id": intent.id, "amount": intent.amount, "currency": intent.currency}

            async def apply(uow: UnitOfWork, checkout_id: str = doc["_id"],
                            seen: dict[str, object] = seen) -> str:
                current = await uow.db[checkouts.CHECKOUTS].find_one(
                    {"_id": checkout_id}, session=uow.session)
                assert current is not None
                return await checkouts.apply_intent_event(uow, stripe, current,
                                                          PaymentStatus.SUCCEEDED, seen)

            outcome = await runtime.transact(apply, actor="reconciliation")
            repaired += outcome in ("applied", "refunded")
        except Exception as exc:  # one bad checkout must not stop the others' repair
            log.error("invoice checkout not reconciled",
                      extra={"checkout_id": doc["_id"], "error": type(exc).__name__})
    return repaired


async def _repair(runtime: ServiceRuntime, stripe: Stripe, payment_id: str,
                  intent_id: str) -> int:
    intent = await stripe.retrieve_intent(intent_id)
    if intent.status != "succeeded":
        return 0
    if not await runtime.transact(partial(_apply, payment_id=payment_id, intent=intent),
                                  actor="reconciliation"):
        return 0
    log.warning("payment repaired by reconciliation (webhook missed)",
                extra={"payment_id": payment_id, "intent_id": intent.id})
    return 1


async def _apply(uow: UnitOfWork, payment_id: str, intent: Intent) -> bool:
    doc = await store.get_payment(uow.db, payment_id, session=uow.session)
    if doc is None:
        return False
    target = next_status(PaymentStatus(doc["status"]), PaymentStatus.SUCCEEDED)
    if target is None:  # the webhook (or another pass) got there first
        return False
    ensure_reported_money(doc["amount"], doc["currency"], intent.amount, intent.currency)
    await move(uow, doc, target, None, {"reconciled_at": utcnow()})
    await invoices.schedule_billing(uow, doc["_id"])
    return True
