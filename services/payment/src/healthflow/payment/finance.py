"""Use cases of a hospital's own books: expenses and other incomes (Issue 15, "Clinic
finances"). The monthly profit and loss built from them is :mod:`.pnl`.

An entry (``ledger_entries``, shape in :mod:`.store`) is an expense (money out:
:class:`~.domain.ExpenseCategory`) or an income other than a patient's payment (money
in: :class:`~.domain.IncomeCategory`) of one hospital: a ``category`` of the fixed set,
a ``date`` (the calendar date of the receipt or the transfer, ``YYYY-MM-DD``: a date,
not an instant, so it is the hospital's own calendar day and no time zone applies),
``amount_minor`` (a positive integer of minor units) of ``currency`` (ISO 4217), the
``counterparty`` (the supplier of an expense, the payer of an income) and a
``reason``.

Entries are never deleted: a mistaken one is voided with a reason (kept, shown, left
out of the P&L); a recorded one may be corrected. Every change publishes an event
(``expense.recorded|corrected|voided``, ``income.…``) through the outbox, so the audit
log holds the history of the books.

A receipt (PDF, PNG or JPEG, at most ``PAYMENT_RECEIPT_MAX_BYTES``, 25 MiB by default:
:data:`RECEIPT`) is attached once
per entry; its type is read from its bytes by the blob store
(:func:`healthflow.common.blobs.check_type`) and must be the declared
``Content-Type``; a refusal is 422 ``invalid-receipt`` and nothing stays stored.

Who: the accountants of the hospital (``finance:read`` / ``finance:write`` and a
``staff.assigned`` membership as ``accountant`` there, the rule of
:func:`healthflow.payment.invoices.finance_hospitals`). An entry of another hospital
is 404 (its existence is not revealed); naming another hospital is 403.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable, AsyncIterator
from datetime import date
from typing import Any

from healthflow.common.auth import Principal
from healthflow.common.blobs import BlobStore, BlobTypeRefused, BlobUse
from healthflow.common.errors import Forbidden, NotFound
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Permission
from healthflow.common.problems import Conflict, UnprocessableContent, UnsupportedMediaType
from healthflow.common.service import ServiceRuntime
from healthflow.payment import events, store
from healthflow.payment.domain import (
    CATEGORIES,
    EntryKind,
    EntryStatus,
    EntryVoided,
    check_money,
)
from healthflow.payment.invoices import ACCOUNTANT
from healthflow.payment.service import settings_of
from healthflow.payment.settings import RECEIPT_CEILING

RECEIPT = BlobUse("receipt", frozenset({"application/pdf", "image/png", "image/jpeg"}),
                  RECEIPT_CEILING)
"""Receipts: PDF, PNG or JPEG up to 25 MiB (a scanned PDF or a phone photo), the
gateway's ``document`` group's max body; ``PAYMENT_RECEIPT_MAX_BYTES`` may lower it."""

EVENTS: dict[tuple[EntryKind, str], Any] = {
    (EntryKind.EXPENSE, "recorded"): events.ExpenseRecorded,
    (EntryKind.EXPENSE, "corrected"): events.ExpenseCorrected,
    (EntryKind.EXPENSE, "voided"): events.ExpenseVoided,
    (EntryKind.INCOME, "recorded"): events.IncomeRecorded,
    (EntryKind.INCOME, "corrected"): events.IncomeCorrected,
    (EntryKind.INCOME, "voided"): events.IncomeVoided,
}
EDITABLE = ("category", "date", "amount_minor", "currency", "counterparty", "reason")


class InvalidReceipt(UnprocessableContent):
    """(422) The receipt's bytes are not an accepted type, or not the declared one;
    ``detected_type``, ``declared_type`` and ``allowed_types`` say which."""

    title, slug = "Invalid Receipt", "invalid-receipt"


# --------------------------------------------------------------------------- access


async def books_of(runtime: ServiceRuntime, principal: Principal,
                   permission: Permission) -> list[str]:
    """The hospitals whose books the caller keeps: where they are an accountant
    (``staff.assigned``), when they hold ``permission``; else none."""
    if not principal.has(permission):
        return []
    return await store.hospitals_of(runtime.db, principal.subject, ACCOUNTANT)


async def ensure_books(runtime: ServiceRuntime, principal: Principal, hospital_id: str,
                       permission: Permission) -> None:
    """Raises Forbidden (403) unless the caller keeps ``hospital_id``'s books."""
    if hospital_id not in await books_of(runtime, principal, permission):
        raise Forbidden("only the accountants of the hospital may see or keep its books "
                        "(a staff membership as accountant there)")


