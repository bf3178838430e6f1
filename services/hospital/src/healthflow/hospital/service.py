"""Use cases of the hospital service: who may do what, one transaction each, its events.

Routes (:mod:`healthflow.hospital.api`) only parse, call these and shape the
answer; the repository (:mod:`healthflow.hospital.store`) only reads and writes
documents; the rules are in :mod:`healthflow.hospital.domain`. Times are aware UTC.
"""

from __future__ import annotations

import uuid
from typing import Any

from healthflow.common.auth import Principal, ensure_owner
from healthflow.common.errors import Conflict, Forbidden, NotFound, UnprocessableContent
from healthflow.common.events.envelope import EventPayload
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Permission
from healthflow.common.service import ServiceRuntime
from healthflow.hospital import domain, events, store
from healthflow.hospital.domain import HospitalStatus
from healthflow.hospital.schemas import DepartmentCreate, HospitalCreate, StaffAssign


def shown(doc: Document, principal: Principal | None) -> Document:
    """``doc`` without ``registered_by`` unless ``principal`` is the registrant or holds
    ``hospitals:verify`` or ``hospitals:manage``: a public profile names no user."""
    if principal is not None and (principal.subject == doc.get("registered_by")
                                  or principal.has(Permission.HOSPITALS_VERIFY)
                                  or principal.has(Permission.HOSPITALS_MANAGE)):
        return doc
    return {k: v for k, v in doc.items() if k != "registered_by"}


def _snapshot(doc: Document) -> dict[str, Any]:
    """The fields every ``hospital.*`` event carries (the GeoJSON position as
    ``latitude``/``longitude``, ``None`` without one)."""
    longitude, latitude = (doc.get("position") or {}).get("coordinates") or (None, None)
    return {
        "hospital_id": doc["_id"],
        "version": doc["version"],
        "name": doc["name"],
        "city": doc["address"]["city"],
        "country": doc["address"]["country"],
        "time_zone": doc["time_zone"],
        "status": doc["status"],
        "services": list(doc["services"]),
        "latitude": latitude,
        "longitude": longitude,
    }


def _subject(hospital_id: str) -> str:
    return f"hospital/{hospital_id}"


def visible_or_404(doc: Document | None, principal: Principal | None,
                   hospital_id: str) -> Document:
    """``doc`` when the caller may see it; unverified hospitals are hidden from others.

    Raises:
        NotFound: (404) when absent or not visible (existence is not revealed).
    """
    if doc is None or not domain.can_view(
        doc["status"], doc["registered_by"],
        subject=principal.subject if principal else None,
        is_verifier=bool(principal and principal.has(Permission.HOSPITALS_VERIFY)),
    ):
        raise NotFound(f"no hospital {hospital_id}")
    return doc


# -- reads ---------------------------------------------------------------------------


async def list_hospitals(runtime: ServiceRuntime, principal: Principal | None, *,
                         status: HospitalStatus | str, city: str | None, service: str | None,
                         cursor: str | None, limit: int) -> tuple[list[Document], str | None]:
    """One page of hospitals ordered by name, and the next cursor.

    Raises:
        Forbidden: (403) ``status`` other than ``verified`` without ``hospitals:verify``.
        BadRequest: (400) a cursor this API did not issue.
    """
    if status != HospitalStatus.VERIFIED and not (
        principal and principal.has(Permission.HOSPITALS_VERIFY)
    ):
        raise Forbidden("listing hospitals that are not verified requires hospitals:verify")
    statuses = store.ALL_STATUSES if status == "all" else [str(status)]
    return await store.list_hospitals(runtime.db, statuses=statuses, city=city,
                                      service=service, cursor=cursor, limit=limit)


async def get(runtime: ServiceRuntime, principal: Principal | None,
              hospital_id: str) -> Document:
    """A hospital the caller may see (404 otherwise, see :func:`visible_or_404`)."""
    return visible_or_404(await store.get_hospital(runtime.db, hospital_id), principal,
                          hospital_id)


