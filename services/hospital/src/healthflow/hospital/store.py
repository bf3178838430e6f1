"""Collections, indexes and queries of the hospital service (its repository).

Collections (database ``healthflow_hospital``)::

    hospitals   {_id, name, name_norm, sort_key, address{lines, city, district, state,
                 postal_code, country}, city_norm, contacts[{system, value, use}],
                 position{type: "Point", coordinates: [lon, lat]} | None, time_zone,
                 services[code], status, rejection_reason, registered_by, decided_by,
                 created_at, updated_at, decided_at, version}
    departments {_id, hospital_id, name, name_norm, services[code], created_by, created_at}
    staff       {_id, hospital_id, user_id, department_id | None, staff_role,
                 assigned_by, assigned_at}

The use cases that write (and the events they record) are in
:mod:`healthflow.hospital.service`; the functions here only read and write
documents, inside the caller's session when given one. Times are aware UTC.
Listing queries are served by the compound indexes in :data:`INDEXES` (equality
fields first, then ``sort_key``, the pagination key), so none scans a collection.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, Indexes
from healthflow.common.pagination import keyset_page
from healthflow.hospital import domain
from healthflow.hospital.domain import HospitalStatus

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


# -- reads ---------------------------------------------------------------------------


async def get_hospital(db: AsyncDatabase[Document], hospital_id: str,
                       session: Any = None) -> Document | None:
    return await db[HOSPITALS].find_one({"_id": hospital_id}, session=session)


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


# -- writes (inside the caller's transaction) -------------------------------------------


async def insert_hospital(uow: UnitOfWork, doc: Document) -> None:
    await uow.db[HOSPITALS].insert_one(doc, session=uow.session)


async def update_hospital(uow: UnitOfWork, hospital_id: str, version: int,
                          fields: dict[str, Any]) -> Document | None:
    """Set ``fields`` and bump the version if it is still ``version``; the new document,
    or None when it changed meanwhile."""
    result: Document | None = await uow.db[HOSPITALS].find_one_and_update(
        {"_id": hospital_id, "version": version},
        {"$set": fields, "$inc": {"version": 1}},
        session=uow.session, return_document=True,
    )
    return result


async def insert_department(uow: UnitOfWork, doc: Document) -> bool:
    """False when the hospital already has a department of that name (unique index)."""
    try:
        await uow.db[DEPARTMENTS].insert_one(doc, session=uow.session)
    except DuplicateKeyError:
        return False
    return True


async def department_exists(uow: UnitOfWork, hospital_id: str, department_id: str) -> bool:
    found = await uow.db[DEPARTMENTS].find_one(
        {"_id": department_id, "hospital_id": hospital_id}, {"_id": 1}, session=uow.session)
    return found is not None


async def insert_staff(uow: UnitOfWork, doc: Document) -> bool:
    """False when the user already holds a membership in that department (unique index)."""
    try:
        await uow.db[STAFF].insert_one(doc, session=uow.session)
    except DuplicateKeyError:
        return False
    return True


async def delete_staff(uow: UnitOfWork, hospital_id: str, membership_id: str) -> Document | None:
    """Remove membership ``membership_id`` of ``hospital_id``; the removed document, or
    None when there is none (the user may then be assigned again: a new membership)."""
    removed: Document | None = await uow.db[STAFF].find_one_and_delete(
        {"_id": membership_id, "hospital_id": hospital_id}, session=uow.session)
    return removed
