"""Collections, indexes, queries and the writes of the hospital service.

Collections (database ``healthflow_hospital``)::

    hospitals   {_id, name, name_norm, sort_key, address{lines, city, district, state,
                 postal_code, country}, city_norm, contacts[{system, value, use}],
                 position{type: "Point", coordinates: [lon, lat]} | None, time_zone,
                 services[code], status, rejection_reason, registered_by, decided_by,
                 created_at, updated_at, decided_at, version}
    departments {_id, hospital_id, name, name_norm, services[code], created_by, created_at}
    staff       {_id, hospital_id, user_id, department_id | None, staff_role,
                 assigned_by, assigned_at}

Every write function takes the :class:`UnitOfWork` of one transaction and
records the events it causes there (transactional outbox). Times are aware UTC.
Listing queries are served by the compound indexes in :data:`INDEXES` (equality
fields first, then ``sort_key``, the pagination key), so none scans a collection.
"""

from __future__ import annotations

import uuid
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from healthflow.common.auth import Principal, ensure_owner
from healthflow.common.errors import Conflict, NotFound, UnprocessableContent
from healthflow.common.events.envelope import EventPayload
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, Indexes, utcnow
from healthflow.common.pagination import keyset_page
from healthflow.common.permissions import Permission
from healthflow.hospital import domain, events
from healthflow.hospital.domain import HospitalStatus
from healthflow.hospital.schemas import DepartmentCreate, HospitalCreate, StaffAssign

HOSPITALS = "hospitals"
DEPARTMENTS = "departments"
STAFF = "staff"

INDEXES: Indexes = {
    HOSPITALS: [
        IndexModel([("status", ASCENDING), ("sort_key", ASCENDING)], name="status_sort"),
        IndexModel(
            [("status", ASCENDING), ("city_norm", ASCENDING), ("sort_key", ASCENDING)],
            name="status_city_sort",
        ),
        IndexModel(
            [("status", ASCENDING), ("services", ASCENDING), ("sort_key", ASCENDING)],
            name="status_service_sort",
        ),
        IndexModel([("registered_by", ASCENDING), ("created_at", ASCENDING)],
                   name="registrant"),
    ],
    DEPARTMENTS: [
        IndexModel([("hospital_id", ASCENDING), ("name_norm", ASCENDING)], unique=True,
                   name="hospital_department_name"),
    ],
    STAFF: [
        IndexModel(
            [("hospital_id", ASCENDING), ("user_id", ASCENDING), ("department_id", ASCENDING)],
            unique=True, name="hospital_user_department",
        ),
        IndexModel([("user_id", ASCENDING)], name="user"),
    ],
}

ALL_STATUSES = [s.value for s in HospitalStatus]


def _snapshot(doc: Document) -> dict[str, Any]:
    return {
        "hospital_id": doc["_id"],
        "version": doc["version"],
        "name": doc["name"],
        "city": doc["address"]["city"],
        "country": doc["address"]["country"],
        "time_zone": doc["time_zone"],
        "status": doc["status"],
        "services": list(doc["services"]),
    }


def _subject(hospital_id: str) -> str:
    return f"hospital/{hospital_id}"


# -- reads ---------------------------------------------------------------------------


async def get_hospital(db: AsyncDatabase[Document], hospital_id: str,
                       session: Any = None) -> Document | None:
    return await db[HOSPITALS].find_one({"_id": hospital_id}, session=session)


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


def listing_query(*, statuses: list[str], city: str | None,
                  service: str | None) -> tuple[dict[str, Any], str]:
    """The filter of a hospital listing and the index that serves it.

    The index is named explicitly (``hint``): the MongoDB-protocol server in use
    falls back to a collection scan when two indexes could serve a query, and a
    hint makes the plan the same on every server. With both ``city`` and
    ``service`` the city index is used (a city holds few hospitals).
    """
    query: dict[str, Any] = {
        "status": statuses[0] if len(statuses) == 1 else {"$in": statuses}
    }
    index = "status_sort"
    if service:
        query["services"] = service.strip().lower()
        index = "status_service_sort"
    if city:
        query["city_norm"] = domain.normalise(city)
        index = "status_city_sort"
    return query, index


async def list_hospitals(
    db: AsyncDatabase[Document], *, statuses: list[str], city: str | None = None,
    service: str | None = None, cursor: str | None = None, limit: int = 50,
) -> tuple[list[Document], str | None]:
    """One page of hospitals ordered by name (then id) and the next cursor (``None`` at the end).

    Raises:
        BadRequest: (400) for a cursor this API did not issue.
    """
    query, index = listing_query(statuses=statuses, city=city, service=service)
    return await keyset_page(db[HOSPITALS], query, sort=["sort_key"], cursor=cursor,
                             limit=limit, hint=index)


async def list_departments(db: AsyncDatabase[Document], hospital_id: str) -> list[Document]:
    return await db[DEPARTMENTS].find({"hospital_id": hospital_id}).sort(
        "name_norm", ASCENDING
    ).to_list(length=1000)


async def list_staff(db: AsyncDatabase[Document], hospital_id: str) -> list[Document]:
    return await db[STAFF].find({"hospital_id": hospital_id}).sort(
        [("user_id", ASCENDING), ("department_id", ASCENDING)]
    ).to_list(length=5000)


# -- writes (inside one transaction) -------------------------------------------------


