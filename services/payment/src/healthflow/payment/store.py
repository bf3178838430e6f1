"""Collections, indexes and queries of the payment service.

Collections (database ``healthflow_payment``), times aware UTC, amounts integer minor
units of an ISO 4217 ``currency``::

    payments        {_id, appointment_id (unique), patient_id, doctor_id, practitioner_id?
                     (the doctor's user id), start? (the appointment's), amount, currency,
                     status, intent_id (unique), client_secret, created_at, updated_at,
                     history: [{status, at, stripe_event_id}],
                     revision (0 at the checkout, +1 with each published change;
                     :func:`healthflow.payment.ledger.bump`),
                     refund?: {id, amount, currency, reason, at, status? ("failed")},
                     dispute?, refund_failures? (:mod:`.disputes`),
                     review?: {reason, at}: set when it needs a person (a mismatch...)}
    webhook_events  {_id: Stripe event id, type, intent_id (the object's payment_intent,
                     else its id), received_at}  (dedupe)
    appointments    {_id: appointment id, checkout_at?, cancelled_at?}: the one document
                    both the checkout and the cancellation of an appointment write
                    first (:func:`claim_appointment`), so that when they run at once
                    one transaction meets a write conflict and runs again after the
                    other committed (a cancellation that overtook its booking is
                    remembered here too)
    jobs            hold expiries, one per payment (healthflow.common.jobs)

Billing (FHIR R4 ChargeItem / Invoice; rules in :mod:`.domain`)::

    charge_items    {_id, patient_id, hospital_id | None, encounter_id | None,
                     appointment_id | None, payment_id | None, performer_id | None (the
                     doctor's Practitioner id = user id), code, description, quantity
                     (int >= 1), unit_price (minor units, tax included), currency, status
                     (ChargeItemStatus), entered_by, entered_at, occurrence | None (FHIR
                     ChargeItem.occurrence: the encounter's start or the appointment's;
                     None on items entered before it was kept), invoice_id?}
    invoices        {_id, issuer ("hospital:<id>" | "platform"), sequence, number,
                     hospital_id | None, patient_id, currency, status (InvoiceStatus),
                     tax_basis_points, lines: [domain.invoice_lines], total_net,
                     total_tax, total_gross, paid, payments: [{amount, at, source
                     ("stripe" | "card" | "desk"), payment_id?, recorded_by}], issued_at,
                     issued_by, cancelled_at?, revision? (+1 at each change its PDF
                     prints: cancelled, claim adjudicated; absent = 0),
                     pdf?: {key (the revision's), sha256, size}}
    counters        {_id: "invoice:<issuer>", value: the last sequence used}: incremented
                    in the transaction that inserts the invoice, so a failed issue
                    rolls both back and the series has no gap
    encounters      read model of ``encounter.started`` {_id, patient_id,
                    practitioner_id, hospital_id, started_at?}
    encounter_codes read model of ``encounter.coded`` {_id: encounter id, version (the
                    event's revision: a lower or equal one changes nothing), patient_id,
                    appointment_id | None, hospital_id | None, diagnoses: [{system,
                    code, display}], procedures: [{system, code}], coded_at}
    staff           read model of ``staff.assigned``/``staff.removed`` (healthflow.common.
                    tenancy) {_id: membership id, hospital_id, department_id, user_id,
                    staff_role, removed_at | None}
    doctors         read model of ``doctor.schedule_changed`` {_id: doctor id, version,
                    hospital_ids: affiliated hospitals in the doctor's order}
    hospitals       read model of ``hospital.*`` {_id, version, name, city, country,
                    time_zone (IANA key)}

Invoices also carry, once a claim on them was adjudicated ``complete``:
``insurance_share`` (minor units the payer covers; the patient owes ``total_gross -
insurance_share - paid``) and ``claim_id``.

Clinic finances (:mod:`.finance`, :mod:`.pnl`)::

    ledger_entries  {_id, kind ("expense" | "income"), hospital_id, category, date
                     ("YYYY-MM-DD", the calendar date it belongs to), amount_minor,
                     currency, counterparty (the supplier of an expense, the payer of an
                     income), reason, status ("recorded" | "voided"), recorded_by,
                     recorded_at, updated_at, void?: {reason, by, at},
                     receipt?: {key, sha256, size, content_type, by, at}}

Insurance (FHIR R4 Coverage / Claim / ClaimResponse; :mod:`.insurance`)::

    coverages       {_id, patient_id, status (CoverageStatus), payer_id, payer_name,
                     subscriber_id (the member id on the card), plan, period_start (date
                     as "YYYY-MM-DD"), period_end | None, created_at, updated_at}
    claims          {_id, invoice_id, invoice_number, patient_id, hospital_id | None,
                     coverage_id, payer_id, plan, clearinghouse, currency, total,
                     items: [{sequence, charge_item_id, encounter_id | None, code,
                     description, quantity, unit_price, net, service_date,
                     diagnosis_sequence: [int]}], diagnoses: [{sequence, system, code,
                     display}], procedures: [{sequence, system, code}], coding:
                     [{encounter_id, revision}] (the codes as they were), created_at,
                     created_by,
                     response: {id, outcome (ClaimOutcome), disposition, reference,
                     items: [{sequence, submitted, eligible, benefit}], copay, benefit,
                     patient_share, errors: [code], created_at}}
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common import jobs, tenancy
from healthflow.common.mongo import Document, Indexes, utcnow
from healthflow.common.pagination import keyset_page

PAYMENTS = "payments"
WEBHOOK_EVENTS = "webhook_events"
APPOINTMENTS = "appointments"
CHARGE_ITEMS = "charge_items"
INVOICES = "invoices"
COUNTERS = "counters"
ENCOUNTERS = "encounters"
ENCOUNTER_CODES = "encounter_codes"
STAFF = "staff"
DOCTORS = "doctors"
HOSPITALS = "hospitals"
COVERAGES = "coverages"
CLAIMS = "claims"
LEDGER = "ledger_entries"
INVOICE_CHECKOUTS = "invoice_checkouts"
ELIGIBILITY = "eligibility_responses"
CREDIT_NOTES = "credit_notes"

INDEXES: Indexes = {
    PAYMENTS: [
        IndexModel([("appointment_id", ASCENDING)], name="appointment", unique=True),
        IndexModel([("intent_id", ASCENDING)], name="intent", unique=True),
        IndexModel([("patient_id", ASCENDING), ("created_at", DESCENDING)], name="patient"),
        IndexModel([("created_at", DESCENDING)], name="recent"),
    ],
    CHARGE_ITEMS: [
        IndexModel([("patient_id", ASCENDING), ("entered_at", DESCENDING),
                    ("_id", DESCENDING)], name="patient"),
        IndexModel([("hospital_id", ASCENDING), ("entered_at", DESCENDING),
                    ("_id", DESCENDING)], name="hospital"),
        IndexModel([("encounter_id", ASCENDING)], name="encounter"),
    ],
    INVOICES: [
        IndexModel([("issuer", ASCENDING), ("sequence", ASCENDING)], name="number",
                   unique=True),
        IndexModel([("patient_id", ASCENDING), ("issued_at", DESCENDING),
                    ("_id", DESCENDING)], name="patient"),
        IndexModel([("hospital_id", ASCENDING), ("issued_at", DESCENDING),
                    ("_id", DESCENDING)], name="hospital"),
    ],
    COVERAGES: [IndexModel([("patient_id", ASCENDING), ("created_at", DESCENDING)],
                           name="patient")],
    CLAIMS: [
        IndexModel([("patient_id", ASCENDING), ("created_at", DESCENDING),
                    ("_id", DESCENDING)], name="patient"),
        IndexModel([("hospital_id", ASCENDING), ("created_at", DESCENDING),
                    ("_id", DESCENDING)], name="hospital"),
        IndexModel([("invoice_id", ASCENDING)], name="invoice"),
    ],
    LEDGER: [IndexModel([("hospital_id", ASCENDING), ("kind", ASCENDING),
                         ("date", DESCENDING), ("_id", DESCENDING)], name="books")],
    STAFF: [IndexModel([("user_id", ASCENDING)], name="user")],
    ENCOUNTER_CODES: [IndexModel([("appointment_id", ASCENDING)], name="appointment")],
    INVOICE_CHECKOUTS: [IndexModel([("intent_id", ASCENDING)], name="intent", unique=True),
                        IndexModel([("invoice_id", ASCENDING), ("status", ASCENDING)],
                                   name="invoice_open")],
    CREDIT_NOTES: [IndexModel([("issuer", ASCENDING), ("sequence", ASCENDING)],
                              name="number", unique=True),
                   IndexModel([("invoice_id", ASCENDING)], name="invoice")],
    ELIGIBILITY: [IndexModel([("patient_id", ASCENDING), ("service_date", ASCENDING),
                              ("created_at", DESCENDING)], name="patient")],
    **jobs.INDEXES,
}


async def by_appointment(db: AsyncDatabase[Document], appointment_id: str,
                         session: Any = None) -> Document | None:
    return await db[PAYMENTS].find_one({"appointment_id": appointment_id}, session=session)


async def first_hospital(db: AsyncDatabase[Document], doctor_id: str,
                         session: Any = None) -> str | None:
    """The doctor's first affiliated hospital (in the doctor's order, from
    ``doctor.schedule_changed``; a doctor's id is their user id, the Practitioner id),
    None when none is known: the platform's rule for what has no place of its own (an
    online consultation, its payment, invoice and charge items)."""
    doctor = await db[DOCTORS].find_one({"_id": doctor_id}, session=session)
    hospitals = (doctor or {}).get("hospital_ids") or []
    return str(hospitals[0]) if hospitals else None


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


# --------------------------------------------------------------------------- billing


async def next_sequence(db: AsyncDatabase[Document], issuer: str, session: Any,
                        series: str = "invoice") -> int:
    """The next number of ``issuer``'s ``series`` (``invoice``, ``credit``: credit
    notes) (1, 2, ...), counted in the transaction of ``session``: rolled back with it,
    so no number is lost."""
    doc = await db[COUNTERS].find_one_and_update(
        {"_id": f"{series}:{issuer}"}, {"$inc": {"value": 1}}, upsert=True,
        return_document=ReturnDocument.AFTER, session=session)
    assert doc is not None
    return int(doc["value"])


def revision_of(doc: Document) -> int:
    """An invoice's (or credit note's) revision: 0 until something printed on it changed
    (``revision`` is incremented with the kept PDF dropped; absent on older ones)."""
    return int(doc.get("revision") or 0)


def revised(update: Document) -> Document:
    """``update`` (a MongoDB update of an invoice changing what its PDF prints) that also
    drops the kept PDF and increments ``revision``, so a rendering of the invoice as it
    was is not recorded as its PDF (:func:`.invoices.printed_pdf`)."""
    return {**update, "$unset": {**update.get("$unset", {}), "pdf": ""},
            "$inc": {**update.get("$inc", {}), "revision": 1}}


async def get_invoice(db: AsyncDatabase[Document], invoice_id: str,
                      session: Any = None) -> Document | None:
    return await db[INVOICES].find_one({"_id": invoice_id}, session=session)


async def list_invoices(db: AsyncDatabase[Document], query: Document, *, index: str,
                        cursor: str | None, limit: int) -> tuple[list[Document], str | None]:
    """One page of invoices newest first (``issued_at``, ``_id``), and the next cursor.

    Raises:
        BadRequest: (400) a cursor this API did not issue.
    """
    return await keyset_page(db[INVOICES], query, sort=["issued_at", "_id"], cursor=cursor,
                             limit=limit, descending=True, hint=index)


async def list_charge_items(db: AsyncDatabase[Document], query: Document, *, index: str,
                            cursor: str | None, limit: int
                            ) -> tuple[list[Document], str | None]:
    """One page of charge items newest first (``entered_at``, ``_id``), and the next
    cursor.

    Raises:
        BadRequest: (400) a cursor this API did not issue.
    """
    return await keyset_page(db[CHARGE_ITEMS], query, sort=["entered_at", "_id"],
                             cursor=cursor, limit=limit, descending=True, hint=index)


async def billable_items(db: AsyncDatabase[Document], patient_id: str,
                         hospital_id: str | None, session: Any) -> list[Document]:
    """The patient's ``billable`` charge items at ``hospital_id``, oldest first."""
    cursor = db[CHARGE_ITEMS].find(
        {"patient_id": patient_id, "status": "billable", "hospital_id": hospital_id},
        session=session).sort([("entered_at", ASCENDING), ("_id", ASCENDING)])
    return await cursor.to_list()