async def departments(runtime: ServiceRuntime, principal: Principal | None,
                      hospital_id: str) -> list[Document]:
    """Departments ordered by name; visibility as for the hospital itself."""
    await get(runtime, principal, hospital_id)
    return await store.list_departments(runtime.db, hospital_id)


async def staff(runtime: ServiceRuntime, principal: Principal, hospital_id: str) -> list[Document]:
    """Who works where (the registrant, or ``hospitals:manage``; 403 otherwise)."""
    doc = await get(runtime, principal, hospital_id)
    ensure_owner(principal, doc["registered_by"], unless=Permission.HOSPITALS_MANAGE)
    return await store.list_staff(runtime.db, hospital_id)


# -- writes: one transaction each, with the events they cause ---------------------------


async def register(runtime: ServiceRuntime, principal: Principal,
                   data: HospitalCreate) -> Document:
    """Insert a ``pending`` hospital registered by the caller; ``hospital.registered``."""

    async def write(uow: UnitOfWork) -> Document:
        now = utcnow()
        hospital_id = str(uuid.uuid4())
        doc: Document = {
            "_id": hospital_id, "name": data.name, "name_norm": domain.normalise(data.name),
            "sort_key": domain.sort_key(data.name, hospital_id),
            "address": data.address.model_dump(),
            "city_norm": domain.normalise(data.address.city),
            "contacts": [c.model_dump() for c in data.contacts],
            "position": data.position.model_dump(mode="json") if data.position else None,
            "time_zone": data.time_zone, "services": data.services,
            "status": HospitalStatus.PENDING.value, "rejection_reason": None,
            "registered_by": principal.subject, "decided_by": None, "created_at": now,
            "updated_at": now, "decided_at": None, "version": 1,
        }
        await store.insert_hospital(uow, doc)
        uow.publish(events.HospitalRegistered(**_snapshot(doc), registered_by=principal.subject),
                    subject=_subject(hospital_id))
        return doc

    return await runtime.transact(write, actor=principal.actor)


async def decide(runtime: ServiceRuntime, principal: Principal, hospital_id: str,
                 target: HospitalStatus, *, reason: str | None = None) -> Document:
    """An admin's verification decision (``verified`` or ``rejected`` with ``reason``);
    ``hospital.verified`` or ``hospital.rejected``.

    Raises:
        NotFound: (404) no such hospital.
        Conflict: (409) the decision is not allowed from the current status.
    """

    async def write(uow: UnitOfWork) -> Document:
        doc = await store.get_hospital(uow.db, hospital_id, session=uow.session)
        if doc is None:
            raise NotFound(f"no hospital {hospital_id}")
        domain.transition(doc["status"], target)
        now = utcnow()
        fields = domain.decision_fields(target, at=now, by=principal.subject, reason=reason)
        result = await store.update_hospital(uow, hospital_id, doc["version"], fields)
        if result is None:  # changed between read and write (the transaction prevents it)
            raise Conflict(f"hospital {hospital_id} changed concurrently; retry")
        payload: EventPayload
        if target is HospitalStatus.VERIFIED:
            payload = events.HospitalVerified(**_snapshot(result), verified_at=now)
        else:
            payload = events.HospitalRejected(**_snapshot(result), reason=reason or "",
                                              rejected_at=now)
        uow.publish(payload, subject=_subject(hospital_id))
        return result

    return await runtime.transact(write, actor=principal.actor)


async def _manageable(uow: UnitOfWork, hospital_id: str, principal: Principal) -> Document:
    """The hospital, when ``principal`` registered it or holds ``hospitals:manage``.

    Raises:
        NotFound: (404) absent, or unverified and not visible to the caller.
        Forbidden: (403) visible but neither registrant nor manager.
        Conflict: (409) the hospital was rejected.
    """
    doc = visible_or_404(await store.get_hospital(uow.db, hospital_id, session=uow.session),
                         principal, hospital_id)
    ensure_owner(principal, doc["registered_by"], unless=Permission.HOSPITALS_MANAGE)
    domain.ensure_accepts_changes(doc["status"])
    return doc


