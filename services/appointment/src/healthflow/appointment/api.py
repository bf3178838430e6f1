"""HTTP routes: ``/api/v1/slots`` and ``/api/v1/appointments`` (thin; rules live elsewhere).

Every route states its permission; ownership (patient, treating doctor, staff)
is decided by :func:`healthflow.appointment.service.capacity`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from healthflow.appointment import service
from healthflow.appointment.access import listing_scope, staff_reach
from healthflow.appointment.availability import zone
from healthflow.appointment.domain import Status
from healthflow.appointment.schemas import (
    AWARE_HINT,
    AppointmentOut,
    BookingRequest,
    CancelRequest,
    RescheduleRequest,
    SlotOut,
    SlotsOut,
)
from healthflow.appointment.store import get_schedule, get_schedule_by_user, list_appointments
from healthflow.common.auth import Authenticated, Principal, require_any
from healthflow.common.errors import UnprocessableContent
from healthflow.common.http import get_runtime
from healthflow.common.pagination import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Page,
)
from healthflow.common.permissions import Permission as P
from healthflow.common.service import ServiceRuntime

Runtime = Annotated[ServiceRuntime, Depends(get_runtime)]

slots_router = APIRouter(prefix="/api/v1/slots", tags=["slots"])
router = APIRouter(prefix="/api/v1/appointments", tags=["appointments"])

_SPACED_OFFSET = re.compile(r" (\d{2}:?\d{2})$")


def parse_instant(name: str, raw: str) -> datetime:
    """An aware datetime from an RFC 3339 query value.

    A ``+`` that arrived as a space (an unencoded query string) is restored.

    Raises:
        UnprocessableContent: (422) unparseable, or without an offset.
    """
    text = _SPACED_OFFSET.sub(r"+\1", raw.strip())
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UnprocessableContent(f"{name}: {raw!r} is not an RFC 3339 date-time") from None
    if value.tzinfo is None:
        raise UnprocessableContent(f"{name}: the time has no time-zone offset; {AWARE_HINT}")
    return value.astimezone(UTC)


@slots_router.get("", summary="Free slots of a verified doctor (FHIR Slot, status free)")
async def get_slots(
    runtime: Runtime,
    principal: Authenticated,
    doctor_id: Annotated[str, Query(min_length=1, max_length=64)],
    from_: Annotated[str, Query(alias="from", description="RFC 3339 with offset")],
    to: Annotated[str, Query(description="RFC 3339 with offset; at most 31 days after from")],
) -> SlotsOut:
    """Free slots starting in ``[from, to)``.

    422 for a missing offset, ``to <= from`` or a range over the configured
    maximum (31 days); 404 unknown doctor; 409 doctor not verified.
    """
    start, end = parse_instant("from", from_), parse_instant("to", to)
    max_days = service.settings_of(runtime).max_slot_range_days
    if end <= start:
        raise UnprocessableContent("to must be after from")
    if end - start > timedelta(days=max_days):
        raise UnprocessableContent(f"the range from–to may span at most {max_days} days")
    availability, slots = await service.list_free_slots(runtime, doctor_id, start, end)
    return SlotsOut(
        doctor_id=doctor_id,
        slot_minutes=availability.slot_minutes,
        items=[SlotOut(start=s.start, end=s.end, mode=s.mode, location_id=s.location_id,
                       timezone=s.timezone) for s in slots],
    )


@router.post("", status_code=201, summary="Book a slot (patient for self, staff for a patient)")
async def book(
    runtime: Runtime,
    body: BookingRequest,
    principal: Principal = require_any(P.APPOINTMENTS_BOOK_OWN, P.APPOINTMENTS_BOOK_ANY),
) -> AppointmentOut:
    """201 with the appointment; 409 ``slot-already-booked`` when the slot is taken."""
    return AppointmentOut.from_document(await service.book(runtime, principal, body))


@router.get("", summary="List appointments: own (patient, doctor) or any (staff)")
async def list_(
    runtime: Runtime,
    principal: Principal = require_any(P.APPOINTMENTS_READ_OWN, P.APPOINTMENTS_READ_ANY),
    date_: Annotated[date | None, Query(alias="date",
                                        description="a local day (YYYY-MM-DD)")] = None,
    doctor_id: str | None = None,
    patient_id: str | None = None,
    status: Status | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[AppointmentOut]:
    """Patients see their own, doctors the ones they give (``date`` in their time
    zone), staff with ``appointments:read_any`` those of the hospitals where they work
    (admins every one; ``date`` in the filtered doctor's time zone, else UTC). Ordered
    by start."""
    reach = await staff_reach(runtime.db, principal)
    query: dict[str, Any] = listing_scope(principal, reach)
    tz_name = "UTC"
    if reach is None or not principal.has(P.APPOINTMENTS_READ_ANY):
        own = await get_schedule_by_user(runtime.db, principal.subject)
        if own is not None:
            tz_name = own.timezone
    if doctor_id:
        query["doctor_id"] = doctor_id
        schedule = await get_schedule(runtime.db, doctor_id)
        if schedule is not None:
            tz_name = schedule.timezone
    if patient_id:
        query["patient_id"] = patient_id
    if status:
        query["status"] = status.value
    if date_ is not None:
        tz = zone(tz_name)
        day_start = datetime.combine(date_, time(0), tzinfo=tz).astimezone(UTC)
        day_end = datetime.combine(date_ + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
        query["start"] = {"$gte": day_start, "$lt": day_end}
    docs, next_cursor = await list_appointments(runtime.db, query, cursor=cursor, limit=limit)
    items = [AppointmentOut.from_document(d) for d in docs]
    return Page[AppointmentOut](items=items, next_cursor=next_cursor)


@router.get("/{appointment_id}", summary="One appointment (patient, its doctor, staff)")
async def get_one(
    runtime: Runtime,
    appointment_id: str,
    principal: Principal = require_any(P.APPOINTMENTS_READ_OWN, P.APPOINTMENTS_READ_ANY),
) -> AppointmentOut:
    return AppointmentOut.from_document(await service.get(runtime, principal, appointment_id))


_CHANGERS = (P.APPOINTMENTS_BOOK_OWN, P.APPOINTMENTS_MANAGE_OWN, P.APPOINTMENTS_MANAGE_ANY)
_MANAGERS = (P.APPOINTMENTS_MANAGE_OWN, P.APPOINTMENTS_MANAGE_ANY)


@router.post("/{appointment_id}/cancel", summary="Cancel (patient within policy, doctor, staff)")
async def cancel(
    runtime: Runtime, appointment_id: str, body: CancelRequest,
    principal: Principal = require_any(*_CHANGERS),
) -> AppointmentOut:
    """409 ``change-window-closed`` for patients within the window (default 2 h)."""
    return AppointmentOut.from_document(
        await service.cancel(runtime, principal, appointment_id, body))


@router.post("/{appointment_id}/reschedule", summary="Move to another free slot (keeps history)")
async def reschedule(
    runtime: Runtime, appointment_id: str, body: RescheduleRequest,
    principal: Principal = require_any(*_CHANGERS),
) -> AppointmentOut:
    return AppointmentOut.from_document(
        await service.reschedule(runtime, principal, appointment_id, body))


async def _transition(runtime: ServiceRuntime, principal: Principal, appointment_id: str,
                      target: Status) -> AppointmentOut:
    return AppointmentOut.from_document(
        await service.change_status(runtime, principal, appointment_id, target))


@router.post("/{appointment_id}/confirm", summary="Confirm (the doctor or staff)")
async def confirm(runtime: Runtime, appointment_id: str,
                  principal: Principal = require_any(*_MANAGERS)) -> AppointmentOut:
    return await _transition(runtime, principal, appointment_id, Status.CONFIRMED)


@router.post("/{appointment_id}/check-in", summary="Check the patient in (the doctor or staff)")
async def check_in(runtime: Runtime, appointment_id: str,
                   principal: Principal = require_any(*_MANAGERS)) -> AppointmentOut:
    return await _transition(runtime, principal, appointment_id, Status.CHECKED_IN)


@router.post("/{appointment_id}/complete", summary="Mark completed (the doctor or staff)")
async def complete(runtime: Runtime, appointment_id: str,
                   principal: Principal = require_any(*_MANAGERS)) -> AppointmentOut:
    return await _transition(runtime, principal, appointment_id, Status.COMPLETED)


@router.post("/{appointment_id}/no-show", summary="Mark no-show (the doctor or staff)")
async def no_show(runtime: Runtime, appointment_id: str,
                  principal: Principal = require_any(*_MANAGERS)) -> AppointmentOut:
    return await _transition(runtime, principal, appointment_id, Status.NO_SHOW)