async def hospitals_of(db: AsyncDatabase[Document], user_id: str, staff_role: str
                       ) -> list[str]:
    """The hospitals where ``user_id`` works as ``staff_role`` (``staff.assigned``, not
    ended by ``staff.removed``)."""
    return await tenancy.hospitals_where(db, user_id, staff_role, collection=STAFF)


async def put_versioned(db: AsyncDatabase[Document], collection: str, key: str,
                        version: int, fields: Document, session: Any) -> bool:
    """Set ``fields`` of a read model document when ``version`` is newer than the one
    held (delivery is at-least-once and unordered); False when stale."""
    held = await db[collection].find_one({"_id": key}, {"version": 1}, session=session)
    if held is not None and int(held.get("version") or 0) >= version:
        return False
    await db[collection].update_one({"_id": key}, {"$set": {**fields, "version": version}},
                                    upsert=True, session=session)
    return True


# --------------------------------------------------------------------------- finances


async def list_entries(db: AsyncDatabase[Document], query: Document, *, cursor: str | None,
                       limit: int) -> tuple[list[Document], str | None]:
    """One page of ledger entries, latest date first (``date``, ``_id``), and the next
    cursor.

    Raises:
        BadRequest: (400) a cursor this API did not issue.
    """
    return await keyset_page(db[LEDGER], query, sort=["date", "_id"], cursor=cursor,
                             limit=limit, descending=True, hint="books")


# --------------------------------------------------------------------------- insurance


async def list_claims(db: AsyncDatabase[Document], query: Document, *, index: str,
                      cursor: str | None, limit: int) -> tuple[list[Document], str | None]:
    """One page of claims newest first (``created_at``, ``_id``), and the next cursor.

    Raises:
        BadRequest: (400) a cursor this API did not issue.
    """
    return await keyset_page(db[CLAIMS], query, sort=["created_at", "_id"], cursor=cursor,
                             limit=limit, descending=True, hint=index)


async def billed_at(db: AsyncDatabase[Document], patient_id: str,
                    hospitals: list[str]) -> bool:
    """Whether ``patient_id`` has an invoice issued by one of ``hospitals``."""
    return await db[INVOICES].find_one(
        {"patient_id": patient_id, "hospital_id": {"$in": hospitals}},
        {"_id": 1}) is not None
