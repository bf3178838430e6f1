"""HTTP routes of a hospital's books (:mod:`.finance`, :mod:`.pnl`), for its accountants.

* ``POST /api/v1/expenses`` (201), ``GET ""`` (keyset pages, latest date first;
  ``?hospital_id=``), ``GET /{id}``, ``PATCH /{id}`` (correct a recorded one),
  ``POST /{id}/void`` (with a reason; never deleted), ``PUT /{id}/receipt`` (the raw
  file as the body, its type as ``Content-Type``: PDF, PNG or JPEG up to
  ``PAYMENT_RECEIPT_MAX_BYTES``, 25 MiB by default: :data:`RECEIPT_PATHS`),
  ``GET /{id}/receipt``;
* ``/api/v1/incomes``: the same for incomes other than patients' payments;
* ``GET /api/v1/finance/reports/monthly?hospital_id=&month=YYYY-MM``: the profit and
  loss as JSON, as CSV (``format=csv`` or ``Accept: text/csv``) or as an SVG chart
  (``format=svg`` or ``Accept: image/svg+xml``).

Writes need ``finance:write``, reads ``finance:read``, and an accountant's membership
at the hospital; another hospital's entry is 404.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from healthflow.common.auth import Principal, require
from healthflow.common.blobs import BlobStore
from healthflow.common.mongo import Document
from healthflow.common.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from healthflow.common.permissions import Permission as P
from healthflow.common.problems import UnprocessableContent
from healthflow.common.service import ServiceRuntime
from healthflow.payment import finance, pnl
from healthflow.payment.api import Blobs, Id, Runtime
from healthflow.payment.domain import EntryKind
from healthflow.payment.schemas import (
    ExpenseIn,
    ExpenseOut,
    ExpensePatch,
    IncomeIn,
    IncomeOut,
    IncomePatch,
    VoidIn,
)

expenses_router = APIRouter(prefix="/api/v1/expenses", tags=["finances"])
incomes_router = APIRouter(prefix="/api/v1/incomes", tags=["finances"])
reports_router = APIRouter(prefix="/api/v1/finance/reports", tags=["finances"])
CSV, SVG = "text/csv", "image/svg+xml"
RECEIPT_PATHS = ("/api/v1/expenses/{entry_id}/receipt", "/api/v1/incomes/{entry_id}/receipt")
"""The ``PUT`` routes whose body is a receipt: the app lets them take
``receipt_max_bytes`` (the platform's 1 MiB elsewhere), the gateway's ``document``
group (the payment manifest) as much."""


HospitalQuery = Annotated[str | None, Query(max_length=64)]
Cursor = Annotated[str | None, Query(max_length=512)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Reader = require(P.FINANCE_READ)
Writer = require(P.FINANCE_WRITE)
RECEIPT_BODY = {"content": {t: {"schema": {"type": "string", "format": "binary"}}
                            for t in sorted(finance.RECEIPT.allowed_types)}, "required": True}
RECEIPT_OUT: dict[int | str, dict[str, Any]] = {
    200: {"content": {t: {} for t in sorted(finance.RECEIPT.allowed_types)}}}


def _fields(body: ExpenseIn | IncomeIn | ExpensePatch | IncomePatch, party: str) -> Document:
    """The entry's fields of a request body (``supplier``/``payer`` → ``counterparty``)."""
    fields = body.model_dump(exclude_none=True, exclude={"hospital_id"})
    if party in fields:
        fields["counterparty"] = fields.pop(party)
    if not fields:
        raise UnprocessableContent("name at least one field to correct")
    return fields


async def _download(runtime: ServiceRuntime, blobs: BlobStore, principal: Principal,
                    kind: EntryKind, entry_id: str) -> StreamingResponse:
    meta, chunks = await finance.receipt(runtime, blobs, principal, kind, entry_id)
    return StreamingResponse(chunks, media_type=meta["content_type"], headers={
        "Content-Length": str(meta["size"]), "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="receipt-{entry_id}"'})


# --------------------------------------------------------------------------- expenses


@expenses_router.post("", status_code=201, summary="Record an expense (accountant)")
async def record_expense(runtime: Runtime, body: ExpenseIn,
                         principal: Principal = Writer) -> ExpenseOut:
    """403 for a hospital one is not an accountant of; 422 for bad money or dates."""
    return ExpenseOut.from_document(await finance.record(
        runtime, principal, EntryKind.EXPENSE, hospital_id=body.hospital_id,
        fields=_fields(body, "supplier")))


@expenses_router.get("", summary="Expenses, latest date first (the caller's hospitals)")
async def list_expenses(runtime: Runtime, principal: Principal = Reader,
                        hospital_id: HospitalQuery = None, cursor: Cursor = None,
                        limit: Limit = DEFAULT_LIMIT) -> Page[ExpenseOut]:
    docs, next_cursor = await finance.list_entries(
        runtime, principal, EntryKind.EXPENSE, hospital_id=hospital_id, cursor=cursor,
        limit=limit)
    return Page[ExpenseOut](items=[ExpenseOut.from_document(d) for d in docs],
                            next_cursor=next_cursor)


@expenses_router.get("/{entry_id}", summary="One expense")
async def get_expense(runtime: Runtime, entry_id: Id,
                      principal: Principal = Reader) -> ExpenseOut:
    return ExpenseOut.from_document(
        await finance.get(runtime, principal, EntryKind.EXPENSE, entry_id))


@expenses_router.patch("/{entry_id}", summary="Correct a recorded expense")
async def correct_expense(runtime: Runtime, entry_id: Id, body: ExpensePatch,
                          principal: Principal = Writer) -> ExpenseOut:
    """409 once voided."""
    return ExpenseOut.from_document(await finance.correct(
        runtime, principal, EntryKind.EXPENSE, entry_id, _fields(body, "supplier")))


@expenses_router.post("/{entry_id}/void", summary="Void an expense (kept, out of the P&L)")
async def void_expense(runtime: Runtime, entry_id: Id, body: VoidIn,
                       principal: Principal = Writer) -> ExpenseOut:
    """409 when voided already."""
    return ExpenseOut.from_document(await finance.void(
        runtime, principal, EntryKind.EXPENSE, entry_id, body.reason))


@expenses_router.put("/{entry_id}/receipt", summary="Attach the receipt (raw body)",
                     openapi_extra={"requestBody": RECEIPT_BODY})
async def attach_expense_receipt(runtime: Runtime, blobs: Blobs, entry_id: Id,
                                 request: Request,
                                 content_type: Annotated[str | None, Header()] = None,
                                 principal: Principal = Writer) -> ExpenseOut:
    """422 ``invalid-receipt`` when the bytes are not PDF/PNG/JPEG or not the declared
    type; 413 over ``PAYMENT_RECEIPT_MAX_BYTES``; 409 when it has one already or was
    voided."""
    return ExpenseOut.from_document(await finance.attach_receipt(
        runtime, blobs, principal, EntryKind.EXPENSE, entry_id, request.stream(),
        content_type))


@expenses_router.get("/{entry_id}/receipt", summary="The receipt's file",
                     response_class=Response, responses=RECEIPT_OUT)
async def expense_receipt(runtime: Runtime, blobs: Blobs, entry_id: Id,
                          principal: Principal = Reader) -> StreamingResponse:
    return await _download(runtime, blobs, principal, EntryKind.EXPENSE, entry_id)


# --------------------------------------------------------------------------- incomes


@incomes_router.post("", status_code=201, summary="Record an income (accountant)")
async def record_income(runtime: Runtime, body: IncomeIn,
                        principal: Principal = Writer) -> IncomeOut:
    """403 for a hospital one is not an accountant of; 422 for bad money or dates."""
    return IncomeOut.from_document(await finance.record(
        runtime, principal, EntryKind.INCOME, hospital_id=body.hospital_id,
        fields=_fields(body, "payer")))


@incomes_router.get("", summary="Incomes, latest date first (the caller's hospitals)")
async def list_incomes(runtime: Runtime, principal: Principal = Reader,
                       hospital_id: HospitalQuery = None, cursor: Cursor = None,
                       limit: Limit = DEFAULT_LIMIT) -> Page[IncomeOut]:
    docs, next_cursor = await finance.list_entries(
        runtime, principal, EntryKind.INCOME, hospital_id=hospital_id, cursor=cursor,
        limit=limit)
    return Page[IncomeOut](items=[IncomeOut.from_document(d) for d in docs],
                           next_cursor=next_cursor)


@incomes_router.get("/{entry_id}", summary="One income")
async def get_income(runtime: Runtime, entry_id: Id,
                     principal: Principal = Reader) -> IncomeOut:
    return IncomeOut.from_document(
        await finance.get(runtime, principal, EntryKind.INCOME, entry_id))


@incomes_router.patch("/{entry_id}", summary="Correct a recorded income")
async def correct_income(runtime: Runtime, entry_id: Id, body: IncomePatch,
                         principal: Principal = Writer) -> IncomeOut:
    return IncomeOut.from_document(await finance.correct(
        runtime, principal, EntryKind.INCOME, entry_id, _fields(body, "payer")))


@incomes_router.post("/{entry_id}/void", summary="Void an income (kept, out of the P&L)")
async def void_income(runtime: Runtime, entry_id: Id, body: VoidIn,
                      principal: Principal = Writer) -> IncomeOut:
    return IncomeOut.from_document(await finance.void(
        runtime, principal, EntryKind.INCOME, entry_id, body.reason))


@incomes_router.put("/{entry_id}/receipt", summary="Attach the receipt (raw body)",
                    openapi_extra={"requestBody": RECEIPT_BODY})
async def attach_income_receipt(runtime: Runtime, blobs: Blobs, entry_id: Id,
                                request: Request,
                                content_type: Annotated[str | None, Header()] = None,
                                principal: Principal = Writer) -> IncomeOut:
    return IncomeOut.from_document(await finance.attach_receipt(
        runtime, blobs, principal, EntryKind.INCOME, entry_id, request.stream(),
        content_type))


@incomes_router.get("/{entry_id}/receipt", summary="The receipt's file",
                    response_class=Response, responses=RECEIPT_OUT)
async def income_receipt(runtime: Runtime, blobs: Blobs, entry_id: Id,
                         principal: Principal = Reader) -> StreamingResponse:
    return await _download(runtime, blobs, principal, EntryKind.INCOME, entry_id)


# --------------------------------------------------------------------------- the P&L


@reports_router.get("/monthly", summary="A hospital's monthly profit and loss",
                    response_model=pnl.PnlOut, responses={200: {"content": {
                        "application/json": {}, CSV: {}, SVG: {}}}})
async def monthly(runtime: Runtime,
                  hospital_id: Annotated[str, Query(min_length=1, max_length=64)],
                  month: Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")],
                  format: Literal["json", "csv", "svg"] | None = None,
                  accept: Annotated[str | None, Header()] = None,
                  principal: Principal = Reader) -> Response:
    """JSON by default; ``format`` wins over ``Accept``. 403 for a hospital one is not
    an accountant of; 422 for a month that is not ``YYYY-MM``."""
    report = await pnl.monthly(runtime, principal, hospital_id=hospital_id, month=month)
    wanted = format or ("csv" if CSV in (accept or "") else
                        "svg" if SVG in (accept or "") else "json")
    name = f"pnl-{hospital_id}-{month}"
    if wanted == "csv":
        return Response(pnl.to_csv(report), media_type=f"{CSV}; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="{name}.csv"'})
    if wanted == "svg":
        return Response(await asyncio.to_thread(pnl.to_svg, report), media_type=SVG)
    return Response(pnl.PnlOut.model_validate(report).model_dump_json(),
                    media_type="application/json")


routers = [expenses_router, incomes_router, reports_router]
