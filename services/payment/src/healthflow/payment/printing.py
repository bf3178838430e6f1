"""The printable invoice and credit note: PDFs from Typst templates, the approach of the
printed prescription (:mod:`healthflow.prescription.printing`).

Rendering machinery only (the use cases are :func:`healthflow.payment.invoices.pdf` and
:func:`healthflow.payment.credit_notes.pdf`). The templates ``templates/invoice.typ``
and ``templates/credit_note.typ`` receive the document as JSON in ``sys.inputs``
(values become text, never markup). The document date is unset, so the same document
gives the same bytes. Amounts are integers of minor units, printed with the currency's
ISO 4217 exponent (from CLDR through ``babel``): 6000 EUR prints ``60.00``, 6000 JPY
``6000``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

import typst
from babel.numbers import get_currency_precision


def money(amount: int, currency: str) -> str:
    """``amount`` minor units of ``currency`` as a decimal string (``"60.00"``)."""
    digits = get_currency_precision(currency)
    return f"{Decimal(amount).scaleb(-digits):.{digits}f}"


@dataclass(frozen=True)
class PrintedLine:
    sequence: str
    code: str
    description: str
    quantity: str
    unit_price: str
    tax: str
    gross: str


@dataclass(frozen=True)
class PrintedInvoice:
    """Everything the PDF shows, as text: the issue time is ``YYYY-MM-DD HH:MM`` UTC."""

    id: str
    number: str
    issuer: str
    patient: str
    issued: str
    currency: str
    tax_rate: str
    lines: list[PrintedLine]
    total_net: str
    total_tax: str
    total_gross: str
    cancelled: str | None = None  # "YYYY-MM-DD HH:MM" UTC when voided
    insurance_share: str | None = None  # what the payer covers (an adjudicated claim)
    patient_share: str | None = None  # the total less the insurance share


@dataclass(frozen=True)
class PrintedCreditLine:
    description: str
    net: str
    tax: str
    gross: str


@dataclass(frozen=True)
class PrintedCreditNote:
    """Everything a credit note's PDF shows, as text (amounts negative: what is credited;
    the issue time ``YYYY-MM-DD HH:MM`` UTC, as on the invoice)."""

    id: str
    number: str
    invoice_number: str
    issuer: str
    patient: str
    issued: str
    currency: str
    tax_rate: str
    reason: str
    lines: list[PrintedCreditLine]
    total_net: str
    total_tax: str
    total_gross: str


@cache
def _template(name: str) -> bytes:
    return resources.files("healthflow.payment").joinpath(f"templates/{name}").read_bytes()


def _render(template: str, printed: PrintedInvoice | PrintedCreditNote) -> bytes:
    pdf: bytes = typst.compile(_template(template), sys_inputs={
        "data": json.dumps(asdict(printed), ensure_ascii=False)})
    return pdf


def render_pdf(printed: PrintedInvoice) -> bytes:
    """The PDF of ``printed``; deterministic for equal input."""
    return _render("invoice.typ", printed)


def render_credit_note_pdf(printed: PrintedCreditNote) -> bytes:
    """The PDF of the credit note ``printed``; deterministic for equal input."""
    return _render("credit_note.typ", printed)


def _issuer(doc: dict[str, Any], hospital: dict[str, Any] | None) -> str:
    """``"Tele Clinic, Berlin, DE"``; without the hospital's read model its id, and
    ``HealthFlow`` for the platform's own documents."""
    if hospital:
        return f"{hospital['name']}, {hospital['city']}, {hospital['country']}"
    return str(doc.get("hospital_id") or "HealthFlow")


def _rate(basis_points: int) -> str:
    return f"{Decimal(basis_points).scaleb(-2):.2f} %"


def printed(doc: dict[str, Any], hospital: dict[str, Any] | None) -> PrintedInvoice:
    """What the PDF of the invoice ``doc`` (shape in :mod:`.store`) shows; ``hospital``
    ``{name, city, country}`` is the issuer (None: HealthFlow itself, or not known yet:
    its id). The patient is named by id: this service keeps no names."""
    cur = doc["currency"]
    return PrintedInvoice(
        id=doc["_id"], number=doc["number"], issuer=_issuer(doc, hospital),
        patient=doc["patient_id"], issued=f"{doc['issued_at']:%Y-%m-%d %H:%M}", currency=cur,
        tax_rate=_rate(doc["tax_basis_points"]),
        lines=[PrintedLine(sequence=str(li["sequence"]), code=li["code"],
                           description=li["description"], quantity=str(li["quantity"]),
                           unit_price=money(li["unit_price"], cur), tax=money(li["tax"], cur),
                           gross=money(li["gross"], cur)) for li in doc["lines"]],
        total_net=money(doc["total_net"], cur), total_tax=money(doc["total_tax"], cur),
        total_gross=money(doc["total_gross"], cur),
        cancelled=f"{doc['cancelled_at']:%Y-%m-%d %H:%M}" if doc.get("cancelled_at") else None,
        insurance_share=money(share, cur) if (share := doc.get("insurance_share")) else None,
        patient_share=money(doc["total_gross"] - share, cur) if share else None)


def printed_credit_note(doc: dict[str, Any], hospital: dict[str, Any] | None
                        ) -> PrintedCreditNote:
    """What the PDF of the credit note ``doc`` (shape in :mod:`.credit_notes`) shows;
    ``hospital`` as for :func:`printed`."""
    cur = doc["currency"]
    return PrintedCreditNote(
        id=doc["_id"], number=doc["number"], invoice_number=doc["invoice_number"],
        issuer=_issuer(doc, hospital), patient=doc["patient_id"],
        issued=f"{doc['issued_at']:%Y-%m-%d %H:%M}", currency=cur,
        tax_rate=_rate(doc["tax_basis_points"]), reason=doc["reason"],
        lines=[PrintedCreditLine(description=li["description"], net=money(li["net"], cur),
                                 tax=money(li["tax"], cur), gross=money(li["gross"], cur))
               for li in doc["lines"]],
        total_net=money(doc["total_net"], cur), total_tax=money(doc["total_tax"], cur),
        total_gross=money(doc["total_gross"], cur))
