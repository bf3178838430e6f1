"""Use cases of insurance: coverages, and claims on invoices (FHIR R4 ``Coverage``,
``Claim``, ``ClaimResponse``).

* A patient records the coverages on their insurance cards (:func:`add_coverage`: payer,
  member id, plan, period) and cancels one (:func:`cancel_coverage`).
* A claim (:func:`submit_claim`) is built from an invoice's lines (its charge items:
  code, quantity, price, service date) and the ICD-10 diagnoses and coded procedures of
  their encounters (:mod:`.coding`, from records' ``encounter.coded``; each line points
  to its encounter's diagnoses), for the invoice's patient under one of their
  coverages, and submitted through the clearinghouse (:mod:`.clearinghouse`) as its
  FHIR Claim and Coverage read back (:func:`healthflow.payment.fhir.submission`); the
  payer's adjudication is recorded on the claim as its response, and in the same
  transaction the invoice's ``insurance_share`` is set to what the payer covers, so the
  patient pays the remainder through the invoice's usual payment paths. A line whose
  encounter has no codes here yet is refused (409 ``encounter-not-coded``, retry).
* ``claim.submitted`` and ``claim.adjudicated`` are published (ids and amounts).

Who: the patient their own coverages and the claims on their own invoices
(``coverages:manage_own``); the accountants of a hospital (``invoices:manage_hospital``
and a membership as ``accountant`` there) read the coverages of patients their hospital
has invoiced, and read and submit the claims on their hospital's invoices. Anyone
else: 404 for one coverage or claim, 403 for a list they may not see.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from healthflow.common.auth import Principal
from healthflow.common.errors import Forbidden, NotFound
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Permission
from healthflow.common.problems import ServiceUnavailable, UnprocessableContent
from healthflow.common.service import ServiceRuntime
from healthflow.contracts.payment import ClaimAdjudicated, ClaimSubmitted
from healthflow.payment import checkout_closing, coding, fhir, invoices, store
from healthflow.payment.clearinghouse import Adjudication, Clearinghouse
from healthflow.payment.domain import (
    ClaimConflict,
    ClaimOutcome,
    CoverageStatus,
    InvoiceStatus,
    ensure_claimable,
    status_after_claim,
)


def clearinghouse(runtime: ServiceRuntime) -> Clearinghouse:
    """The runtime's clearinghouse (``create_app`` puts it there).

    Raises:
        ServiceUnavailable: (503) none is configured (``PAYMENT_CLEARINGHOUSE=none``).
    """
    house: Clearinghouse | None = runtime.state.get("clearinghouse")
    if house is None:
        raise ServiceUnavailable("no clearinghouse is configured: claims cannot be "
                                 "submitted here", retry_after=3600)
    return house


# --------------------------------------------------------------------------- coverages


async def add_coverage(runtime: ServiceRuntime, principal: Principal, *, payer_id: str,
                       payer_name: str, subscriber_id: str, plan: str, period_start: date,
                       period_end: date | None) -> Document:
    """An ``active`` coverage of the calling patient, valid from ``period_start`` to
    ``period_end`` inclusive (open-ended when None).

    Raises:
        UnprocessableContent: (422) the period ends before it starts.
    """
    if period_end is not None and period_end < period_start:
        raise UnprocessableContent("period_end must not be before period_start")
    now = utcnow()
    doc: Document = {
        "_id": str(uuid.uuid4()), "patient_id": principal.subject,
        "status": CoverageStatus.ACTIVE.value, "payer_id": payer_id, "payer_name": payer_name,
        "subscriber_id": subscriber_id, "plan": plan, "period_start": period_start.isoformat(),
        "period_end": period_end.isoformat() if period_end else None, "created_at": now,
        "updated_at": now}

    async def write(uow: UnitOfWork) -> Document:
        await uow.db[store.COVERAGES].insert_one(doc, session=uow.session)
        return doc

    return await runtime.transact(write, actor=principal.actor)


async def _may_read_patient(runtime: ServiceRuntime, principal: Principal,
                            patient_id: str) -> bool:
    if patient_id == principal.subject and principal.has(Permission.COVERAGES_MANAGE_OWN):
        return True
    hospitals = await invoices.finance_hospitals(runtime, principal)
    return bool(hospitals) and await store.billed_at(runtime.db, patient_id, hospitals)


async def get_coverage(runtime: ServiceRuntime, principal: Principal,
                       coverage_id: str) -> Document:
    """The coverage, for its patient or the accountants of a hospital that invoiced them.

    Raises:
        NotFound: (404) unknown, or not the caller's to see.
    """
    doc = await runtime.db[store.COVERAGES].find_one({"_id": coverage_id})
    if doc is None or not await _may_read_patient(runtime, principal, doc["patient_id"]):
        raise NotFound(f"no coverage {coverage_id}")
    return doc


async def list_coverages(runtime: ServiceRuntime, principal: Principal,
                         patient_id: str | None) -> list[Document]:
    """The patient's coverages, newest first: a patient their own; an accountant names
    ``patient_id``, one their hospital invoiced.

    Raises:
        Forbidden: (403) another patient's, or finance without ``patient_id`` or for a
            patient their hospitals never invoiced.
    """
    patient = patient_id or principal.subject
    if not await _may_read_patient(runtime, principal, patient):
        raise Forbidden("coverages are seen by their patient, and by the accountants of "
                        "a hospital that invoiced the patient (?patient_id=)")
    return await runtime.db[store.COVERAGES].find({"patient_id": patient}).sort(
        "created_at", -1).to_list()


async def cancel_coverage(runtime: ServiceRuntime, principal: Principal,
                          coverage_id: str) -> Document:
    """The patient withdraws a coverage (``cancelled``; repeatable). Claims made under it
    stay as they were.

    Raises:
        NotFound: (404) unknown, or not the caller's own.
    """
    doc = await runtime.db[store.COVERAGES].find_one({"_id": coverage_id})
    if doc is None or doc["patient_id"] != principal.subject:
        raise NotFound(f"no coverage {coverage_id}")

    async def write(uow: UnitOfWork) -> Document:
        now = utcnow()
        await uow.db[store.COVERAGES].update_one(
            {"_id": coverage_id}, {"$set": {"status": CoverageStatus.CANCELLED.value,
                                            "updated_at": now}}, session=uow.session)
        return {**doc, "status": CoverageStatus.CANCELLED.value, "updated_at": now}

    return await runtime.transact(write, actor=principal.actor)


# --------------------------------------------------------------------------- claims


async def _may_act_on(runtime: ServiceRuntime, principal: Principal, doc: Document) -> bool:
    """The invoice's (or claim's) own patient, or finance of its hospital."""
    if doc["patient_id"] == principal.subject and principal.has(
            Permission.COVERAGES_MANAGE_OWN):
        return True
    return doc.get("hospital_id") in await invoices.finance_hospitals(runtime, principal)


def claim_items(invoice: Document, items: dict[str, Document]) -> list[Document]:
    """``Claim.item`` of the invoice's lines, in order: ``{sequence, charge_item_id, code,
    description, quantity, unit_price, net (= the line's gross, tax included),
    service_date (the day of service, UTC, "YYYY-MM-DD": the charge item's
    ``occurrence``, i.e. its encounter's start or its appointment's; its entry day only
    for items stored before that was kept)}`` (their encounters and diagnoses:
    :func:`.coding.coded_claim`)."""
    return [{"sequence": li["sequence"], "charge_item_id": li["charge_item_id"],
             "code": li["code"], "description": li["description"],
             "quantity": li["quantity"], "unit_price": li["unit_price"], "net": li["gross"],
             "service_date": _day(items[li["charge_item_id"]].get("occurrence")
                                  or items[li["charge_item_id"]]["entered_at"])}
            for li in invoice["lines"]]


def _day(at: datetime | None) -> str:
    return (at or utcnow()).date().isoformat()


def response_of(adjudication: Adjudication, total: int) -> Document:
    """The ``response`` recorded on the claim (shape in :mod:`.store`); ``patient_share``
    = ``total - benefit``."""
    return {"id": str(uuid.uuid4()), "outcome": adjudication.outcome.value,
            "disposition": adjudication.disposition, "reference": adjudication.reference,
            "items": [{"sequence": li.sequence, "submitted": li.submitted,
                       "eligible": li.eligible, "benefit": li.benefit,
                       "reasons": list(li.reasons)}
                      for li in adjudication.lines],
            "copay": adjudication.copay, "benefit": adjudication.benefit,
            "patient_share": total - adjudication.benefit,
            "errors": list(adjudication.errors), "created_at": utcnow()}


async def record_adjudication(uow: UnitOfWork, claim: Document, invoice: Document,
                              adjudication: Adjudication) -> Document:
    """Store the claim with the payer's answer as its ``response`` and publish
    ``claim.adjudicated``; when ``complete``, the invoice gets ``insurance_share`` and
    ``claim_id`` and loses its kept PDF. An ``error`` still writes the invoice
    (``last_claim_id``), so concurrent claims on it serialise. The claim afterwards.

    Raises:
        ClaimConflict: (409) the payer's benefit is outside 0..total (nothing recorded).
    """
    if adjudication.benefit > claim["total"] or adjudication.benefit < 0:
        raise ClaimConflict(f"the payer's benefit {adjudication.benefit} is outside "
                            f"0..{claim['total']}; nothing recorded")
    claim["response"] = response_of(adjudication, claim["total"])
    await uow.db[store.CLAIMS].insert_one(claim, session=uow.session)
    complete = adjudication.outcome is ClaimOutcome.COMPLETE
    share = adjudication.benefit if complete else 0
    update: Document = {"$set": {"last_claim_id": claim["_id"]}}
    shares = {"insurance_share": share,
              "status": status_after_claim(invoice["total_gross"], share).value}
    if complete:
        update = store.revised({  # printed again, with the shares
            "$set": {**shares, "claim_id": claim["_id"]}})
    await uow.db[store.INVOICES].update_one({"_id": invoice["_id"]}, update,
                                            session=uow.session)
    if complete:  # the patient's share changed: a card checkout of the old one is stale
        await checkout_closing.schedule_close(uow, {**invoice, **shares})
    uow.publish(ClaimAdjudicated(
        claim_id=claim["_id"], claim_response_id=claim["response"]["id"],
        invoice_id=invoice["_id"], patient_id=claim["patient_id"],
        outcome=adjudication.outcome.value, benefit=share,
        patient_share=claim["total"] - share, currency=claim["currency"]),
        subject=claim["_id"], patientid=claim["patient_id"])
    return claim


async def submit_claim(runtime: ServiceRuntime, principal: Principal, *, invoice_id: str,
                       coverage_id: str) -> Document:
    """Claim the invoice under the coverage, have it adjudicated, record the answer.

    In one transaction: the claim is stored and ``claim.submitted`` published, the
    clearinghouse is called (the claim id is its idempotency key, so a transaction that
    runs again asks the same), the response recorded and ``claim.adjudicated``
    published; when ``complete``, the invoice gets ``insurance_share`` = the payer's
    benefit and ``claim_id`` (``balanced`` at once when the payer covers everything), and
    its kept PDF is dropped, so the next download prints the shares.
    Two claims on one invoice at once both write the invoice, so one runs again after
    the other committed and then finds it claimed (409).

    Raises:
        NotFound: (404) the invoice is unknown or not the caller's to act on.
        UnprocessableContent: (422) the coverage is unknown or not the invoice's patient's.
        ClaimConflict: (409) the invoice is paid on, cancelled or claimed already.
        EncounterNotCoded: (409, ``Retry-After``) a line's encounter has no codes here
            yet (not finished, or its ``encounter.coded`` is on its way).
        ServiceUnavailable: (503) no clearinghouse is configured.
    """
    invoice = await store.get_invoice(runtime.db, invoice_id)
    if invoice is None or not await _may_act_on(runtime, principal, invoice):
        raise NotFound(f"no invoice {invoice_id}")
    coverage = await runtime.db[store.COVERAGES].find_one({"_id": coverage_id})
    if coverage is None or coverage["patient_id"] != invoice["patient_id"]:
        raise UnprocessableContent(f"no coverage {coverage_id} of the invoice's patient")
    house = clearinghouse(runtime)
    claim_id = str(uuid.uuid4())  # once: a transaction rerun resubmits the same claim

    async def write(uow: UnitOfWork) -> Document:
        current = await store.get_invoice(uow.db, invoice_id, session=uow.session)
        assert current is not None
        ensure_claimable(InvoiceStatus(current["status"]), current["paid"],
                         bool(current.get("claim_id")))
        ids = [li["charge_item_id"] for li in current["lines"]]
        items = {i["_id"]: i for i in await uow.db[store.CHARGE_ITEMS].find(
            {"_id": {"$in": ids}}, session=uow.session).to_list()}
        claim: Document = {
            "_id": claim_id, "invoice_id": invoice_id,
            "invoice_number": current["number"], "patient_id": current["patient_id"],
            "hospital_id": current.get("hospital_id"), "coverage_id": coverage_id,
            "payer_id": coverage["payer_id"], "plan": coverage["plan"],
            "clearinghouse": house.name, "currency": current["currency"],
            "total": current["total_gross"], "created_at": utcnow(),
            "created_by": principal.subject,
            **coding.coded_claim(claim_items(current, items), await coding.codes_of_items(
                uow, list(items.values())))}
        uow.publish(ClaimSubmitted(
            claim_id=claim["_id"], invoice_id=invoice_id, coverage_id=coverage_id,
            patient_id=claim["patient_id"], hospital_id=claim["hospital_id"],
            total=claim["total"], currency=claim["currency"]),
            subject=claim["_id"], patientid=claim["patient_id"])
        # the FHIR resources are what is sent: the same reading as any outside claim's
        adjudication = await house.submit(fhir.submission(fhir.claim(claim),
                                                          fhir.coverage(coverage)))
        return await record_adjudication(uow, claim, current, adjudication)

    return await runtime.transact(write, actor=principal.actor)


async def get_claim(runtime: ServiceRuntime, principal: Principal, claim_id: str) -> Document:
    """The claim with its response, for its patient or finance of its hospital.

    Raises:
        NotFound: (404) unknown, or not the caller's to see.
    """
    doc = await runtime.db[store.CLAIMS].find_one({"_id": claim_id})
    if doc is None or not await _may_act_on(runtime, principal, doc):
        raise NotFound(f"no claim {claim_id}")
    return doc


async def list_claims(runtime: ServiceRuntime, principal: Principal, *,
                      patient_id: str | None, hospital_id: str | None,
                      cursor: str | None, limit: int) -> tuple[list[Document], str | None]:
    """Claims newest first, one page: a patient their own; finance their hospitals'
    (``hospital_id`` one of them, ``patient_id`` any).

    Raises:
        Forbidden: (403) naming another patient, or a hospital one is not finance of.
        BadRequest: (400) a cursor this API did not issue.
    """
    if principal.has(Permission.INVOICES_MANAGE_HOSPITAL):
        mine = await invoices.finance_hospitals(runtime, principal)
        if hospital_id is not None and hospital_id not in mine:
            raise Forbidden("only the accountants of the hospital may list its claims")
        query: Document = {"hospital_id": hospital_id if hospital_id else {"$in": mine}}
        if patient_id:
            query["patient_id"] = patient_id
        index = "hospital"
    elif (patient_id and patient_id != principal.subject) or hospital_id:
        raise Forbidden("patients may only list their own claims")
    else:
        query, index = {"patient_id": principal.subject}, "patient"
    return await store.list_claims(runtime.db, query, index=index, cursor=cursor,
                                   limit=limit)
