"""Billing summaries: a patient's money with HealthFlow, a hospital's revenue.

Every figure is an integer of minor units, per ISO 4217 currency (never summed across
currencies). Sources: invoices (what was billed, what was received on them, by
Stripe or at the desk, and what payers cover by adjudicated claims) and payments (what
Stripe refunded).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from healthflow.common.auth import Principal
from healthflow.common.errors import Forbidden
from healthflow.common.mongo import Document
from healthflow.common.permissions import Permission
from healthflow.common.service import ServiceRuntime
from healthflow.payment import invoices, store
from healthflow.payment.domain import COLLECTED, InvoiceStatus

PERIODS = {"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}
"""Revenue periods and how their keys read (UTC calendar)."""


async def patient_summary(runtime: ServiceRuntime, principal: Principal,
                          patient_id: str | None) -> dict[str, Any]:
    """``{patient_id, currencies: [{currency, billed, paid, outstanding, refunded,
    insurance_share}]}`` (sorted by currency):

    * ``billed``: the totals of the patient's invoices not cancelled;
    * ``paid``: what the patient paid: through Stripe (every payment that succeeded,
      refunded later or not), by card on an invoice (its checkout) and at the desk;
    * ``outstanding``: what the invoices still want from the patient (total minus the
      insurance share minus what was received);
    * ``refunded``: what Stripe gave back on the patient's payments;
    * ``insurance_share``: what payers cover on those invoices (adjudicated claims), so
      ``billed = paid on invoices + insurance_share + outstanding``.

    The patient sees their own; finance (``invoices:manage_hospital``) names a patient and
    sees the part billed by their hospitals (refunds of consultations those hospitals
    invoiced).

    Raises:
        Forbidden: (403) a patient naming another patient; finance without ``patient_id``.
    """
    hospitals: list[str] | None = None
    if principal.has(Permission.INVOICES_MANAGE_HOSPITAL) and patient_id:
        hospitals = await invoices.finance_hospitals(runtime, principal)
    elif patient_id and patient_id != principal.subject:
        raise Forbidden("patients may only see their own billing summary")
    elif not principal.has(Permission.INVOICES_READ_OWN):
        raise Forbidden("name the patient (?patient_id=) to see their billing summary")
    patient = patient_id or principal.subject
    where: Document = {"patient_id": patient,
                       "status": {"$ne": InvoiceStatus.CANCELLED.value}}
    if hospitals is not None:
        where["hospital_id"] = {"$in": hospitals}
    sums: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(
        ("billed", "paid", "outstanding", "refunded", "insurance_share"), 0))
    payment_ids: list[str] = []
    async for doc in runtime.db[store.INVOICES].find(where):
        row = sums[doc["currency"]]
        row["billed"] += doc["total_gross"]
        share = doc.get("insurance_share", 0)
        row["insurance_share"] += share
        row["outstanding"] += doc["total_gross"] - share - doc["paid"]
        row["paid"] += sum(p["amount"] for p in doc["payments"] if p["source"] != "stripe")
        payment_ids += [p["payment_id"] for p in doc["payments"] if p.get("payment_id")]
    paid: Document = {"patient_id": patient, "status": {"$in": [s.value for s in COLLECTED]}}
    if hospitals is not None:
        paid["_id"] = {"$in": payment_ids}
    async for payment in runtime.db[store.PAYMENTS].find(paid):
        row = sums[payment["currency"]]
        row["paid"] += payment["amount"]
        row["refunded"] += (payment.get("refund") or {}).get("amount", 0)
    return {"patient_id": patient,
            "currencies": [{"currency": c, **sums[c]} for c in sorted(sums)]}


async def hospital_revenue(runtime: ServiceRuntime, principal: Principal, *,
                           hospital_id: str, start: datetime, end: datetime,
                           period: str) -> dict[str, Any]:
    """The hospital's invoiced revenue for invoices issued in ``[start, end)`` (aware
    UTC), cancelled ones left out, grouped by ``period`` (``day``, ``month`` or ``year``
    of the issue time in UTC), doctor (``performer_id`` of the charge item; None when
    none) and service (the charge item ``code``), per currency.

    Shape: ``{hospital_id, period, rows: [{period, doctor_id, service, currency,
    quantity, net, tax, gross}], totals: [{currency, net, tax, gross, paid,
    insurance_share}]}`` (``paid``: from patients; ``insurance_share``: covered by payers);
    rows sorted by (period, currency, doctor_id, service). Refunds are not deducted
    here (they are in the patients' summaries and in the payments).

    Raises:
        Forbidden: (403) not finance of the hospital.
    """
    await invoices.ensure_finance(runtime, principal, hospital_id)
    fmt = PERIODS[period]
    rows: dict[tuple[str, str, str, str], dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(("quantity", "net", "tax", "gross"), 0))
    totals: dict[str, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(("net", "tax", "gross", "paid", "insurance_share"), 0))
    async for doc in runtime.db[store.INVOICES].find({
            "hospital_id": hospital_id, "issued_at": {"$gte": start, "$lt": end},
            "status": {"$ne": InvoiceStatus.CANCELLED.value}}):
        key = doc["issued_at"].strftime(fmt)
        for line in doc["lines"]:
            row = rows[(key, doc["currency"], line.get("performer_id") or "", line["code"])]
            row["quantity"] += line["quantity"]
            for field in ("net", "tax", "gross"):
                row[field] += line[field]
        total = totals[doc["currency"]]
        total["net"] += doc["total_net"]
        total["tax"] += doc["total_tax"]
        total["gross"] += doc["total_gross"]
        total["paid"] += doc["paid"]
        total["insurance_share"] += doc.get("insurance_share", 0)
    return {"hospital_id": hospital_id, "period": period,
            "rows": [{"period": p, "doctor_id": d or None, "service": s, "currency": c, **v}
                     for (p, c, d, s), v in sorted(rows.items())],
            "totals": [{"currency": c, **totals[c]} for c in sorted(totals)]}
