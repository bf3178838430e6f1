"""FHIR R4 resources of insurance, from this service's documents (pure dicts), and the
claim submission read back from a FHIR Claim and Coverage (:func:`submission`, the one
path by which HealthFlow's own claims and outside ones, such as the official HL7
examples, reach the clearinghouse):
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
from datetime import date
from decimal import Decimal
from typing import Any

from babel.numbers import get_currency_precision

from healthflow.common.mongo import Document
from healthflow.payment.clearinghouse import ClaimDiagnosis, ClaimLine, ClaimSubmission
from healthflow.payment.domain import is_currency

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
REASON_CODES = "urn:healthflow:payer-sandbox:reason"
"""The code system of the payer sandbox's adjudication reasons (``diagnosis-excluded``...)."""


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


def _item(item: Document, currency: str) -> dict[str, Any]:
    resource = {"sequence": item["sequence"],
                "productOrService": {"coding": [{"system": SERVICE_CODES,
                                                 "code": item["code"]}],
                                     "text": item["description"]},
                "servicedDate": item["service_date"], "quantity": {"value": item["quantity"]},
                "unitPrice": money(item["unit_price"], currency),
                "net": money(item["net"], currency)}
    if item.get("diagnosis_sequence"):
        resource["diagnosisSequence"] = item["diagnosis_sequence"]
    return resource


def _coded(doc: Document) -> dict[str, Any]:
    """``diagnosis`` and ``procedure`` of a claim, when it has any (FHIR: no empty
    arrays)."""
    coded: dict[str, Any] = {}
    if doc.get("diagnoses"):
        coded["diagnosis"] = [
            {"sequence": d["sequence"], "diagnosisCodeableConcept": {"coding": [
                {"system": d["system"], "code": d["code"], "display": d["display"]}]}}
            for d in doc["diagnoses"]]
    if doc.get("procedures"):
        coded["procedure"] = [
            {"sequence": p["sequence"], "procedureCodeableConcept": {"coding": [
                {"system": p["system"], "code": p["code"]}]}} for p in doc["procedures"]]
    return coded


def claim(doc: Document) -> dict[str, Any]:
    """``Claim`` (``use`` claim, type professional): the invoice's lines as items (the
    service code, quantity, unit price, net, ``diagnosisSequence`` its encounter's
    diagnoses), the encounters' ICD-10 ``diagnosis`` and coded ``procedure`` entries,
    the coverage as the one focal insurance, the hospital as provider, the invoice
    number as identifier, ``total`` the items' sum, ``billablePeriod`` the first to the
    last day of service of its items."""
    cur = doc["currency"]
    days = sorted(i["service_date"] for i in doc["items"])
    period = {"billablePeriod": {"start": days[0], "end": days[-1]}} if days else {}
    return {**_coded(doc), **period,
        "resourceType": "Claim", "id": doc["_id"], "status": "active", "type": CLAIM_TYPE,
        "use": "claim", "patient": _patient(doc["patient_id"]),
        "identifier": [{"system": "urn:healthflow:invoice-number",
                        "value": doc["invoice_number"]}],
        "created": doc["created_at"].isoformat(), "provider": _provider(doc),
        "priority": PRIORITY, "insurer": _payer(doc["payer_id"]),
        "insurance": [{"sequence": 1, "focal": True,
                       "coverage": {"reference": f"Coverage/{doc['coverage_id']}"}}],
        "item": [_item(i, cur) for i in doc["items"]],
        "total": money(doc["total"], cur)}


def _adjudication(code: str, amount: int, currency: str,
                  reasons: list[str] | None = None) -> dict[str, Any]:
    resource = {"category": {"coding": [{"system": ADJUDICATION, "code": code}]},
                "amount": money(amount, currency)}
    if reasons:  # R4 has one reason per adjudication: the codes, the first as its coding
        resource["reason"] = {"coding": [{"system": REASON_CODES,
                                          "code": reasons[0].split(":")[0]}],
                              "text": ", ".join(reasons)}
    return resource


