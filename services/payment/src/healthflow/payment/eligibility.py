"""Eligibility checks (FHIR R4 ``CoverageEligibilityRequest`` purpose ``validation`` and
``CoverageEligibilityResponse``): the patient asks, through the clearinghouse
(:mod:`.clearinghouse`; the payer sandbox answers by its plan rules and the coverage's
period), whether one of their coverages is in force on a service date.

Each answer is kept (collection ``eligibility_responses``: ``{_id (the request id),
coverage_id, patient_id, payer_id, plan, service_date (ISO date), clearinghouse,
outcome (complete|error), inforce, reasons, disposition, reference, created_at,
created_by}``) so that a booking can ask whether the patient holds a coverage
verified in force on its day (:func:`verified_on`). Request and response bodies are
here rather than in :mod:`.schemas`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common.auth import Principal
from healthflow.common.errors import NotFound
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.service import ServiceRuntime
from healthflow.payment import store
from healthflow.payment.clearinghouse import EligibilityInquiry
from healthflow.payment.domain import ClaimOutcome, CoverageStatus
from healthflow.payment.insurance import clearinghouse

ELIGIBILITY = store.ELIGIBILITY


class EligibilityIn(BaseModel):
    """``CoverageEligibilityRequest.servicedDate``: the day care is planned (a calendar
    date; today in UTC when left out)."""

    model_config = ConfigDict(extra="forbid")

    service_date: date | None = None


class EligibilityOut(BaseModel):
    """``CoverageEligibilityResponse``: ``outcome`` ``complete`` (``inforce`` says whether
    the coverage is in force on ``service_date``; ``reasons`` why not:
    ``coverage-inactive``, ``coverage-not-in-force``) or ``error`` (the payer could not
    answer: ``plan-unknown``); times aware UTC."""

    id: str
    coverage_id: str
    patient_id: str
    service_date: date
    outcome: ClaimOutcome
    inforce: bool
    reasons: list[str]
    disposition: str
    clearinghouse: str
    created_at: datetime


def out(doc: Document) -> EligibilityOut:
    return EligibilityOut.model_validate({"id": doc["_id"], **doc})


async def check(runtime: ServiceRuntime, principal: Principal, coverage_id: str,
                service_date: date | None) -> Document:
    """Ask the payer whether the caller's coverage is in force on ``service_date``
    (default: today, UTC), and keep the answer.

    Raises:
        NotFound: (404) unknown, or not the caller's own coverage.
        ServiceUnavailable: (503) no clearinghouse is configured.
    """
    coverage = await runtime.db[store.COVERAGES].find_one({"_id": coverage_id})
    if coverage is None or coverage["patient_id"] != principal.subject:
        raise NotFound(f"no coverage {coverage_id}")
    house = clearinghouse(runtime)
    day = service_date or datetime.now(UTC).date()
    request_id = str(uuid.uuid4())
    end = coverage.get("period_end")
    answer = await house.check_eligibility(EligibilityInquiry(
        request_id=request_id, payer_id=coverage["payer_id"], plan=coverage["plan"],
        subscriber_id=coverage["subscriber_id"],
        coverage_active=coverage["status"] == CoverageStatus.ACTIVE.value,
        coverage_start=date.fromisoformat(coverage["period_start"]),
        coverage_end=date.fromisoformat(end) if end else None, service_date=day))
    doc: Document = {
        "_id": request_id, "coverage_id": coverage_id, "patient_id": coverage["patient_id"],
        "payer_id": coverage["payer_id"], "plan": coverage["plan"],
        "service_date": day.isoformat(), "clearinghouse": house.name,
        "outcome": answer.outcome.value, "inforce": answer.inforce,
        "reasons": list(answer.reasons), "disposition": answer.disposition,
        "reference": answer.reference, "created_at": utcnow(),
        "created_by": principal.subject}

    async def write(uow: UnitOfWork) -> Document:
        await uow.db[ELIGIBILITY].insert_one(doc, session=uow.session)
        return doc

    return await runtime.transact(write, actor=principal.actor)


async def verified_on(db: AsyncDatabase[Document], patient_id: str, day: date,
                      session: Any = None) -> bool:
    """Whether the patient holds a coverage verified in force: an eligibility answer
    ``inforce`` for a coverage still ``active`` whose period includes ``day``."""
    answers = await db[ELIGIBILITY].find({"patient_id": patient_id, "inforce": True},
                                         session=session).to_list()
    ids = list({a["coverage_id"] for a in answers})
    async for coverage in db[store.COVERAGES].find(
            {"_id": {"$in": ids}, "status": CoverageStatus.ACTIVE.value}, session=session):
        end = coverage.get("period_end")
        if coverage["period_start"] <= day.isoformat() and (end is None
                                                            or day.isoformat() <= end):
            return True
    return False