async def create_department(runtime: ServiceRuntime, principal: Principal, hospital_id: str,
                            data: DepartmentCreate) -> Document:
    """Add a department; ``department.created``.

    Raises:
        NotFound, Forbidden, Conflict: see :func:`_manageable`; Conflict (409) also when
            the hospital already has a department of that name (case-insensitive).
    """

    async def write(uow: UnitOfWork) -> Document:
        await _manageable(uow, hospital_id, principal)
        doc: Document = {
            "_id": str(uuid.uuid4()), "hospital_id": hospital_id, "name": data.name,
            "name_norm": domain.normalise(data.name), "services": data.services,
            "created_by": principal.subject, "created_at": utcnow(),
        }
        if not await store.insert_department(uow, doc):
            raise Conflict(f"hospital {hospital_id} already has a department named "
                           f"{data.name!r}")
        uow.publish(events.DepartmentCreated(hospital_id=hospital_id, department_id=doc["_id"],
                                             name=doc["name"], services=doc["services"]),
                    subject=_subject(hospital_id))
        return doc

    return await runtime.transact(write, actor=principal.actor)


async def assign_staff(runtime: ServiceRuntime, principal: Principal, hospital_id: str,
                       data: StaffAssign) -> Document:
    """Record a staff membership; ``staff.assigned``.

    Raises:
        NotFound, Forbidden, Conflict: see :func:`_manageable`; Conflict (409) also when the
            user already holds a membership in that department.
        UnprocessableContent: (422) ``department_id`` is not a department of this hospital.
    """

    async def write(uow: UnitOfWork) -> Document:
        await _manageable(uow, hospital_id, principal)
        if data.department_id is not None and not await store.department_exists(
                uow, hospital_id, data.department_id):
            raise UnprocessableContent(
                f"department {data.department_id} is not a department of hospital {hospital_id}",
                errors=[{"location": "body.department_id", "message": "unknown department"}])
        doc: Document = {
            "_id": str(uuid.uuid4()), "hospital_id": hospital_id, "user_id": data.user_id,
            "department_id": data.department_id, "staff_role": data.staff_role.value,
            "assigned_by": principal.subject, "assigned_at": utcnow(),
        }
        if not await store.insert_staff(uow, doc):
            raise Conflict(f"user {data.user_id} is already a member of that department")
        uow.publish(events.StaffAssigned(
            hospital_id=hospital_id, department_id=data.department_id, user_id=data.user_id,
            staff_role=doc["staff_role"], membership_id=doc["_id"]),
            subject=_subject(hospital_id))
        return doc

    return await runtime.transact(write, actor=principal.actor)


async def remove_staff(runtime: ServiceRuntime, principal: Principal, hospital_id: str,
                       membership_id: str) -> Document:
    """End a staff membership; ``staff.removed`` (the services that check where staff work
    drop it from their read models).

    Raises:
        NotFound, Forbidden: see :func:`_manageable`; NotFound (404) also when the hospital
            has no membership ``membership_id``.
    """

    async def write(uow: UnitOfWork) -> Document:
        doc = visible_or_404(await store.get_hospital(uow.db, hospital_id, session=uow.session),
                             principal, hospital_id)
        ensure_owner(principal, doc["registered_by"], unless=Permission.HOSPITALS_MANAGE)
        removed = await store.delete_staff(uow, hospital_id, membership_id)
        if removed is None:
            raise NotFound(f"hospital {hospital_id} has no staff membership {membership_id}")
        uow.publish(events.StaffRemoved(
            hospital_id=hospital_id, department_id=removed["department_id"],
            user_id=removed["user_id"], staff_role=removed["staff_role"],
            membership_id=membership_id, removed_at=utcnow()),
            subject=_subject(hospital_id))
        return removed

    return await runtime.transact(write, actor=principal.actor)