def claim_response(doc: Document) -> dict[str, Any]:
    """``ClaimResponse`` of the claim: outcome, disposition, per item the ``submitted``,
    ``eligible`` (with a ``reason`` when not covered: the first reason's code of
    :data:`REASON_CODES`, all of them naming the codes as text) and ``benefit``
    adjudications, totals ``submitted``, ``copay`` and
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
            _adjudication("eligible", i["eligible"], cur, i.get("reasons")),
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


# --------------------------------------------------------------------------- reading


class NotImportable(ValueError):
    """A FHIR Claim or Coverage this service cannot submit (the reason says why)."""


def minor_units(value: Any, currency: str) -> int:
    """``Money.value`` (a decimal, or its JSON number) in minor units of ``currency``.

    Raises:
        NotImportable: finer than the currency's minor unit (e.g. 1.005 EUR).
    """
    exact = Decimal(str(value)).scaleb(get_currency_precision(currency))
    if exact != exact.to_integral_value():
        raise NotImportable(f"{value} {currency} is finer than a minor unit")
    return int(exact)


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value[:10]) if value else None


def _code(concept: dict[str, Any]) -> str:
    codings = concept.get("coding") or []
    return str(codings[0].get("code") if codings else concept.get("text") or "")


def _net(item: dict[str, Any]) -> dict[str, Any]:
    """A claim item's ``net`` (``{value, currency}``), else ``unitPrice × quantity ×
    factor``. Raises NotImportable: neither is given."""
    net = item.get("net")
    if net is not None:
        return dict(net)
    unit = item.get("unitPrice") or {}
    if "value" not in unit:
        raise NotImportable(f"item {item.get('sequence')} has no price")
    factor = Decimal(str(item.get("factor", 1)))
    quantity = Decimal(str((item.get("quantity") or {}).get("value", 1)))
    return {"value": Decimal(str(unit["value"])) * quantity * factor,
            "currency": unit.get("currency")}


def submission(claim_resource: dict[str, Any],
               coverage_resource: dict[str, Any]) -> ClaimSubmission:
    """What the clearinghouse is sent for a FHIR R4 ``Claim`` (``use`` ``claim``) under
    its focal ``Coverage`` (both as JSON), whether HealthFlow made them (:func:`claim`,
    :func:`coverage`) or they come from elsewhere (the official HL7 examples):

    * each ``item``: ``sequence``, the first ``productOrService`` code (else its text),
      the service day (``servicedDate``, ``servicedPeriod.start``, else the claim's
      ``billablePeriod.start``, else its ``created`` day), ``net`` (else
      ``unitPrice × quantity × factor``) in minor units;
    * ``diagnosis`` given as codes (:func:`_diagnoses`) and each item's
      ``diagnosisSequence``;
    * the coverage: ``status``, ``period`` (days; no start: from any day), the payer
      (``payor[0]``: identifier value, else reference, else display), the ``class`` of
      type ``plan`` (none: ``""``, which no plan rule matches), ``subscriberId``.

    Raises:
        NotImportable: not a claim (a preauthorization or predetermination), no items,
            money in several currencies or finer than a minor unit.
    """
    if claim_resource.get("use") != "claim":
        raise NotImportable(f"use {claim_resource.get('use')!r}: only claims are adjudicated")
    items = claim_resource.get("item") or []
    if not items:
        raise NotImportable("a claim without items asks for nothing")
    default_day = (_day((claim_resource.get("billablePeriod") or {}).get("start"))
                   or _day(claim_resource.get("created")))
    lines, currencies = [], set()
    for item in items:
        net = _net(item)
        currency = str(net.get("currency") or "")
        currencies.add(currency)
        day = (_day(item.get("servicedDate"))
               or _day((item.get("servicedPeriod") or {}).get("start")) or default_day)
        if day is None:
            raise NotImportable(f"item {item.get('sequence')} has no service date")
        lines.append(ClaimLine(int(item["sequence"]), _code(item["productOrService"]), day,
                               minor_units(net["value"], currency),
                               tuple(int(n) for n in item.get("diagnosisSequence") or ())))
    if len(currencies) != 1 or not is_currency(next(iter(currencies))):
        raise NotImportable(f"one claim has one ISO 4217 currency, not {sorted(currencies)}")
    payor = (coverage_resource.get("payor") or [{}])[0]
    plans = [c.get("value", "") for c in coverage_resource.get("class") or []
             if _code(c.get("type") or {}) == "plan"]
    period = coverage_resource.get("period") or {}
    return ClaimSubmission(
        claim_id=str(claim_resource.get("id") or ""),
        payer_id=str((payor.get("identifier") or {}).get("value") or payor.get("reference")
                     or payor.get("display") or ""),
        plan=plans[0] if plans else "",
        subscriber_id=str(coverage_resource.get("subscriberId") or ""),
        coverage_active=coverage_resource.get("status") == "active",
        coverage_start=_day(period.get("start")) or date.min,
        coverage_end=_day(period.get("end")), currency=currencies.pop(), lines=tuple(lines),
        diagnoses=_diagnoses(claim_resource))


def _diagnoses(claim_resource: dict[str, Any]) -> tuple[ClaimDiagnosis, ...]:
    """``Claim.diagnosis`` given as codes (``diagnosisCodeableConcept``: its first
    coding); one given only as a reference to a Condition is not read."""
    found = []
    for diagnosis in claim_resource.get("diagnosis") or []:
        codings = (diagnosis.get("diagnosisCodeableConcept") or {}).get("coding") or []
        if codings and codings[0].get("code"):
            found.append(ClaimDiagnosis(int(diagnosis["sequence"]), str(codings[0]["code"]),
                                        str(codings[0].get("system") or "")))
    return tuple(found)