async def get(runtime: ServiceRuntime, principal: Principal, kind: EntryKind, entry_id: str,
              permission: Permission = Permission.FINANCE_READ) -> Document:
    """The entry, for the accountants of its hospital.

    Raises:
        NotFound: (404) unknown, of the other kind, or another hospital's.
    """
    doc = await runtime.db[store.LEDGER].find_one({"_id": entry_id, "kind": kind.value})
    if doc is None or doc["hospital_id"] not in await books_of(runtime, principal,
                                                               permission):
        raise NotFound(f"no {kind.value} {entry_id}")
    return doc


# --------------------------------------------------------------------------- writes


def _checked(kind: EntryKind, fields: Document) -> Document:
    """``fields`` with the category of ``kind``'s set and money checked.

    Raises:
        UnprocessableContent: (422) another category, bad money.
    """
    if fields["category"] not in CATEGORIES[kind]:
        raise UnprocessableContent(
            f"{fields['category']!r} is not a {kind.value} category; one of "
            f"{', '.join(CATEGORIES[kind])}", allowed_categories=list(CATEGORIES[kind]))
    try:
        amount, currency = check_money(fields["amount_minor"], fields["currency"])
    except ValueError as exc:
        raise UnprocessableContent(str(exc)) from None
    day = fields["date"]
    return {**fields, "amount_minor": amount, "currency": currency,
            "date": day.isoformat() if isinstance(day, date) else str(day)}


def _publish(uow: UnitOfWork, doc: Document, what: str, by: str) -> None:
    payload = EVENTS[(EntryKind(doc["kind"]), what)](
        entry_id=doc["_id"], hospital_id=doc["hospital_id"], category=doc["category"],
        date=doc["date"], amount_minor=doc["amount_minor"], currency=doc["currency"], by=by)
    uow.publish(payload, subject=f"{doc['kind']}/{doc['_id']}")


async def record(runtime: ServiceRuntime, principal: Principal, kind: EntryKind, *,
                 hospital_id: str, fields: Document) -> Document:
    """Record an entry of ``kind`` in the hospital's books (``fields``: ``category``,
    ``date``, ``amount_minor``, ``currency``, ``counterparty``, ``reason``); publishes
    ``<kind>.recorded``.

    Raises:
        Forbidden (403): not an accountant of the hospital; UnprocessableContent (422).
    """
    await ensure_books(runtime, principal, hospital_id, Permission.FINANCE_WRITE)
    now = utcnow()
    doc: Document = {"_id": str(uuid.uuid4()), "kind": kind.value, "hospital_id": hospital_id,
                     **_checked(kind, fields), "status": EntryStatus.RECORDED.value,
                     "recorded_by": principal.subject, "recorded_at": now,
                     "updated_at": now}

    async def write(uow: UnitOfWork) -> Document:
        await uow.db[store.LEDGER].insert_one(doc, session=uow.session)
        _publish(uow, doc, "recorded", principal.subject)
        return doc

    return await runtime.transact(write, actor=principal.actor)


async def _change(runtime: ServiceRuntime, principal: Principal, kind: EntryKind,
                  entry_id: str, what: str, changes: Document) -> Document:
    """Apply ``changes`` to a ``recorded`` entry and publish ``<kind>.<what>``.

    Raises:
        NotFound (404); EntryVoided (409): it was voided (in the meantime too).
    """
    await get(runtime, principal, kind, entry_id, Permission.FINANCE_WRITE)

    async def write(uow: UnitOfWork) -> Document:
        current = await uow.db[store.LEDGER].find_one({"_id": entry_id}, session=uow.session)
        assert current is not None  # entries are never deleted
        if current["status"] != EntryStatus.RECORDED.value:
            raise EntryVoided(f"the {kind.value} {entry_id} was voided; record a new one")
        changed = {**changes, "updated_at": utcnow()}
        await uow.db[store.LEDGER].update_one({"_id": entry_id}, {"$set": changed},
                                              session=uow.session)
        doc = {**current, **changed}
        _publish(uow, doc, what, principal.subject)
        return doc

    return await runtime.transact(write, actor=principal.actor)


async def correct(runtime: ServiceRuntime, principal: Principal, kind: EntryKind,
                  entry_id: str, changes: Document) -> Document:
    """Change the given fields of a recorded entry (of :data:`EDITABLE`); publishes
    ``<kind>.corrected``.

    Raises:
        NotFound (404), EntryVoided (409), UnprocessableContent (422).
    """
    current = await get(runtime, principal, kind, entry_id, Permission.FINANCE_WRITE)
    merged = _checked(kind, {f: changes.get(f, current[f]) for f in EDITABLE})
    return await _change(runtime, principal, kind, entry_id, "corrected",
                         {f: merged[f] for f in EDITABLE if f in changes})


