"""HTTP routes under ``/api/v1/patients`` (thin; access rules live in the service)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from healthflow.common.auth import Principal, require, require_any
from healthflow.common.errors import UnprocessableContent
from healthflow.common.http import get_runtime
from healthflow.common.pagination import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Page,
)
from healthflow.common.permissions import Permission as P
from healthflow.common.service import ServiceRuntime
from healthflow.patient import service, store
from healthflow.patient.domain import Purpose
from healthflow.patient.schemas import PatientOut, PatientPatch, PatientSummary

Runtime = Annotated[ServiceRuntime, Depends(get_runtime)]

router = APIRouter(prefix="/api/v1/patients", tags=["patients"])


@router.get("/me", summary="The caller's own chart")
async def get_me(runtime: Runtime,
                 principal: Principal = require(P.PATIENTS_READ_OWN)) -> PatientOut:
    """404 ``patient-not-found`` until the account's registration has been processed."""
    return PatientOut.from_document(await service.get_own(runtime, principal))


@router.patch("/me", summary="Update sections of the caller's own chart")
async def patch_me(runtime: Runtime, body: PatientPatch,
                   principal: Principal = require(P.PATIENTS_WRITE_OWN)) -> PatientOut:
    """Each given section replaces the stored one; consents flip per channel."""
    return PatientOut.from_document(await service.update_own(runtime, principal, body))


@router.get("", summary="Search patients (patient-care staff)")
async def search(
    runtime: Runtime,
    principal: Principal = require(P.PATIENTS_READ_ANY),
    name: Annotated[str | None, Query(max_length=100, description="prefix, any case")] = None,
    birth_date: date | None = None,
    email: Annotated[str | None, Query(max_length=254)] = None,
    phone: Annotated[str | None, Query(max_length=16)] = None,
    purpose: Purpose | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[PatientSummary]:
    """At least one criterion; every returned row is recorded as an access."""
    query = store.search_query(name=name, birth_date=birth_date.isoformat() if birth_date
                               else None, email=email, phone=phone)
    if not query:
        raise UnprocessableContent("give at least one of name, birth_date, email, phone")
    docs, next_cursor = await service.search(runtime, principal, query, cursor, limit, purpose)
    return Page[PatientSummary](items=[PatientSummary.from_document(d) for d in docs],
                                next_cursor=next_cursor)


@router.get("/{patient_id}", summary="A chart: its patient, patient-care staff, treating doctors")
async def get_chart(
    runtime: Runtime,
    patient_id: str,
    purpose: Purpose | None = None,
    principal: Principal = require_any(P.PATIENTS_READ_OWN, P.PATIENTS_READ_ANY,
                                       P.PATIENTS_READ_TREATED),
) -> PatientOut:
    """Reads by anyone but the patient emit ``patient.record_accessed``.

    403 ``not-treating`` for a doctor without a care relationship with the patient.
    """
    return PatientOut.from_document(
        await service.read_chart(runtime, principal, patient_id, purpose))
