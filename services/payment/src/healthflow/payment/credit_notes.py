"""Credit notes: a refund of an invoiced payment is documented by a credit note.

FHIR R4 has no CreditNote resource; HealthFlow keeps a credit-note document of its own
(``docs/decisions.md``): numbered ``CN-000001``… in its issuer's own gap-free series
(counter ``credit:<issuer>``, incremented in the issuing transaction, like invoices),
referring to the invoice it corrects, with one negative line (the refund, tax split at
the invoice's rate by :func:`~healthflow.payment.domain.split_tax`). The invoice itself
is never changed: what was invoiced and paid stays as it was.

The refund's transaction enqueues a ``credit-note`` job (key ``credit-<refund id>``,
:func:`schedule`); the job (:func:`issue_for_refund`, one at a time, as billing) waits
for the payment's invoice (its billing job may not have run yet: retried) and issues
the note once (its id a UUID v5 of the refund id). A payment refunded before it was
recorded (``cancelled_before_recorded``) was never invoiced and gets none.

The PDF (Typst, :mod:`.printing`, ``templates/credit_note.typ``) is printed at issue:
the issuing transaction enqueues a ``credit-note-pdf`` job (key ``cn-pdf-<note id>``,
:func:`print_pdf`) that renders it and keeps it in the blob store
(``credit-note/<id>.pdf``, ``pdf: {key, sha256, size}`` on the note), off the numbering
job's one-at-a-time path. It is written once: a redelivered job finds ``pdf`` recorded
and writes nothing. :func:`pdf` serves it from there to whoever may read the note (its
patient, the finance of its hospital: the invoice's rules, 404 for anyone else), and
prints it itself if asked before the job has run (the same bytes: rendering is
deterministic and the note never changes).

Collection ``credit_notes``: ``{_id, number, issuer, sequence, invoice_id,
invoice_number, payment_id, refund_id, reason, patient_id, hospital_id, currency,
tax_basis_points, lines: [{description, gross, net, tax}] (negative minor units),
total_gross, total_net, total_tax, issued_at, pdf?: {key, sha256, size}}``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel

from healthflow.common import jobs
from healthflow.common.auth import Principal
from healthflow.common.blobs import BlobStore, BlobUse
from healthflow.common.blobs.kinds import MiB
from healthflow.common.errors import NotFound
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.service import ServiceRuntime
from healthflow.payment import invoices, printing, store
from healthflow.payment.domain import paid_at, split_tax

CREDIT_NOTES = store.CREDIT_NOTES
CREDIT = "credit-note"
"""The job queue of refunds to document (payload ``{payment_id, refund_id}``)."""

PDF = "credit-note-pdf"
"""The job queue of credit notes to print (payload ``{credit_note_id}``)."""
PRINTED = BlobUse("credit-note", frozenset({"application/pdf"}), 10 * MiB)
"""Credit-note PDFs in the payment service's bucket (``credit-note/<id>.pdf``)."""

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://healthflow/payment/credit-note")


class NotInvoicedYet(RuntimeError):
    """The payment's billing job has not issued its invoice yet: the job runs again."""


class CreditNoteLineOut(BaseModel):
    description: str
    gross: int
    net: int
    tax: int


class CreditNoteOut(BaseModel):
    """A credit note (negative minor units of ``currency``, ISO 4217) correcting
    ``invoice_id``; ``number`` ``CN-…`` of its issuer's own series."""

    id: str
    number: str
    invoice_id: str
    invoice_number: str
    payment_id: str
    refund_id: str
    reason: str
    currency: str
    lines: list[CreditNoteLineOut]
    total_gross: int
    total_net: int
    total_tax: int
    issued_at: datetime


def out(doc: Document) -> CreditNoteOut:
    return CreditNoteOut.model_validate({"id": doc["_id"], **doc})


def credit_note_number(sequence: int) -> str:
    """``CN-000042``: the ``sequence``-th credit note (1-based) of an issuer."""
    return f"CN-{sequence:06d}"


async def schedule(uow: UnitOfWork, payment_id: str, refund_id: str) -> None:
    """Enqueue the credit note of a refund, in the refund's transaction."""
    await jobs.enqueue(uow.db, CREDIT, {"payment_id": payment_id, "refund_id": refund_id},
                       key=f"credit-{refund_id}", session=uow.session)


