"""A hospital's monthly profit and loss (Issue 15): JSON, CSV and an SVG chart.

For one calendar month, per ISO 4217 currency (never summed across currencies), all
integers of minor units::

    net = payments_received + incomes_total - refunds - expenses_total

* ``payments_received``: money patients paid on the hospital's invoices in the month,
  through Stripe and at the desk (the ``payments`` entries of its invoices, by their
  time); what payers cover by claims is not money received and is left out;
* ``refunds``: what Stripe gave back in the month on payments the hospital invoiced
  (the payment's ``refund``, by its time);
* ``incomes`` / ``expenses``: the hospital's ``recorded`` entries (:mod:`.finance`)
  dated in the month, by category (every category listed, 0 when none); voided ones
  are left out.

The month is the hospital's: ``[first day 00:00, next first day 00:00)`` in its time
zone (the ``time_zone`` of ``hospital.*``), in UTC when the hospital is not known here
yet; entries carry calendar dates, so they fall in the month by date alone.

The CSV (RFC 4180, CRLF) has one row per figure: ``month, currency, section,
category, amount_minor``; text cells are guarded against spreadsheet formulas
(:func:`healthflow.common.tabular.csv_cell`). The chart is an SVG drawn by Typst (the
engine of the invoice PDFs, ``templates/pnl_chart.typ``): per currency, the bars of
money in (payments, each income category) against money out (refunds, each expense
category), to scale.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typst
from pydantic import BaseModel

from healthflow.common.auth import Principal
from healthflow.common.permissions import Permission
from healthflow.common.service import ServiceRuntime
from healthflow.common.tabular import csv_cell
from healthflow.payment import finance, store
from healthflow.payment.domain import (
    EntryKind,
    EntryStatus,
    ExpenseCategory,
    IncomeCategory,
    month_range,
)
from healthflow.payment.printing import money


class PnlCurrencyOut(BaseModel):
    """Minor units; ``net = payments_received + incomes_total - refunds - expenses_total``."""

    currency: str
    payments_received: int
    incomes: dict[str, int]
    incomes_total: int
    refunds: int
    expenses: dict[str, int]
    expenses_total: int
    net: int


class PnlOut(BaseModel):
    """The JSON of :func:`monthly`: a hospital's profit and loss of ``month`` (``YYYY-MM``)
    in its ``time_zone``: ``[start, end)`` as aware UTC instants; one entry per currency."""

    hospital_id: str
    month: str
    time_zone: str
    start: datetime
    end: datetime
    currencies: list[PnlCurrencyOut]


CSV_HEADER = ("month", "currency", "section", "category", "amount_minor")


async def _zone(runtime: ServiceRuntime, hospital_id: str) -> str:
    """The hospital's IANA time zone, ``UTC`` when not known (yet)."""
    hospital = await runtime.db[store.HOSPITALS].find_one({"_id": hospital_id})
    name = (hospital or {}).get("time_zone") or "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC"
    return str(name)


def month_bounds(month: str, zone: str) -> tuple[str, str, datetime, datetime]:
    """``(first date, next first date, start, end)``: the month as dates and as aware
    UTC instants of its midnights in ``zone``."""
    first, after = month_range(month)
    tz = ZoneInfo(zone)
    start, end = (datetime.fromisoformat(d).replace(tzinfo=tz).astimezone(UTC)
                  for d in (first, after))
    return first, after, start, end


def _row() -> dict[str, Any]:
    return {"payments_received": 0, "refunds": 0,
            "incomes": dict.fromkeys(IncomeCategory, 0),
            "expenses": dict.fromkeys(ExpenseCategory, 0)}


async def _patient_money(runtime: ServiceRuntime, hospital_id: str, start: datetime,
                         end: datetime, rows: dict[str, dict[str, Any]]) -> None:
    """Add the month's payments received and refunds of the hospital's invoices."""
    async for doc in runtime.db[store.INVOICES].find(
            {"hospital_id": hospital_id, "payments.at": {"$gte": start, "$lt": end}}):
        for entry in doc["payments"]:
            if start <= entry["at"].replace(tzinfo=UTC) < end:
                rows[doc["currency"]]["payments_received"] += entry["amount"]
    refunded = {p["_id"]: p async for p in runtime.db[store.PAYMENTS].find(
        {"refund.at": {"$gte": start, "$lt": end}, "refund.amount": {"$gt": 0}})}
    if not refunded:
        return
    async for doc in runtime.db[store.INVOICES].find(
            {"hospital_id": hospital_id, "payments.payment_id": {"$in": list(refunded)}}):
        for entry in doc["payments"]:
            payment = refunded.pop(entry.get("payment_id"), None)
            if payment is not None:
                rows[payment["currency"]]["refunds"] += payment["refund"]["amount"]