async def void(runtime: ServiceRuntime, principal: Principal, kind: EntryKind,
               entry_id: str, reason: str) -> Document:
    """Void a recorded entry (``void: {reason, by, at}``): kept, left out of the P&L;
    publishes ``<kind>.voided``.

    Raises:
        NotFound (404), EntryVoided (409): voided already.
    """
    return await _change(runtime, principal, kind, entry_id, "voided", {
        "status": EntryStatus.VOIDED.value,
        "void": {"reason": reason, "by": principal.subject, "at": utcnow()}})


async def list_entries(runtime: ServiceRuntime, principal: Principal, kind: EntryKind, *,
                       hospital_id: str | None, cursor: str | None, limit: int
                       ) -> tuple[list[Document], str | None]:
    """Entries of ``kind``, latest date first, of the hospital named (one of the caller's)
    or of all the caller's hospitals; voided ones included (``status`` says).

    Raises:
        Forbidden (403): a hospital whose books the caller does not keep;
        BadRequest (400): a cursor this API did not issue.
    """
    mine = await books_of(runtime, principal, Permission.FINANCE_READ)
    if hospital_id is not None and hospital_id not in mine:
        raise Forbidden("only the accountants of the hospital may list its books")
    query: Document = {"hospital_id": hospital_id if hospital_id else {"$in": mine},
                       "kind": kind.value}
    return await store.list_entries(runtime.db, query, cursor=cursor, limit=limit)


# --------------------------------------------------------------------------- receipts


async def attach_receipt(runtime: ServiceRuntime, blobs: BlobStore, principal: Principal,
                         kind: EntryKind, entry_id: str, body: AsyncIterable[bytes],
                         declared_type: str | None) -> Document:
    """Store the receipt of a recorded entry (the raw file, ``declared_type`` its
    ``Content-Type``) in the blob store with its SHA-256, and record it on the entry.

    Raises:
        UnsupportedMediaType (415): no ``Content-Type``; NotFound (404);
        EntryVoided (409); Conflict (409): it has a receipt already (void the entry
        and record it again to replace it); InvalidReceipt (422): not PDF, PNG or
        JPEG, or not the declared type; BlobTooLarge (413): over
        ``PAYMENT_RECEIPT_MAX_BYTES``. Nothing stays stored.
    """
    if not declared_type:
        raise UnsupportedMediaType("the receipt has no Content-Type; send its type "
                                   "(application/pdf, image/png or image/jpeg)")
    current = await get(runtime, principal, kind, entry_id, Permission.FINANCE_WRITE)
    if current.get("receipt"):
        raise Conflict(f"the {kind.value} {entry_id} has a receipt already")
    try:
        async with blobs.staged(RECEIPT, body, declared_type=declared_type,
                                max_bytes=settings_of(runtime).receipt_max_bytes) as blob:
            receipt = {"key": blob.key, "sha256": blob.sha256, "size": blob.size,
                       "content_type": blob.content_type, "by": principal.subject,
                       "at": utcnow()}

            async def write(uow: UnitOfWork) -> Document:
                held = await uow.db[store.LEDGER].find_one({"_id": entry_id},
                                                           session=uow.session)
                assert held is not None
                if held["status"] != EntryStatus.RECORDED.value:
                    raise EntryVoided(f"the {kind.value} {entry_id} was voided")
                if held.get("receipt"):
                    raise Conflict(f"the {kind.value} {entry_id} has a receipt already")
                await uow.db[store.LEDGER].update_one(
                    {"_id": entry_id}, {"$set": {"receipt": receipt}}, session=uow.session)
                return {**held, "receipt": receipt}

            return await runtime.transact(write, actor=principal.actor)
    except BlobTypeRefused as exc:
        raise InvalidReceipt(exc.detail, **exc.extensions) from exc


async def receipt(runtime: ServiceRuntime, blobs: BlobStore, principal: Principal,
                  kind: EntryKind, entry_id: str) -> tuple[Document, AsyncIterator[bytes]]:
    """The entry's receipt (``{key, sha256, size, content_type, …}``) and its bytes.

    Raises:
        NotFound (404): unknown, not the caller's, or no receipt.
    """
    doc = await get(runtime, principal, kind, entry_id)
    if not doc.get("receipt"):
        raise NotFound(f"the {kind.value} {entry_id} has no receipt")
    return doc["receipt"], blobs.stream(doc["receipt"]["key"])
