"""FHIR R4 resources of insurance, from this service's documents (pure dicts):
``Coverage`` (https://hl7.org/fhir/R4/coverage.html), ``Claim``
(https://hl7.org/fhir/R4/claim.html) and ``ClaimResponse``
(https://hl7.org/fhir/R4/claimresponse.html), and a ``collection`` Bundle of a claim.

Money: HealthFlow keeps integers of minor units; FHIR ``Money.value`` is a decimal in
the currency's major unit. :func:`money` divides exactly (``Decimal(minor).scaleb(-d)``
with ``d`` the currency's CLDR digits, Babel), and :func:`dumps` writes it as a JSON
number of exactly that value (see :func:`_number`).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from babel.numbers import get_currency_precision

from healthflow.common.mongo import Document

CLAIM_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type",
                          "code": "professional"}]}
PRIORITY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority",
                        "code": "normal"}]}
ADJUDICATION = "http://terminology.hl7.org/CodeSystem/adjudication"
COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
MEMBER_NUMBER = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                             "code": "MB"}]}
SERVICE_CODES = "urn:healthflow:charge-item-code"
"""The code system of HealthFlow's charge item codes (the hospitals' service codes)."""
ERROR_CODES = "urn:healthflow:payer-sandbox:error"
"""The code system of the payer sandbox's error codes (``coverage-inactive``...)."""


def money(minor: int, currency: str) -> dict[str, Any]:
    """``Money`` of ``minor`` units of ISO 4217 ``currency`` (4000 EUR → 40.00 EUR)."""
    return {"value": Decimal(minor).scaleb(-get_currency_precision(currency)),
            "currency": currency}


def _patient(patient_id: str) -> dict[str, str]:
    return {"reference": f"Patient/{patient_id}"}


def _payer(payer_id: str, name: str | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"identifier": {"value": payer_id}}
    if name:
        ref["display"] = name
    return ref


def coverage(doc: Document) -> dict[str, Any]:
    """``Coverage``: status, the member id as ``subscriberId`` and identifier (v2 ``MB``),
    the patient as beneficiary and subscriber, the payer (identifier, name), the plan as a
    ``class`` of type ``plan``, the validity ``period`` (dates)."""
    period = {"start": doc["period_start"]}
    if doc.get("period_end"):
        period["end"] = doc["period_end"]
    return {
        "resourceType": "Coverage", "id": doc["_id"], "status": doc["status"],
        "identifier": [{"type": MEMBER_NUMBER, "value": doc["subscriber_id"]}],
        "subscriber": _patient(doc["patient_id"]), "subscriberId": doc["subscriber_id"],
        "beneficiary": _patient(doc["patient_id"]), "period": period,
        "payor": [_payer(doc["payer_id"], doc.get("payer_name"))],
        "class": [{"type": {"coding": [{"system": COVERAGE_CLASS, "code": "plan"}]},
                   "value": doc["plan"]}]}


def _provider(claim: Document) -> dict[str, Any]:
    if claim.get("hospital_id"):
        return {"reference": f"Organization/{claim['hospital_id']}"}
    return {"display": "HealthFlow"}


def claim(doc: Document) -> dict[str, Any]:
    """``Claim`` (``use`` claim, type professional): the invoice's lines as items (the
    service code, quantity, unit price, net), the coverage as the one focal insurance,
    the hospital as provider, the invoice number as identifier, ``total`` their sum."""
    cur = doc["currency"]
    return {
        "resourceType": "Claim", "id": doc["_id"], "status": "active", "type": CLAIM_TYPE,
        "use": "claim", "patient": _patient(doc["patient_id"]),
        "identifier": [{"system": "urn:healthflow:invoice-number",
                        "value": doc["invoice_number"]}],
        "created": doc["created_at"].isoformat(), "provider": _provider(doc),
        "priority": PRIORITY, "insurer": _payer(doc["payer_id"]),
        "insurance": [{"sequence": 1, "focal": True,
                       "coverage": {"reference": f"Coverage/{doc['coverage_id']}"}}],
        "item": [{"sequence": i["sequence"],
                  "productOrService": {"coding": [{"system": SERVICE_CODES,
                                                   "code": i["code"]}],
                                       "text": i["description"]},
                  "servicedDate": i["service_date"], "quantity": {"value": i["quantity"]},
                  "unitPrice": money(i["unit_price"], cur), "net": money(i["net"], cur)}
                 for i in doc["items"]],
        "total": money(doc["total"], cur)}


def _adjudication(code: str, amount: int, currency: str) -> dict[str, Any]:
    return {"category": {"coding": [{"system": ADJUDICATION, "code": code}]},
            "amount": money(amount, currency)}


def claim_response(doc: Document) -> dict[str, Any]:
    """``ClaimResponse`` of the claim: outcome, disposition, per item the ``submitted``,
    ``eligible`` and ``benefit`` adjudications, totals ``submitted``, ``copay`` and
    ``benefit``; errors (``error`` outcome) as codes of :data:`ERROR_CODES`. What remains
    for the patient is ``submitted − benefit``."""
    response, cur = doc["response"], doc["currency"]
    resource: dict[str, Any] = {
        "resourceType": "ClaimResponse", "id": response["id"], "status": "active",
        "type": CLAIM_TYPE, "use": "claim", "patient": _patient(doc["patient_id"]),
        "created": response["created_at"].isoformat(), "insurer": _payer(doc["payer_id"]),
        "identifier": [{"system": "urn:healthflow:clearinghouse-reference",
                        "value": response["reference"]}],
        "request": {"reference": f"Claim/{doc['_id']}"}, "outcome": response["outcome"],
        "disposition": response["disposition"],
        "item": [{"itemSequence": i["sequence"], "adjudication": [
            _adjudication("submitted", i["submitted"], cur),
            _adjudication("eligible", i["eligible"], cur),
            _adjudication("benefit", i["benefit"], cur)]} for i in response["items"]],
        "total": [_adjudication("submitted", doc["total"], cur),
                  _adjudication("copay", response["copay"], cur),
                  _adjudication("benefit", response["benefit"], cur)]}
    if response["errors"]:
        resource["error"] = [{"code": {"coding": [{"system": ERROR_CODES, "code": e}]}}
                             for e in response["errors"]]
    return resource


def claim_bundle(doc: Document, coverage_doc: Document | None) -> dict[str, Any]:
    """A ``collection`` Bundle: the Claim, its ClaimResponse and the Coverage (when it
    is still known), each with the absolute ``fullUrl`` ``urn:healthflow:<Type>/<id>``."""
    resources = [claim(doc), claim_response(doc)]
    if coverage_doc is not None:
        resources.append(coverage(coverage_doc))
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"urn:healthflow:{r['resourceType']}/{r['id']}",
                       "resource": r} for r in resources]}


def _number(value: Any) -> Any:
    if isinstance(value, Decimal):
        # JSON has one number type; Python writes a float as the shortest repr that reads
        # back as the same float, which for up to 15 significant digits (every amount
        # below 10**13 minor units; input is capped far lower) is the decimal's exact
        # value (40.00 is written 40.0). Amounts stay integers everywhere else; this is
        # the wire format only.
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(resource: dict[str, Any]) -> str:
    """``application/fhir+json`` text of a resource from this module (decimals as JSON
    numbers of their exact value)."""
    return json.dumps(resource, default=_number)