async def monthly(runtime: ServiceRuntime, principal: Principal, *, hospital_id: str,
                  month: str) -> dict[str, Any]:
    """The P&L of ``month`` (``YYYY-MM``) for the hospital: ``{hospital_id, month,
    time_zone, start, end, currencies: [{currency, payments_received, incomes:
    {category: n}, incomes_total, refunds, expenses: {category: n}, expenses_total,
    net}]}`` sorted by currency; ``start``/``end`` aware UTC.

    Raises:
        Forbidden: (403) not an accountant of the hospital.
        ValueError: ``month`` is not ``YYYY-MM`` (the route answers 422 first).
    """
    await finance.ensure_books(runtime, principal, hospital_id, Permission.FINANCE_READ)
    zone = await _zone(runtime, hospital_id)
    first, after, start, end = month_bounds(month, zone)
    rows: dict[str, dict[str, Any]] = defaultdict(_row)
    await _patient_money(runtime, hospital_id, start, end, rows)
    async for entry in runtime.db[store.LEDGER].find(
            {"hospital_id": hospital_id, "status": EntryStatus.RECORDED.value,
             "date": {"$gte": first, "$lt": after}}):
        section = "expenses" if entry["kind"] == EntryKind.EXPENSE.value else "incomes"
        rows[entry["currency"]][section][entry["category"]] += entry["amount_minor"]
    currencies = []
    for currency in sorted(rows):
        row = rows[currency]
        incomes, expenses = sum(row["incomes"].values()), sum(row["expenses"].values())
        currencies.append({
            "currency": currency, "payments_received": row["payments_received"],
            "incomes": {str(k): v for k, v in row["incomes"].items()},
            "incomes_total": incomes, "refunds": row["refunds"],
            "expenses": {str(k): v for k, v in row["expenses"].items()},
            "expenses_total": expenses,
            "net": row["payments_received"] + incomes - row["refunds"] - expenses})
    return {"hospital_id": hospital_id, "month": month, "time_zone": zone, "start": start,
            "end": end, "currencies": currencies}


def figures(report: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    """``(currency, section, category, amount_minor)`` of every figure of ``report``, in
    the order of the CSV (category empty for totals)."""
    out: list[tuple[str, str, str, int]] = []
    for row in report["currencies"]:
        cur = row["currency"]
        out.append((cur, "payments_received", "", row["payments_received"]))
        out += [(cur, "incomes", k, v) for k, v in row["incomes"].items()]
        out.append((cur, "incomes_total", "", row["incomes_total"]))
        out.append((cur, "refunds", "", row["refunds"]))
        out += [(cur, "expenses", k, v) for k, v in row["expenses"].items()]
        out += [(cur, "expenses_total", "", row["expenses_total"]), (cur, "net", "",
                                                                      row["net"])]
    return out


def to_csv(report: dict[str, Any]) -> str:
    """The report as CSV (see the module docstring); amounts stay bare integers."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    writer.writerows([csv_cell(report["month"]), csv_cell(cur), csv_cell(section),
                      csv_cell(category), amount]
                     for cur, section, category, amount in figures(report))
    return out.getvalue()


@cache
def _template() -> bytes:
    return resources.files("healthflow.payment").joinpath(
        "templates/pnl_chart.typ").read_bytes()


def _bars(row: dict[str, Any]) -> dict[str, Any]:
    cur = row["currency"]
    money_in = [("payments received", row["payments_received"]),
                *((f"income: {k}", v) for k, v in row["incomes"].items())]
    money_out = [("refunds", row["refunds"]),
                 *((f"expense: {k}", v) for k, v in row["expenses"].items())]
    return {"currency": cur, "net": money(row["net"], cur),
            "total_in": money(row["payments_received"] + row["incomes_total"], cur),
            "total_out": money(row["refunds"] + row["expenses_total"], cur),
            "in": [{"label": k, "value": v, "text": money(v, cur)} for k, v in money_in],
            "out": [{"label": k, "value": v, "text": money(v, cur)} for k, v in money_out]}


def to_svg(report: dict[str, Any]) -> bytes:
    """The chart of the report as one SVG image (Typst); deterministic for equal input."""
    data = {"hospital": report["hospital_id"], "month": report["month"],
            "time_zone": report["time_zone"],
            "currencies": [_bars(row) for row in report["currencies"]]}
    svg: bytes = typst.compile(_template(), format="svg", sys_inputs={
        "data": json.dumps(data, ensure_ascii=False)})
    return svg
