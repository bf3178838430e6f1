"""Tenancy: staff act only at the hospitals (and departments) where they work (issue 16).

Who works where is the hospital service's to say: it publishes ``staff.assigned`` and
``staff.removed`` (:mod:`healthflow.contracts.hospital`). A service that checks where a
caller works keeps those memberships as its own read model (collection
:data:`MEMBERSHIPS`, maintained by :data:`HANDLERS`) and asks it, never the hospital
service: no synchronous call between services.

The read model is one document per membership, ``{_id: membership_id, hospital_id,
department_id | None, user_id, staff_role, removed_at | None}``. Membership ids are
never reused, so the model is order-free and idempotent: an assignment only inserts
(``$setOnInsert``), a removal sets ``removed_at`` (inserting the ended membership when it
arrives first), and a membership with ``removed_at`` never counts again, whatever the
order or the number of deliveries.

Admins and compliance officers are platform-wide (:data:`PLATFORM_ROLES`); everybody else
reaches what their active memberships cover (:class:`Reach`). A membership without a
department covers the whole hospital; one in department ``D`` covers ``D``'s resources
and the hospital's resources that belong to no department.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common.auth import Principal
from healthflow.common.events.consumer import Handlers, Received
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, Indexes
from healthflow.common.permissions import Role
from healthflow.contracts.hospital import StaffAssigned, StaffRemoved

MEMBERSHIPS = "staff_memberships"
"""The read model's collection (in the consuming service's own database)."""

INDEXES: Indexes = {
    MEMBERSHIPS: [IndexModel([("user_id", ASCENDING), ("removed_at", ASCENDING)],
                             name="user_active")],
}

PLATFORM_ROLES = frozenset({Role.ADMIN.value, Role.COMPLIANCE_OFFICER.value})
"""Roles whose ``*_any`` permissions reach every hospital."""


@dataclass(frozen=True)
class Reach:
    """Where a caller may use a ``*_any`` permission.

    ``platform``: everywhere. Else ``hospitals`` (ids where the caller holds a hospital-wide
    membership), ``departments`` (``(hospital_id, department_id)`` of department
    memberships) and ``member_of`` (every hospital with any active membership).
    """

    platform: bool
    hospitals: frozenset[str] = frozenset()
    departments: frozenset[tuple[str, str]] = frozenset()

    @property
    def member_of(self) -> frozenset[str]:
        return self.hospitals | {h for h, _ in self.departments}

    def covers(self, hospital_id: str | None, department_id: str | None = None) -> bool:
        """Whether the caller may act on a resource of ``hospital_id`` (in ``department_id``
        when it belongs to one). A resource of no hospital is platform-only."""
        if self.platform:
            return True
        if hospital_id is None:
            return False
        if hospital_id in self.hospitals:
            return True
        if department_id is None:
            return hospital_id in self.member_of
        return (hospital_id, department_id) in self.departments

    def covers_any(self, hospital_ids: Iterable[str]) -> bool:
        """Whether the caller may act on a resource shared by ``hospital_ids`` (any of them)."""
        return self.platform or any(self.covers(h) for h in hospital_ids)


def is_platform_wide(principal: Principal) -> bool:
    """Admins and compliance officers act platform-wide (their ``*_any`` reach everything)."""
    return any(principal.has_role(role) for role in PLATFORM_ROLES)


async def reach_of(db: AsyncDatabase[Document], principal: Principal) -> Reach:
    """The caller's :class:`Reach`, from the read model of this service's database ``db``."""
    if is_platform_wide(principal):
        return Reach(platform=True)
    hospitals: set[str] = set()
    departments: set[tuple[str, str]] = set()
    async for doc in db[MEMBERSHIPS].find({"user_id": principal.subject, "removed_at": None},
                                          {"hospital_id": 1, "department_id": 1}):
        if doc.get("department_id"):
            departments.add((doc["hospital_id"], doc["department_id"]))
        else:
            hospitals.add(doc["hospital_id"])
    return Reach(platform=False, hospitals=frozenset(hospitals),
                 departments=frozenset(departments))


async def hospitals_where(db: AsyncDatabase[Document], user_id: str, staff_role: str, *,
                          collection: str = MEMBERSHIPS) -> list[str]:
    """The hospitals where ``user_id`` holds an active membership as ``staff_role`` (sorted)."""
    docs = await db[collection].find({"user_id": user_id, "staff_role": staff_role,
                                      "removed_at": None}, {"hospital_id": 1}).to_list()
    return sorted({d["hospital_id"] for d in docs})


def _fields(data: StaffAssigned | StaffRemoved) -> Document:
    return {"hospital_id": data.hospital_id, "department_id": data.department_id,
            "user_id": data.user_id, "staff_role": data.staff_role}


def handlers(collection: str = MEMBERSHIPS) -> Handlers:
    """The consumer's handlers that keep the read model in ``collection``: merge them into a
    service's handlers (and :data:`INDEXES`, or the same index on ``collection``, into its
    indexes)."""

    async def on_staff_assigned(event: Received[StaffAssigned], uow: UnitOfWork) -> None:
        """Record the membership unless it is known already (active, or ended by an earlier
        ``staff.removed``: an ended membership never comes back)."""
        data = event.data
        await uow.db[collection].update_one(
            {"_id": data.membership_id},
            {"$setOnInsert": {**_fields(data), "removed_at": None}},
            upsert=True, session=uow.session)

    async def on_staff_removed(event: Received[StaffRemoved], uow: UnitOfWork) -> None:
        """End the membership for good (recorded ended when the assignment is still to
        come)."""
        data = event.data
        await uow.db[collection].update_one(
            {"_id": data.membership_id},
            {"$set": {**_fields(data), "removed_at": data.removed_at}},
            upsert=True, session=uow.session)

    return {"staff.assigned": on_staff_assigned, "staff.removed": on_staff_removed}


HANDLERS: Handlers = handlers()
"""The handlers of the default collection :data:`MEMBERSHIPS`."""
