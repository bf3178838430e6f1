"""Collections, indexes and queries of the payment service.

Collections (database ``healthflow_payment``), times aware UTC, amounts integer minor
units of an ISO 4217 ``currency``::

    payments        {_id, appointment_id (unique), patient_id, doctor_id, amount, currency,
                     status, intent_id (unique), client_secret, created_at, updated_at,
                     history: [{status, at, stripe_event_id}],
                     review?: {reason, at}: set when it needs a person (a mismatch...)}
    webhook_events  {_id: Stripe event id, type, intent_id, received_at}  (dedupe)
    appointments    {_id: appointment id, checkout_at?, cancelled_at?}: the one document
                    both the checkout and the cancellation of an appointment write
                    first (:func:`claim_appointment`), so that when they run at once
                    one transaction meets a write conflict and runs again after the
                    other committed (a cancellation that overtook its booking is
                    remembered here too)
    jobs            hold expiries, one per payment (healthflow.common.jobs)
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common import jobs
from healthflow.common.mongo import Document, Indexes, utcnow

PAYMENTS = "payments"
WEBHOOK_EVENTS = "webhook_events"
APPOINTMENTS = "appointments"

INDEXES: Indexes = {
    PAYMENTS: [
        IndexModel([("appointment_id", ASCENDING)], name="appointment", unique=True),
        IndexModel([("intent_id", ASCENDING)], name="intent", unique=True),
        IndexModel([("patient_id", ASCENDING), ("created_at", DESCENDING)], name="patient"),
        IndexModel([("created_at", DESCENDING)], name="recent"),
    ],
    **jobs.INDEXES,
}


async def by_appointment(db: AsyncDatabase[Document], appointment_id: str,
                         session: Any = None) -> Document | None:
    return await db[PAYMENTS].find_one({"appointment_id": appointment_id}, session=session)


async def get_payment(db: AsyncDatabase[Document], payment_id: str,
                      session: Any = None) -> Document | None:
    return await db[PAYMENTS].find_one({"_id": payment_id}, session=session)


async def by_intent(db: AsyncDatabase[Document], intent_id: str,
                    session: Any = None) -> Document | None:
    return await db[PAYMENTS].find_one({"intent_id": intent_id}, session=session)


async def find_payments(db: AsyncDatabase[Document], where: Document,
                        limit: int) -> list[Document]:
    """Newest first."""
    cursor = db[PAYMENTS].find(where).sort("created_at", DESCENDING).limit(limit)
    return await cursor.to_list()


async def seen_event(db: AsyncDatabase[Document], event_id: str, session: Any) -> bool:
    return await db[WEBHOOK_EVENTS].find_one({"_id": event_id}, session=session) is not None


async def flag_for_review(db: AsyncDatabase[Document], payment_id: str, reason: str,
                          session: Any = None) -> None:
    """Mark a payment for a person to look at: ``review: {reason, at}`` (the latest
    reason wins; ``reason`` is a code, never free text or PHI)."""
    await db[PAYMENTS].update_one(
        {"_id": payment_id}, {"$set": {"review": {"reason": reason, "at": utcnow()}}},
        session=session)


async def claim_appointment(db: AsyncDatabase[Document], appointment_id: str,
                            fields: Document, session: Any) -> Document:
    """Write ``fields`` into the appointment's document (created if missing) inside the
    transaction of ``session``; the document afterwards. Two transactions claiming the
    same appointment conflict (MongoDB ``WriteConflict``, a ``TransientTransactionError``
    that ``with_transaction`` retries), which serialises checkout and cancellation."""
    doc = await db[APPOINTMENTS].find_one_and_update(
        {"_id": appointment_id}, {"$set": fields}, upsert=True,
        return_document=ReturnDocument.AFTER, session=session)
    assert doc is not None  # an upsert returning the document after always has one
    return doc
