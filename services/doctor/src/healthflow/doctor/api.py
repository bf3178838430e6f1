"""HTTP routes of the doctor service: ``/api/v1/doctors``.

Who may call what (permissions declared per route; ownership checked in :mod:`store`):

=====================================  ===================================================
``GET  /``                              public search (verified doctors at verified
                                        hospitals)
``POST /``                              ``doctors:register_own``: the caller's own profile
``GET  /{id}``, ``GET /{id}/availability``  public if verified; else the doctor or a
                                        licence verifier (404 to others)
``PATCH /{id}``                         ``doctors:register_own`` and the doctor themself
``POST /{id}/verify``, ``/{id}/reject`` ``doctors:verify`` (admins)
``PUT  /{id}/availability``             the doctor (``schedule:manage_own``) or
                                        ``schedule:manage_any``
=====================================  ===================================================
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from healthflow.common.auth import (
    MaybePrincipal,
    Principal,
    require,
    require_any,
)
from healthflow.common.errors import UnprocessableContent
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.http import get_runtime
from healthflow.common.mongo import Document
from healthflow.common.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from healthflow.common.permissions import Permission
from healthflow.common.service import ServiceRuntime
from healthflow.doctor import domain, schedules, service, store
from healthflow.doctor.domain import DoctorStatus, Mode
from healthflow.doctor.schemas import (
    AvailabilityIn,
    AvailabilityOut,
    DoctorCreate,
    DoctorOut,
    DoctorUpdate,
    RejectBody,
)

router = APIRouter(prefix="/api/v1/doctors", tags=["doctors"])

Runtime = Annotated[ServiceRuntime, Depends(get_runtime)]



def doctor_out(doc: Document) -> DoctorOut:
    return DoctorOut.model_validate({**doc, "id": doc["_id"]})


def check_search_date(on: date, today: date) -> None:
    """``on`` must lie in ``[today − 1 day, today + SEARCH_HORIZON_DAYS − 1]`` (UTC today;
    a day of slack covers zones ahead of or behind UTC).

    Raises:
        UnprocessableContent: (422) outside that window.
    """
    first = today - timedelta(days=1)
    last = today + timedelta(days=domain.SEARCH_HORIZON_DAYS - 1)
    if not first <= on <= last:
        raise UnprocessableContent(
            f"date must be between {first.isoformat()} and {last.isoformat()}",
            errors=[{"location": "query.date", "message": "outside the search horizon"}])


@router.get("", response_model=Page[DoctorOut], summary="Search doctors")
async def search_doctors(
    runtime: Runtime,
    name: Annotated[str | None, Query(max_length=100,
                                      description="prefix of any name, any case")] = None,
    specialty: Annotated[str | None, Query(max_length=64)] = None,
    hospital_id: Annotated[str | None, Query(max_length=128)] = None,
    department_id: Annotated[str | None, Query(max_length=128)] = None,
    city: Annotated[str | None, Query(max_length=200)] = None,
    language: Annotated[str | None, Query(max_length=35, description="BCP 47, e.g. en")] = None,
    mode: Mode | None = None,
    on: Annotated[date | None, Query(alias="date",
                                     description="a local date with a free slot")] = None,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[DoctorOut]:
    """Verified doctors at verified hospitals, ordered by family name; every filter is
    served by an index (see :func:`store.search_query`)."""
    if on is not None:
        check_search_date(on, datetime.now(UTC).date())
    query, index = store.search_query(name=name, specialty=specialty, hospital=hospital_id,
                                      department=department_id, city=city,
                                      language=language, mode=mode, on=on)
    docs, next_cursor = await store.search(runtime.db, query, index, cursor=cursor, limit=limit)
    return Page[DoctorOut](items=[doctor_out(d) for d in docs], next_cursor=next_cursor)


@router.post("", status_code=201, response_model=DoctorOut, summary="Register my profile")
async def register_doctor(
    body: DoctorCreate, runtime: Runtime, response: Response,
    principal: Principal = require(Permission.DOCTORS_REGISTER_OWN),
) -> DoctorOut:
    """Create the caller's practitioner profile (id = the caller's user id), pending
    licence verification. 409 if it exists; 422 for an unknown hospital or department."""

    async def fn(uow: UnitOfWork) -> Document:
        return await service.register_doctor(uow, body, doctor_id=principal.subject)

    doc = await runtime.transact(fn, actor=principal.actor)
    response.headers["Location"] = f"{router.prefix}/{doc['_id']}"
    return doctor_out(doc)


@router.get("/{doctor_id}", response_model=DoctorOut, summary="One doctor")
async def get_doctor(doctor_id: str, runtime: Runtime, principal: MaybePrincipal) -> DoctorOut:
    """A profile; unverified ones are 404 except to the doctor and licence verifiers."""
    return doctor_out(service.visible_or_404(await store.get_doctor(runtime.db, doctor_id),
                                           principal, doctor_id))


@router.patch("/{doctor_id}", response_model=DoctorOut, summary="Edit my profile")
async def update_doctor(
    doctor_id: str, body: DoctorUpdate, runtime: Runtime,
    principal: Principal = require(Permission.DOCTORS_REGISTER_OWN),
) -> DoctorOut:
    """Replace the given fields of the caller's own profile (403 for anyone else's)."""

    async def fn(uow: UnitOfWork) -> Document:
        return await service.update_doctor(uow, doctor_id, body, principal=principal)

    return doctor_out(await runtime.transact(fn, actor=principal.actor))


@router.post("/{doctor_id}/verify", response_model=DoctorOut, summary="Verify the licence")
async def verify_doctor(
    doctor_id: str, runtime: Runtime,
    principal: Principal = require(Permission.DOCTORS_VERIFY),
) -> DoctorOut:
    """pending → verified (409 otherwise); publishes doctor.verified and schedule_changed."""

    async def fn(uow: UnitOfWork) -> Document:
        return await service.decide_licence(uow, doctor_id, DoctorStatus.VERIFIED,
                                          by=principal.subject)

    return doctor_out(await runtime.transact(fn, actor=principal.actor))


@router.post("/{doctor_id}/reject", response_model=DoctorOut, summary="Reject the licence")
async def reject_doctor(
    doctor_id: str, body: RejectBody, runtime: Runtime,
    principal: Principal = require(Permission.DOCTORS_VERIFY),
) -> DoctorOut:
    """pending → rejected with ``reason`` (409 otherwise)."""

    async def fn(uow: UnitOfWork) -> Document:
        return await service.decide_licence(uow, doctor_id, DoctorStatus.REJECTED,
                                          by=principal.subject, reason=body.reason)

    return doctor_out(await runtime.transact(fn, actor=principal.actor))


@router.get("/{doctor_id}/availability", response_model=AvailabilityOut,
            summary="A doctor's weekly hours and leave")
async def get_availability(doctor_id: str, runtime: Runtime,
                           principal: MaybePrincipal) -> AvailabilityOut:
    """The schedule as set, each location's IANA zone, and leave as aware UTC intervals."""
    doc = service.visible_or_404(await store.get_doctor(runtime.db, doctor_id), principal,
                               doctor_id)
    facts = await store.hospital_facts(runtime.db,
                                       [a["hospital_id"] for a in doc["affiliations"]])
    view = service.shown_availability(schedules.availability_view(doc, facts), principal,
                                      doctor_id)
    return AvailabilityOut.model_validate(view)


@router.put("/{doctor_id}/availability", response_model=AvailabilityOut,
            summary="Replace a doctor's weekly hours and leave")
async def put_availability(
    doctor_id: str, body: AvailabilityIn, runtime: Runtime,
    principal: Principal = require_any(Permission.SCHEDULE_MANAGE_OWN,
                                       Permission.SCHEDULE_MANAGE_ANY),
) -> AvailabilityOut:
    """Replace the schedule (wall-clock hours in each location's zone); publishes
    ``doctor.schedule_changed``. 422 for overlapping hours, a slot length that does not
    divide a window, misaligned breaks, or a location the doctor cannot use."""
    now = datetime.now(UTC)

    async def fn(uow: UnitOfWork) -> Document:
        return await service.set_availability(uow, doctor_id, body, principal=principal, now=now)

    doc = await runtime.transact(fn, actor=principal.actor)
    facts = await store.hospital_facts(runtime.db,
                                       [a["hospital_id"] for a in doc["affiliations"]])
    return AvailabilityOut.model_validate(schedules.availability_view(doc, facts))
