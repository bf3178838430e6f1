"""What Stripe reports after the money moved: disputes (chargebacks) and failed refunds.

Both arrive as webhooks (:func:`healthflow.payment.service.apply_webhook` verifies and
deduplicates them, then calls :func:`apply_dispute` or :func:`apply_refund_failure` in
its transaction). Both flag the payment for finance to review
(:func:`healthflow.payment.store.flag_for_review`, reason codes ``dispute:<status>`` and
``refund:failed``) and publish an event (``payment.disputed``,
``payment.refund_failed``).

Stripe delivers in any order (https://docs.stripe.com/webhooks#event-ordering): a
dispute is kept on the payment by its id, and once closed a late ``created`` of it
changes nothing; a failed refund is recorded once by its id.

Stored on the payment (see :mod:`.store`)::

    dispute          {id, status (Stripe's), amount, currency, reason, previous_status
                      (the payment's before the dispute), opened_at, closed_at?}
    refund_failures  [{id, amount, currency, failure_reason, at}]
"""

from __future__ import annotations

from typing import Any

from healthflow.common import jobs
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.payment import events, ledger, refunds, store
from healthflow.payment.domain import (
    DISPUTE_EVENTS,
    DISPUTE_RESOLVED,
    REFUND_EVENTS,
    PaymentStatus,
    refunded_status,
)


async def apply(uow: UnitOfWork, event_type: str, obj: dict[str, Any],
                event_id: str) -> str | None:
    """The outcome of a dispute or refund event (:data:`~.domain.DISPUTE_EVENTS`,
    :data:`~.domain.REFUND_EVENTS`) about one of the payments (found by the object's
    ``payment_intent``; ``"ignored"`` when none is ours); None for any other type."""
    if event_type not in DISPUTE_EVENTS and event_type not in REFUND_EVENTS:
        return None
    doc = await store.by_intent(uow.db, str(obj.get("payment_intent") or ""),
                                session=uow.session)
    if doc is None:
        return "ignored"
    if event_type in DISPUTE_EVENTS:
        return await apply_dispute(uow, doc, event_type, obj, event_id)
    return await apply_refund_failure(uow, doc, obj, event_id)


async def _set_status(uow: UnitOfWork, doc: Document, target: PaymentStatus,
                      event_id: str, fields: Document) -> dict[str, Any]:
    """Write ``fields`` and, when it changes, the status with a history entry (no
    ``payment.succeeded`` again when a won dispute restores ``succeeded``), raising the
    payment's revision; the shared fields of the event to publish
    (:func:`~.ledger.event_fields`)."""
    now = utcnow()
    update: Document = {"$set": {**fields, "updated_at": now}}
    if target.value != doc["status"]:
        update["$set"]["status"] = target.value
        update["$push"] = {"history": {"status": target.value, "at": now,
                                       "stripe_event_id": event_id}}
    return ledger.event_fields(await ledger.bump(uow, doc, update))