async def register_hospital(uow: UnitOfWork, data: HospitalCreate, *,
                            registered_by: str) -> Document:
    """Insert a ``pending`` hospital and record ``hospital.registered``."""
    now = utcnow()
    hospital_id = str(uuid.uuid4())
    doc: Document = {
        "_id": hospital_id,
        "name": data.name,
        "name_norm": domain.normalise(data.name),
        "sort_key": domain.sort_key(data.name, hospital_id),
        "address": data.address.model_dump(),
        "city_norm": domain.normalise(data.address.city),
        "contacts": [c.model_dump() for c in data.contacts],
        "position": data.position.model_dump(mode="json") if data.position else None,
        "time_zone": data.time_zone,
        "services": data.services,
        "status": HospitalStatus.PENDING.value,
        "rejection_reason": None,
        "registered_by": registered_by,
        "decided_by": None,
        "created_at": now,
        "updated_at": now,
        "decided_at": None,
        "version": 1,
    }
    await uow.db[HOSPITALS].insert_one(doc, session=uow.session)
    uow.publish(events.HospitalRegistered(**_snapshot(doc), registered_by=registered_by),
                subject=_subject(hospital_id))
    return doc


async def decide(uow: UnitOfWork, hospital_id: str, target: HospitalStatus, *, by: str,
                 reason: str | None = None) -> Document:
    """Apply a verification decision (``verified`` or ``rejected``) and record its event.

    Raises:
        NotFound: (404) no such hospital.
        Conflict: (409) the decision is not allowed from the current status.
    """
    doc = await get_hospital(uow.db, hospital_id, session=uow.session)
    if doc is None:
        raise NotFound(f"no hospital {hospital_id}")
    domain.transition(doc["status"], target)
    now = utcnow()
    fields = domain.decision_fields(target, at=now, by=by, reason=reason)
    result = await uow.db[HOSPITALS].find_one_and_update(
        {"_id": hospital_id, "version": doc["version"]},
        {"$set": fields, "$inc": {"version": 1}},
        session=uow.session, return_document=True,
    )
    if result is None:  # changed between read and write (the transaction normally prevents it)
        raise Conflict(f"hospital {hospital_id} changed concurrently; retry")
    payload: EventPayload
    if target is HospitalStatus.VERIFIED:
        payload = events.HospitalVerified(**_snapshot(result), verified_at=now)
    else:
        payload = events.HospitalRejected(**_snapshot(result), reason=reason or "",
                                          rejected_at=now)
    uow.publish(payload, subject=_subject(hospital_id))
    return result


async def _manageable(uow: UnitOfWork, hospital_id: str, principal: Principal) -> Document:
    """The hospital, when ``principal`` registered it or holds ``hospitals:manage``.

    Raises:
        NotFound: (404) absent, or unverified and not visible to the caller.
        Forbidden: (403) visible but neither registrant nor manager.
        Conflict: (409) the hospital was rejected.
    """
    doc = visible_or_404(await get_hospital(uow.db, hospital_id, session=uow.session),
                         principal, hospital_id)
    ensure_owner(principal, doc["registered_by"], unless=Permission.HOSPITALS_MANAGE)
    domain.ensure_accepts_changes(doc["status"])
    return doc


async def create_department(uow: UnitOfWork, hospital_id: str, data: DepartmentCreate, *,
                            principal: Principal) -> Document:
    """Add a department and record ``department.created``.

    Raises:
        NotFound, Forbidden, Conflict: see :func:`_manageable`; Conflict (409) also when
            the hospital already has a department of that name (case-insensitive).
    """
    await _manageable(uow, hospital_id, principal)
    doc: Document = {
        "_id": str(uuid.uuid4()),
        "hospital_id": hospital_id,
        "name": data.name,
        "name_norm": domain.normalise(data.name),
        "services": data.services,
        "created_by": principal.subject,
        "created_at": utcnow(),
    }
    try:
        await uow.db[DEPARTMENTS].insert_one(doc, session=uow.session)
    except DuplicateKeyError:
        raise Conflict(f"hospital {hospital_id} already has a department named {data.name!r}") \
            from None
    uow.publish(events.DepartmentCreated(hospital_id=hospital_id, department_id=doc["_id"],
                                         name=doc["name"], services=doc["services"]),
                subject=_subject(hospital_id))
    return doc


async def assign_staff(uow: UnitOfWork, hospital_id: str, data: StaffAssign, *,
                       principal: Principal) -> Document:
    """Record a staff membership and ``staff.assigned``.

    Raises:
        NotFound, Forbidden, Conflict: see :func:`_manageable`; Conflict (409) also when the
            user already holds a membership in that department.
        UnprocessableContent: (422) ``department_id`` is not a department of this hospital.
    """
    await _manageable(uow, hospital_id, principal)
    if data.department_id is not None:
        department = await uow.db[DEPARTMENTS].find_one(
            {"_id": data.department_id, "hospital_id": hospital_id}, {"_id": 1},
            session=uow.session,
        )
        if department is None:
            raise UnprocessableContent(
                f"department {data.department_id} is not a department of hospital {hospital_id}",
                errors=[{"location": "body.department_id", "message": "unknown department"}],
            )
    doc: Document = {
        "_id": str(uuid.uuid4()),
        "hospital_id": hospital_id,
        "user_id": data.user_id,
        "department_id": data.department_id,
        "staff_role": data.staff_role.value,
        "assigned_by": principal.subject,
        "assigned_at": utcnow(),
    }
    try:
        await uow.db[STAFF].insert_one(doc, session=uow.session)
    except DuplicateKeyError:
        raise Conflict(f"user {data.user_id} is already a member of that department") from None
    uow.publish(events.StaffAssigned(hospital_id=hospital_id, department_id=data.department_id,
                                     user_id=data.user_id, staff_role=doc["staff_role"],
                                     membership_id=doc["_id"]),
                subject=_subject(hospital_id))
    return doc