async def issue_for_refund(uow: UnitOfWork, payment_id: str, refund_id: str
                           ) -> Document | None:
    """The ``credit-note`` job: the refund's credit note, once; None when there is
    nothing to document (no refund recorded, or the payment never reached ``succeeded``
    here, so it is never invoiced: its history says so, whatever the refund's reason).

    Raises:
        NotInvoicedYet: the payment succeeded here but its billing job has not issued
            the invoice yet (the job is retried).
    """
    note_id = str(uuid.uuid5(NAMESPACE, refund_id))
    if await uow.db[CREDIT_NOTES].find_one({"_id": note_id}, session=uow.session):
        return None
    payment = await store.get_payment(uow.db, payment_id, session=uow.session)
    refund = (payment or {}).get("refund") or {}
    if payment is None or refund.get("id") != refund_id or not refund.get("amount"):
        return None
    invoice = await uow.db[store.INVOICES].find_one(
        {"payments.payment_id": payment_id}, session=uow.session)
    if invoice is None:
        billed = await uow.db[store.CHARGE_ITEMS].find_one(
            {"_id": invoices.consultation_item_id(payment_id)}, session=uow.session)
        if billed is None and paid_at(payment.get("history") or []) is not None:
            # it reached succeeded here, so its billing job exists: wait for the invoice
            raise NotInvoicedYet(f"payment {payment_id} is not invoiced yet")
        return None
    amount = int(refund["amount"])
    net, tax = split_tax(amount, invoice["tax_basis_points"])
    sequence = await store.next_sequence(uow.db, invoice["issuer"], uow.session,
                                         series="credit")
    doc: Document = {
        "_id": note_id, "number": credit_note_number(sequence), "issuer": invoice["issuer"],
        "sequence": sequence, "invoice_id": invoice["_id"],
        "invoice_number": invoice["number"], "payment_id": payment_id,
        "refund_id": refund_id, "reason": refund.get("reason") or "refund",
        "patient_id": invoice["patient_id"], "hospital_id": invoice.get("hospital_id"),
        "currency": invoice["currency"], "tax_basis_points": invoice["tax_basis_points"],
        "lines": [{"description": f"Refund on {invoice['number']}", "gross": -amount,
                   "net": -net, "tax": -tax}],
        "total_gross": -amount, "total_net": -net, "total_tax": -tax,
        "issued_at": utcnow()}
    await uow.db[CREDIT_NOTES].insert_one(doc, session=uow.session)
    await jobs.enqueue(uow.db, PDF, {"credit_note_id": note_id}, key=f"cn-pdf-{note_id}",
                       session=uow.session)
    return doc


async def of_invoice(runtime: ServiceRuntime, principal: Principal, invoice_id: str
                     ) -> list[Document]:
    """The credit notes of an invoice, oldest first, for whoever may read the invoice.

    Raises:
        NotFound: (404) the invoice is unknown or not the caller's to see.
    """
    await invoices.get(runtime, principal, invoice_id)
    return await runtime.db[CREDIT_NOTES].find({"invoice_id": invoice_id}).sort(
        "sequence", 1).to_list()


async def get(runtime: ServiceRuntime, principal: Principal, invoice_id: str,
              note_id: str) -> Document:
    """The credit note ``note_id`` of the invoice ``invoice_id``, for its patient or the
    finance of its hospital (the invoice's rules).

    Raises:
        NotFound: (404) unknown, of another invoice, or not the caller's to see.
    """
    doc = await runtime.db[CREDIT_NOTES].find_one({"_id": note_id, "invoice_id": invoice_id})
    if doc is None or not await invoices.may_read(runtime, principal, doc):
        raise NotFound(f"no credit note {note_id} of invoice {invoice_id}")
    return doc


def pdf_key(note_id: str) -> str:
    """The blob key of a credit note's PDF (a function of the id, like the invoice's)."""
    return f"{PRINTED.name}/{note_id}.pdf"


def _render(doc: Document, hospital: Document | None) -> bytes:
    return printing.render_credit_note_pdf(printing.printed_credit_note(doc, hospital))


async def print_pdf(uow: UnitOfWork, blobs: BlobStore, note_id: str) -> bytes | None:
    """The ``credit-note-pdf`` job: print the note and keep its PDF; None (nothing
    written) when it is kept already or the note is unknown (a redelivery).

    Raises:
        ServiceUnavailable: (503) object storage does not answer (the job is retried;
            a retry puts the same bytes under the same key).
    """
    doc = await uow.db[CREDIT_NOTES].find_one({"_id": note_id}, session=uow.session)
    if doc is None or doc.get("pdf"):
        return None
    return await invoices.printed_pdf(uow.db, blobs, CREDIT_NOTES, doc, pdf_key(note_id),
                                      _render, uow.session)


async def pdf(runtime: ServiceRuntime, blobs: BlobStore, principal: Principal,
              invoice_id: str, note_id: str) -> bytes:
    """The credit note's PDF for whoever may read it (:func:`get`), from the blob store
    (printed here if the ``credit-note-pdf`` job has not run yet).

    Raises:
        NotFound (404); ServiceUnavailable (503) when object storage does not answer.
    """
    doc = await get(runtime, principal, invoice_id, note_id)
    return await invoices.printed_pdf(runtime.db, blobs, CREDIT_NOTES, doc, pdf_key(note_id),
                                      _render)
