"""Use cases of charge items and invoices (FHIR R4 ``ChargeItem`` and ``Invoice``).

* A paid consultation (``payment_intent.succeeded``, by webhook or reconciliation) is
  billed by a ``billing`` job committed with the success (:func:`schedule_billing`,
  then :func:`bill_payment`): one charge item for the fee, on an invoice issued and
  balanced at once. A job rather than the webhook's own transaction: every invoice of
  a hospital takes the next number of one counter, so concurrent webhooks would all
  conflict on it (measured: of 20 at once, 11 timed out with 503 and their appointments
  waited for reconciliation); the job worker
  issues them one after another, and retries, while the webhook stays small.
* A clinician conducting an encounter, or the finance staff of its hospital, adds
  charge items for it (lab tests, other services: :func:`add_charge_item`); finance
  issues an invoice of a patient's billable items (:func:`issue_for_patient`), records
  money received at the desk (:func:`record_payment`) or voids an unpaid invoice
  (:func:`cancel`).
* The PDF (:func:`pdf`) is rendered once, kept in the blob store and served from there.

Who sees what: the patient their own (``invoices:read_own``); the accountants of a
hospital (``invoices:manage_hospital`` and a ``staff.assigned`` membership as
``accountant`` there) its invoices and charge items. Anyone else gets 404 for an
invoice (existence is not revealed) and 403 for a hospital they do not work for.

Numbering: every issuer (a hospital, or the platform for a consultation with none)
has one series; the counter is incremented in the transaction that inserts the
invoice (:func:`healthflow.payment.store.next_sequence`), so a failed issue uses no
number and the series has no gap.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from healthflow.common import jobs
from healthflow.common.auth import Principal
from healthflow.common.blobs import INVOICE, BlobStore
from healthflow.common.errors import Forbidden, NotFound
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Permission
from healthflow.common.problems import UnprocessableContent
from healthflow.common.service import ServiceRuntime
from healthflow.contracts.payment import InvoiceIssued
from healthflow.payment import checkout_closing, printing, store
from healthflow.payment.domain import (
    COLLECTED,
    CONSULTATION_CODE,
    ChargeItemStatus,
    InvoiceConflict,
    InvoiceStatus,
    PaymentStatus,
    check_money,
    invoice_lines,
    invoice_number,
    invoice_totals,
    record_invoice_payment,
)

TaxRate = Callable[[str | None], int]
"""The tax rate in basis points of an issuing hospital (``Settings.tax_rate``)."""

ACCOUNTANT = "accountant"
"""The ``staff.assigned`` role that makes a user finance staff of a hospital."""

BILLING_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://healthflow/payment/charge-item")


def issuer_of(hospital_id: str | None) -> str:
    """The numbering series of invoices ``hospital_id`` issues (``platform``: none)."""
    return f"hospital:{hospital_id}" if hospital_id else "platform"


def consultation_item_id(payment_id: str) -> str:
    """The charge item id of a payment's consultation: UUID v5 (RFC 9562 §5.5) of the
    payment id, so a repeated success bills once."""
    return str(uuid.uuid5(BILLING_NAMESPACE, payment_id))


async def consultation_hospital(uow: UnitOfWork, payment: Document) -> str | None:
    """The hospital of the appointment (in person), else the doctor's first affiliated
    hospital (in the doctor's order, ``doctor.schedule_changed``), else None. A payment
    placed at its checkout (``hospital_id``) keeps that hospital."""
    if payment.get("hospital_id"):
        return str(payment["hospital_id"])
    if payment.get("location_id"):
        return str(payment["location_id"])
    return await store.first_hospital(uow.db, payment["doctor_id"], uow.session)


async def issue(uow: UnitOfWork, *, patient_id: str, hospital_id: str | None,
                items: list[Document], basis_points: int, actor: str,
                now: datetime) -> Document:
    """Issue an invoice of ``items`` (the patient's billable charge items) with the next
    number of its issuer's series, mark the items ``billed``, publish
    ``invoice.issued``; the invoice document (shape in :mod:`.store`).

    Raises:
        UnprocessableContent: (422) no items, or items of several currencies.
    """
    lines = invoice_lines(items, basis_points)
    issuer = issuer_of(hospital_id)
    sequence = await store.next_sequence(uow.db, issuer, uow.session)
    doc: Document = {
        "_id": str(uuid.uuid4()), "issuer": issuer, "sequence": sequence,
        "number": invoice_number(sequence), "hospital_id": hospital_id,
        "patient_id": patient_id, "currency": items[0]["currency"],
        "status": InvoiceStatus.ISSUED.value, "tax_basis_points": basis_points,
        "lines": lines, **invoice_totals(lines), "paid": 0, "payments": [],
        "issued_at": now, "issued_by": actor}
    await uow.db[store.INVOICES].insert_one(doc, session=uow.session)
    await uow.db[store.CHARGE_ITEMS].update_many(
        {"_id": {"$in": [i["_id"] for i in items]}},
        {"$set": {"status": ChargeItemStatus.BILLED.value, "invoice_id": doc["_id"]}},
        session=uow.session)
    uow.publish(InvoiceIssued(invoice_id=doc["_id"], number=doc["number"],
                              hospital_id=hospital_id, patient_id=patient_id,
                              total_gross=doc["total_gross"], currency=doc["currency"]),
                subject=doc["_id"], patientid=patient_id)
    return doc


async def receive(uow: UnitOfWork, doc: Document, amount: int, *, source: str,
                  by: str, now: datetime, payment_id: str | None = None) -> Document:
    """Record ``amount`` minor units received from the patient for the invoice ``doc``
    (``source`` ``stripe``: a consultation's payment; ``card``: an invoice checkout,
    :mod:`.checkouts`; ``desk``); ``balanced`` once the patient's share (the total
    less an adjudicated ``insurance_share``) is paid. The invoice afterwards.

    Raises:
        InvoiceConflict: (409) cancelled or already balanced.
        UnprocessableContent: (422) a non-positive amount or more than is owed.
    """
    paid, status = record_invoice_payment(InvoiceStatus(doc["status"]), doc["total_gross"],
                                          doc["paid"], amount, doc.get("insurance_share", 0))
    entry = {"amount": amount, "at": now, "source": source, "payment_id": payment_id,
             "recorded_by": by}
    await uow.db[store.INVOICES].update_one(
        {"_id": doc["_id"]}, {"$set": {"paid": paid, "status": status.value},
                              "$push": {"payments": entry}}, session=uow.session)
    after = {**doc, "paid": paid, "status": status.value,
             "payments": [*doc["payments"], entry]}
    await checkout_closing.schedule_close(uow, after, paying=payment_id)  # stale ones
    return after


BILLING = "billing"
"""The job queue of payments to bill (payload ``{payment_id}``, key ``bill-<id>``)."""


async def schedule_billing(uow: UnitOfWork, payment_id: str) -> None:
    """Enqueue the billing of a payment that just succeeded, in its transaction."""
    await jobs.enqueue(uow.db, BILLING, {"payment_id": payment_id},
                       key=f"bill-{payment_id}", session=uow.session)


async def bill_payment(uow: UnitOfWork, payment_id: str, tax_rate: TaxRate) -> None:
    """The ``billing`` job: :func:`bill_consultation` of the payment, when it was
    collected (a payment refunded before it was recorded never reaches here)."""
    payment = await store.get_payment(uow.db, payment_id, session=uow.session)
    if payment is None or PaymentStatus(payment["status"]) not in COLLECTED:
        return
    await bill_consultation(uow, payment, tax_rate)


def performer_of(payment: Document) -> str:
    """The Practitioner id of a payment's doctor (``practitioner_id``, the doctor's user
    id, the id encounters and their charge items carry), else its appointment's
    ``doctor_id`` (payments stored before it was kept)."""
    return str(payment.get("practitioner_id") or payment["doctor_id"])


async def bill_consultation(uow: UnitOfWork, payment: Document, tax_rate: TaxRate
                            ) -> Document | None:
    """Bill a payment that just succeeded: its consultation as a charge item
    (``consultation``, quantity 1, the fee, performed by the doctor's Practitioner id
    (:func:`performer_of`) on the appointment's start, ``occurrence``), invoiced by the
    appointment's hospital and balanced by the payment; None when it was billed before
    (a repeat)."""
    item_id = consultation_item_id(payment["_id"])
    if await uow.db[store.CHARGE_ITEMS].find_one({"_id": item_id}, session=uow.session):
        return None
    hospital_id = await consultation_hospital(uow, payment)
    now = utcnow()
    item: Document = {
        "_id": item_id, "patient_id": payment["patient_id"], "hospital_id": hospital_id,
        "encounter_id": None, "appointment_id": payment["appointment_id"],
        "payment_id": payment["_id"], "performer_id": performer_of(payment),
        "code": CONSULTATION_CODE, "description": "Consultation", "quantity": 1,
        "unit_price": payment["amount"], "currency": payment["currency"],
        "status": ChargeItemStatus.BILLABLE.value, "entered_by": "stripe", "entered_at": now,
        "occurrence": payment.get("start")}
    await uow.db[store.CHARGE_ITEMS].insert_one(item, session=uow.session)
    invoice = await issue(uow, patient_id=payment["patient_id"], hospital_id=hospital_id,
                          items=[item], basis_points=tax_rate(hospital_id), actor="stripe",
                          now=now)
    return await receive(uow, invoice, payment["amount"], source="stripe", by="stripe",
                         now=now, payment_id=payment["_id"])


# --------------------------------------------------------------------------- access


async def finance_hospitals(runtime: ServiceRuntime, principal: Principal) -> list[str]:
    """The hospitals whose finance the caller is (empty without the permission)."""
    if not principal.has(Permission.INVOICES_MANAGE_HOSPITAL):
        return []
    return await store.hospitals_of(runtime.db, principal.subject, ACCOUNTANT)


async def ensure_finance(runtime: ServiceRuntime, principal: Principal,
                         hospital_id: str | None) -> None:
    """The caller must be finance staff of ``hospital_id``.

    Raises:
        Forbidden: (403) they are not (or ``hospital_id`` is None: the platform's own
            invoices have no finance staff).
    """
    if hospital_id is None or hospital_id not in await finance_hospitals(runtime, principal):
        raise Forbidden("only the accountants of the hospital may do this "
                        "(a staff membership as accountant there)")


async def may_read(runtime: ServiceRuntime, principal: Principal, doc: Document) -> bool:
    """May the caller read ``doc`` (an invoice, charge item or credit note: ``patient_id``,
    ``hospital_id``)? Its patient (``invoices:read_own``) and its hospital's finance."""
    if doc["patient_id"] == principal.subject and principal.has(Permission.INVOICES_READ_OWN):
        return True
    return doc.get("hospital_id") in await finance_hospitals(runtime, principal)


async def get(runtime: ServiceRuntime, principal: Principal, invoice_id: str) -> Document:
    """The invoice, for its patient or the finance of its hospital.

    Raises:
        NotFound: (404) unknown, or not the caller's to see.
    """
    doc = await store.get_invoice(runtime.db, invoice_id)
    if doc is None or not await may_read(runtime, principal, doc):
        raise NotFound(f"no invoice {invoice_id}")
    return doc


async def _scope(runtime: ServiceRuntime, principal: Principal, patient_id: str | None,
                 hospital_id: str | None, what: str) -> tuple[Document, str]:
    """``(query, index)`` of what the caller may list: a patient their own
    (``patient_id`` may only be theirs), finance their hospitals' (``hospital_id`` one
    of them, ``patient_id`` any).

    Raises:
        Forbidden: (403) naming another patient, or a hospital one is not finance of.
    """
    if principal.has(Permission.INVOICES_MANAGE_HOSPITAL):
        mine = await finance_hospitals(runtime, principal)
        if hospital_id is not None and hospital_id not in mine:
            raise Forbidden(f"only the accountants of the hospital may list its {what}")
        query: Document = {"hospital_id": hospital_id if hospital_id else {"$in": mine}}
        if patient_id:
            query["patient_id"] = patient_id
        return query, "hospital"
    if (patient_id and patient_id != principal.subject) or hospital_id:
        raise Forbidden(f"patients may only list their own {what}")
    return {"patient_id": principal.subject}, "patient"


async def list_invoices(runtime: ServiceRuntime, principal: Principal, *,
                        patient_id: str | None, hospital_id: str | None,
                        cursor: str | None, limit: int) -> tuple[list[Document], str | None]:
    """Invoices newest first, one page, of what the caller may see (:func:`_scope`).

    Raises:
        Forbidden: (403) naming another patient, or a hospital one is not finance of.
        BadRequest: (400) a cursor this API did not issue.
    """
    query, index = await _scope(runtime, principal, patient_id, hospital_id, "invoices")
    return await store.list_invoices(runtime.db, query, index=index, cursor=cursor,
                                     limit=limit)


async def list_charge_items(runtime: ServiceRuntime, principal: Principal, *,
                            patient_id: str | None, hospital_id: str | None,
                            status: ChargeItemStatus | None, cursor: str | None,
                            limit: int) -> tuple[list[Document], str | None]:
    """Charge items newest first, one page, of what the caller may see (:func:`_scope`),
    only those in ``status`` when given (``billable``: what is still to be invoiced).

    Raises:
        Forbidden: (403) naming another patient, or a hospital one is not finance of.
        BadRequest: (400) a cursor this API did not issue.
    """
    query, index = await _scope(runtime, principal, patient_id, hospital_id,
                                "charge items")
    if status is not None:
        query["status"] = status.value
    return await store.list_charge_items(runtime.db, query, index=index, cursor=cursor,
                                         limit=limit)


# --------------------------------------------------------------------------- charge items


async def add_charge_item(runtime: ServiceRuntime, principal: Principal, *,
                          encounter_id: str, code: str, description: str, quantity: int,
                          unit_price: int, currency: str) -> Document:
    """A ``billable`` charge item for the encounter (``unit_price`` minor units of ISO 4217
    ``currency``, tax included), by the doctor conducting it or the finance of its
    hospital; patient, hospital, performer (``practitioner_id``) and date of service
    (``occurrence``: the encounter's start) are the encounter's. An encounter without a
    hospital (an online consultation) belongs to its doctor's first affiliated one
    (:func:`~.store.first_hospital`), as its consultation's payment and invoice do.

    Raises:
        NotFound: (404) the encounter is not known here (yet: ``encounter.started``).
        Forbidden: (403) neither its doctor nor finance of its hospital.
        UnprocessableContent: (422) a non-positive price or a malformed currency.
    """
    encounter = await runtime.db[store.ENCOUNTERS].find_one({"_id": encounter_id})
    if encounter is None:
        raise NotFound(f"no encounter {encounter_id} (yet)")
    hospital_id = encounter.get("hospital_id") or await store.first_hospital(
        runtime.db, encounter["practitioner_id"])
    if encounter["practitioner_id"] != principal.subject:
        await ensure_finance(runtime, principal, hospital_id)
    try:
        amount, cur = check_money(unit_price, currency)
    except ValueError as exc:
        raise UnprocessableContent(str(exc)) from None
    doc: Document = {
        "_id": str(uuid.uuid4()), "patient_id": encounter["patient_id"],
        "hospital_id": hospital_id, "encounter_id": encounter_id,
        "appointment_id": None, "payment_id": None,
        "performer_id": encounter["practitioner_id"], "code": code,
        "description": description, "quantity": quantity, "unit_price": amount,
        "currency": cur, "status": ChargeItemStatus.BILLABLE.value,
        "entered_by": principal.subject, "entered_at": utcnow(),
        "occurrence": encounter.get("started_at")}

    async def write(uow: UnitOfWork) -> Document:
        await uow.db[store.CHARGE_ITEMS].insert_one(doc, session=uow.session)
        return doc

    return await runtime.transact(write, actor=principal.actor)


async def get_charge_item(runtime: ServiceRuntime, principal: Principal,
                          item_id: str) -> Document:
    """The charge item, for its patient or the finance of its hospital.

    Raises:
        NotFound: (404) unknown, or not the caller's to see.
    """
    doc = await runtime.db[store.CHARGE_ITEMS].find_one({"_id": item_id})
    if doc is None or not await may_read(runtime, principal, doc):
        raise NotFound(f"no charge item {item_id}")
    return doc


# --------------------------------------------------------------------------- finance acts


async def issue_for_patient(runtime: ServiceRuntime, principal: Principal, *,
                            patient_id: str, hospital_id: str, tax_rate: TaxRate) -> Document:
    """Issue an invoice of every billable charge item of the patient at the hospital
    (finance of that hospital only).

    Raises:
        Forbidden: (403) not finance of the hospital.
        UnprocessableContent: (422) nothing billable, or several currencies.
    """
    await ensure_finance(runtime, principal, hospital_id)

    async def write(uow: UnitOfWork) -> Document:
        items = await store.billable_items(uow.db, patient_id, hospital_id, uow.session)
        return await issue(uow, patient_id=patient_id, hospital_id=hospital_id, items=items,
                           basis_points=tax_rate(hospital_id), actor=principal.subject,
                           now=utcnow())

    return await runtime.transact(write, actor=principal.actor)


async def record_payment(runtime: ServiceRuntime, principal: Principal, invoice_id: str,
                         amount: int) -> Document:
    """Money received at the hospital's desk for the invoice (finance only).

    Raises:
        NotFound (404), Forbidden (403), InvoiceConflict (409), UnprocessableContent (422).
    """
    doc = await get(runtime, principal, invoice_id)
    await ensure_finance(runtime, principal, doc.get("hospital_id"))

    async def write(uow: UnitOfWork) -> Document:
        current = await store.get_invoice(uow.db, invoice_id, session=uow.session)
        assert current is not None
        return await receive(uow, current, amount, source="desk", by=principal.subject,
                             now=utcnow())

    return await runtime.transact(write, actor=principal.actor)


async def cancel(runtime: ServiceRuntime, principal: Principal, invoice_id: str) -> Document:
    """Void an issued invoice nothing was paid or claimed on (finance only): ``cancelled``, its
    number stays used, its charge items ``aborted``; its PDF is rendered again on the
    next download, marked cancelled (the same blob key, replaced).

    Raises:
        NotFound (404), Forbidden (403), InvoiceConflict (409): paid on, or not issued.
    """
    doc = await get(runtime, principal, invoice_id)
    await ensure_finance(runtime, principal, doc.get("hospital_id"))

    async def write(uow: UnitOfWork) -> Document:
        current = await store.get_invoice(uow.db, invoice_id, session=uow.session)
        assert current is not None
        if (current["status"] != InvoiceStatus.ISSUED.value or current["paid"]
                or current.get("insurance_share")):
            raise InvoiceConflict(f"only an unpaid, unclaimed issued invoice can be "
                                  f"cancelled; this one is {current['status']} with "
                                  f"{current['paid']} paid")
        now = utcnow()
        void = {"$set": {"status": InvoiceStatus.CANCELLED.value, "cancelled_at": now}}
        await uow.db[store.INVOICES].update_one(  # printed again, marked void
            {"_id": invoice_id}, store.revised(void), session=uow.session)
        await uow.db[store.CHARGE_ITEMS].update_many(
            {"invoice_id": invoice_id}, {"$set": {"status": ChargeItemStatus.ABORTED.value}},
            session=uow.session)
        after = {**current, "status": InvoiceStatus.CANCELLED.value, "cancelled_at": now}
        await checkout_closing.schedule_close(uow, after)  # its open card checkouts
        return after

    return await runtime.transact(write, actor=principal.actor)


# --------------------------------------------------------------------------- the PDF


def pdf_key(invoice_id: str, revision: int = 0) -> str:
    """The blob key of the PDF of an invoice's ``revision`` (a function of both: a second
    rendering of the same revision, deterministic, replaces the first with the same
    bytes; one of an older revision never replaces a newer one's)."""
    suffix = f".r{revision}" if revision else ""
    return f"{INVOICE.name}/{invoice_id}{suffix}.pdf"


async def pdf(runtime: ServiceRuntime, blobs: BlobStore, principal: Principal,
              invoice_id: str) -> bytes:
    """The invoice's PDF for whoever may read it: rendered once (Typst,
    :mod:`.printing`), stored in the blob store with its SHA-256 recorded on the
    invoice (``pdf: {key, sha256, size}``), then served from there.

    Raises:
        NotFound (404); ServiceUnavailable (503) when object storage does not answer.
    """
    doc = await get(runtime, principal, invoice_id)
    return await printed_pdf(runtime.db, blobs, store.INVOICES, doc,
                             pdf_key(invoice_id, store.revision_of(doc)), _render_invoice)


def _render_invoice(doc: Document, hospital: Document | None) -> bytes:
    return printing.render_pdf(printing.printed(doc, hospital))


async def printed_pdf(db: Any, blobs: BlobStore, collection: str, doc: Document, key: str,
                      render: Callable[[Document, Document | None], bytes],
                      session: Any = None) -> bytes:
    """The PDF of ``doc`` (an invoice or a credit note in ``collection``): from the blob
    store when recorded (``pdf``), else rendered (``render(doc, hospital)``, off the
    event loop), put under ``key`` (the revision's own, :func:`pdf_key`) and recorded as
    ``pdf: {key, sha256, size}`` only if no record was made meanwhile (rendering is
    deterministic: the same bytes) and the document is still at the revision rendered
    (:func:`.store.revision_of`): a rendering that an invoice change overtook is returned
    to its caller but never kept as the invoice's PDF.

    Raises:
        ServiceUnavailable: (503) object storage does not answer.
    """
    if doc.get("pdf"):
        return b"".join([chunk async for chunk in blobs.stream(doc["pdf"]["key"])])
    hospital = None
    if doc.get("hospital_id"):
        hospital = await db[store.HOSPITALS].find_one({"_id": doc["hospital_id"]},
                                                      session=session)
    data = await asyncio.to_thread(render, doc, hospital)
    blob = await blobs.put_generated(key, data, "application/pdf")
    revision = store.revision_of(doc)
    await db[collection].update_one(
        {"_id": doc["_id"], "pdf": {"$exists": False},
         "revision": {"$in": [revision, None]} if revision == 0 else revision},
        {"$set": {"pdf": {"key": blob.key, "sha256": blob.sha256, "size": blob.size}}},
        session=session)
    return data