async def apply_dispute(uow: UnitOfWork, doc: Document, event_type: str,
                        dispute: dict[str, Any], event_id: str) -> str:
    """Record a Stripe Dispute of the payment ``doc``: ``charge.dispute.created`` makes
    it ``disputed``; ``charge.dispute.closed`` keeps it ``disputed`` when ``lost`` and
    restores its earlier status when ``won`` (or ``warning_closed``). Flags it for
    review (``dispute:<Stripe status>``) and publishes ``payment.disputed``;
    ``"disputed"``, or ``"ignored"`` for a repeat or a ``created`` after its close."""
    held: Document = doc.get("dispute") or {}
    same = held.get("id") == dispute.get("id")
    closing = event_type == "charge.dispute.closed"
    if same and (held.get("closed_at") or not closing):
        return "ignored"  # a repeat, or its opening delivered after its close
    current = PaymentStatus(doc["status"])
    previous = (PaymentStatus(held["previous_status"])
                if same or current is PaymentStatus.DISPUTED else current)
    now = utcnow()
    record: Document = {
        "id": str(dispute.get("id")), "status": str(dispute.get("status") or ""),
        "amount": int(dispute.get("amount") or 0),
        "currency": str(dispute.get("currency") or "").upper(),
        "reason": str(dispute.get("reason") or ""), "previous_status": previous.value,
        "opened_at": held.get("opened_at", now) if same else now}
    target = PaymentStatus.DISPUTED
    if closing:
        record["closed_at"] = now
        if record["status"] in DISPUTE_RESOLVED:
            target = previous
    base = await _set_status(uow, doc, target, event_id, {"dispute": record})
    if target is PaymentStatus.DISPUTED:
        await store.flag_for_review(uow.db, doc["_id"], f"dispute:{record['status']}",
                                    session=uow.session)
    elif target is PaymentStatus.SUCCEEDED and "refund" not in doc:
        await _refund_cancelled_meanwhile(uow, doc, record["id"])
    uow.publish(events.PaymentDisputed(
        **base, dispute_id=record["id"], dispute_status=record["status"],
        dispute_amount=record["amount"], reason=record["reason"]),
        subject=doc["_id"], patientid=doc["patient_id"])
    return "disputed"


async def _refund_cancelled_meanwhile(uow: UnitOfWork, doc: Document, dispute_id: str
                                      ) -> None:
    """A won dispute gave the payment back its ``succeeded``: an appointment cancelled
    while it was disputed got no refund then (nothing was paid as far as the refund job
    could tell), so its cancellation's refund job runs again now, by the same policy
    (key ``refund-<payment id>-after-<dispute id>``: once per dispute)."""
    claim = await uow.db[store.APPOINTMENTS].find_one({"_id": doc["appointment_id"]},
                                                      session=uow.session)
    if not claim or not claim.get("cancellation"):
        return
    await jobs.enqueue(uow.db, refunds.REFUND, claim["cancellation"],
                       key=f"{refunds.refund_key(doc['appointment_id'])}-after-{dispute_id}",
                       session=uow.session)


async def apply_refund_failure(uow: UnitOfWork, doc: Document, refund: dict[str, Any],
                               event_id: str) -> str:
    """Record a refund of the payment ``doc`` Stripe reports ``failed``: kept in
    ``refund_failures``, the payment flagged ``refund:failed``, and when it is the
    refund this service recorded, its amount taken off again (``refund.amount`` less it,
    ``refund.status`` ``failed``, the status back to ``succeeded`` or
    ``partially_refunded``, a dispute's status left alone), so nobody is shown money
    that never went back; ``payment.refund_failed`` published. ``"refund_failed"``, or
    ``"ignored"`` for another status or a failure already recorded."""
    if refund.get("status") != "failed":
        return "ignored"
    refund_id = str(refund.get("id") or "")
    if any(f.get("id") == refund_id for f in doc.get("refund_failures") or []):
        return "ignored"
    amount = int(refund.get("amount") or 0)
    reason = str(refund.get("failure_reason") or "unknown")
    failure = {"id": refund_id, "amount": amount, "currency": doc["currency"],
               "failure_reason": reason, "at": utcnow()}
    current = PaymentStatus(doc["status"])
    target = current
    fields: Document = {"refund_failures": [*(doc.get("refund_failures") or []), failure]}
    recorded: Document = doc.get("refund") or {}
    if recorded.get("id") == refund_id:
        left = max(0, int(recorded.get("amount") or 0) - amount)
        fields["refund"] = {**recorded, "amount": left, "status": "failed"}
        if current is not PaymentStatus.DISPUTED:
            target = refunded_status(doc["amount"], left) or PaymentStatus.SUCCEEDED
    base = await _set_status(uow, doc, target, event_id, fields)
    await store.flag_for_review(uow.db, doc["_id"], "refund:failed", session=uow.session)
    uow.publish(events.PaymentRefundFailed(
        **base, refund_id=refund_id, refund_amount=amount,
        failure_reason=reason), subject=doc["_id"], patientid=doc["patient_id"])
    return "refund_failed"
