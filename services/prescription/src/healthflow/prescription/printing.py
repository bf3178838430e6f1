"""The printable prescription: a PDF from a Typst template with a QR code.

Rendering machinery only (the use case is ``printed.printable``). The template
``templates/prescription.typ`` receives the prescription as JSON in
``sys.inputs`` (values become text, never markup) and the QR code (ISO/IEC
18004, error correction level M, from ``segno``) of the verification URL as SVG.
The document date is unset, so the same inputs give the same bytes and so the
same SHA-256.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from typing import Any

import segno
import typst


@dataclass(frozen=True)
class PrintedLine:
    """One medication line as printed (already formatted text)."""

    medication: str
    dose: str
    route: str
    frequency: str
    duration: str
    quantity: str
    repeats: str
    instructions: str


@dataclass(frozen=True)
class PrintedPrescription:
    """Everything the PDF shows: names as known, the issue date (``YYYY-MM-DD HH:MM``,
    UTC) and the verification URL the QR code holds."""

    id: str
    patient: str
    prescriber: str
    issued: str
    encounter: str
    lines: list[PrintedLine]
    verify_url: str
    hospital: str | None = None  # "Name, City, CC" of the encounter's hospital, if known


@cache
def _template() -> bytes:
    return resources.files("healthflow.prescription").joinpath(
        "templates/prescription.typ").read_bytes()


def qr_svg(url: str) -> str:
    """The QR code of ``url`` as an SVG document (error correction M, 2-module border)."""
    buffer = io.BytesIO()
    segno.make(url, error="m", micro=False).save(buffer, kind="svg", scale=4, border=2)
    return buffer.getvalue().decode()


def render_pdf(printed: PrintedPrescription) -> bytes:
    """The PDF (1.7) of ``printed``; deterministic for equal input."""
    data: dict[str, Any] = asdict(printed)
    pdf: bytes = typst.compile(_template(), sys_inputs={
        "data": json.dumps(data, ensure_ascii=False), "qr": qr_svg(printed.verify_url)})
    return pdf


def _quantity(q: dict[str, Any] | None) -> str:
    return "-" if not q else f"{q['value']:g} {q['unit']}"


def printed(doc: dict[str, Any], names: dict[str, str], verify_url: str,
            hospital: dict[str, Any] | None = None) -> PrintedPrescription:
    """What the PDF of the prescription document ``doc`` shows (shape in :mod:`.store`);
    ``names`` maps user ids to names (an unknown one is printed as its id); ``hospital``
    ``{name, city, country}`` is the prescribing hospital (None: not printed)."""
    dosage, request = doc["dosage"], doc["dispense_request"]
    frequency = dosage["frequency"]
    medication = doc["medication"]["text"] + (
        f" (ATC {doc['medication']['code']})" if doc["medication"].get("system")
        == "http://www.whocc.no/atc" and doc["medication"].get("code") else "")
    line = PrintedLine(
        medication=medication, dose=_quantity(dosage["dose"]),
        route=dosage["route"]["display"],
        frequency=f"{frequency['count']} times per {frequency['period']:g} "
                  f"{frequency['period_unit']}",
        duration=_quantity(dosage["duration"]), quantity=_quantity(request["quantity"]),
        repeats=str(request["repeats"]), instructions=dosage.get("instructions") or "-")
    return PrintedPrescription(
        id=doc["_id"], patient=names.get(doc["patient_id"], doc["patient_id"]),
        prescriber=names.get(doc["prescriber_id"], doc["prescriber_id"]),
        issued=f"{doc['issued_at']:%Y-%m-%d %H:%M}", encounter=doc["encounter_id"],
        lines=[line], verify_url=verify_url,
        hospital=f"{hospital['name']}, {hospital['city']}, {hospital['country']}"
        if hospital else None)
