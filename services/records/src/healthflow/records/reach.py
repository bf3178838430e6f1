"""Staff reach the records of their hospitals' patients only (issue 16).

``records:read_any`` (nurses) and ``encounters:open_any`` (nurses, receptionists) reach
only the hospitals where the caller holds a staff membership (the read model of
:mod:`healthflow.common.tenancy`, from ``staff.assigned`` / ``staff.removed``); admins and
compliance officers reach every hospital.

A patient belongs to every hospital where they have (had) an appointment or an
encounter: ``patient_hospitals`` ``{_id: patient_id, hospital_ids: [..]}`` grows from the
``hospital_ids`` of appointment events and from walk-ins opened here; encounters' own
``hospital_id`` count too (so encounters recorded before this read model existed are
adopted without a migration). A patient of no hospital is reached by platform roles only.
Staff asking for a patient out of their reach are answered as for one that does not exist.
"""

from __future__ import annotations

from healthflow.common.auth import Principal
from healthflow.common.errors import Forbidden
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document
from healthflow.common.permissions import Permission
from healthflow.common.tenancy import Reach, reach_of

PATIENT_HOSPITALS = "patient_hospitals"
ENCOUNTERS = "encounters"

async def belongs_to(uow: UnitOfWork, patient_id: str, hospital_ids: list[str]) -> None:
    """The patient belongs to ``hospital_ids`` too (idempotent, order-free: only grows)."""
    if hospital_ids:
        await uow.db[PATIENT_HOSPITALS].update_one(
            {"_id": patient_id},
            {"$addToSet": {"hospital_ids": {"$each": sorted(set(hospital_ids))}}},
            upsert=True, session=uow.session)


async def patient_within(uow: UnitOfWork, reach: Reach, patient_id: str) -> bool:
    """Whether ``patient_id`` belongs to one of ``reach``'s hospitals."""
    if reach.platform:
        return True
    hospitals = sorted(reach.member_of)
    if not hospitals:
        return False
    if await uow.db[PATIENT_HOSPITALS].find_one(
            {"_id": patient_id, "hospital_ids": {"$in": hospitals}}, {"_id": 1},
            session=uow.session) is not None:
        return True
    return await uow.db[ENCOUNTERS].find_one(
        {"patient_id": patient_id, "hospital_id": {"$in": hospitals}}, {"_id": 1},
        session=uow.session) is not None


async def reaches_patient(uow: UnitOfWork, principal: Principal, patient_id: str) -> bool:
    """Whether staff ``principal`` reaches ``patient_id`` (see the module)."""
    return await patient_within(uow, await reach_of(uow.db, principal), patient_id)


async def staff_out_of_reach(uow: UnitOfWork, principal: Principal, patient_id: str) -> bool:
    """Whether ``principal``'s only way into ``patient_id``'s record is ``records:read_any``
    and the patient is not one of their hospitals' (answered as a missing resource)."""
    if principal.subject == patient_id or principal.has(Permission.RECORDS_READ_TREATED):
        return False
    return (principal.has(Permission.RECORDS_READ_ANY)
            and not await reaches_patient(uow, principal, patient_id))


async def ensure_opens_at(uow: UnitOfWork, principal: Principal, hospital_id: str | None
                          ) -> None:
    """Staff open walk-ins (``encounters:open_any``) only at a hospital where they work.

    Without a named hospital, the caller must work somewhere (platform roles excepted).

    Raises:
        Forbidden (403): the named hospital is none of the caller's (which hospitals
            exist is public), or the caller works nowhere.
    """
    reach = await reach_of(uow.db, principal)
    if hospital_id is None and (reach.platform or reach.member_of):
        return
    if hospital_id is not None and reach.covers(hospital_id):
        return
    raise Forbidden("staff open encounters only at the hospitals where they hold a staff "
                    "membership" + ("" if hospital_id is None
                                    else f"; {hospital_id} is none of them"))


async def encounter_within(uow: UnitOfWork, principal: Principal, encounter: Document
                           ) -> bool:
    """Whether staff reach ``encounter``: its hospital, else (none named, online) its
    patient's."""
    reach = await reach_of(uow.db, principal)
    hospital_id = encounter.get("hospital_id")
    if hospital_id is not None:
        return reach.covers(hospital_id)
    return await patient_within(uow, reach, encounter["patient_id"])
