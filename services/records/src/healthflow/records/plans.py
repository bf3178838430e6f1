"""Use cases of treatment plans (FHIR ``CarePlan``) and procedures (FHIR ``Procedure``).

Both are record entries of an encounter (:mod:`healthflow.records.entries`):
versioned, corrected with a reason, withdrawn as ``entered-in-error``, read by
the same rules (:func:`healthflow.records.service.accessor`) and exported by
``$everything``. On top of that:

* a plan's status follows :data:`healthflow.records.domain.PLAN_TRANSITIONS`
  (draft → active → completed / revoked), each move a new version; every change
  publishes ``careplan.updated``;
* a plan ``addresses`` current ``Condition`` entries of the same patient, and a
  procedure's ``care_plan_id`` names a plan of the same patient that was not
  entered in error (422 ``unknown-reference`` otherwise);
* recording a procedure publishes ``procedure.recorded`` with the encounter's
  appointment, so the booking it was done in is known without a join.
"""

from __future__ import annotations

import uuid

from healthflow.common.auth import Principal
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.service import ServiceRuntime
from healthflow.records import coding, entries, events, store
from healthflow.records.domain import (
    Authored,
    EntryNotFound,
    EntryStatus,
    PlanStatus,
    ResourceType,
    UnknownReference,
    accepts_entries,
    first_version,
    plan_transition,
)
from healthflow.records.schemas import (
    CarePlanCorrectionIn,
    CarePlanIn,
    PlanStatusIn,
    ProcedureContent,
    ProcedureCorrectionIn,
    ProcedureIn,
)
from healthflow.records.service import (
    accessor,
    hidden,
    load_encounter,
    record_access,
)

# ----------------------------------------------------------------------------- references


async def _check_addresses(uow: UnitOfWork, patient_id: str, condition_ids: list[str]) -> None:
    """Raises UnknownReference (422) unless every id is a current Condition of the patient."""
    wanted = set(condition_ids)
    if not wanted:
        return
    found = await store.count_entries(uow, {
        "_id": {"$in": sorted(wanted)}, "patient_id": patient_id,
        "resource_type": ResourceType.CONDITION.value, "status": EntryStatus.CURRENT.value})
    if found != len(wanted):
        raise UnknownReference("addresses names a condition that is not a current diagnosis "
                               "of this patient")


async def _check_plan(uow: UnitOfWork, patient_id: str, care_plan_id: str | None) -> None:
    """Raises UnknownReference (422) unless the plan is one of the patient's, not withdrawn."""
    if care_plan_id is None:
        return
    found = await store.count_entries(uow, {
        "_id": care_plan_id, "patient_id": patient_id,
        "resource_type": ResourceType.CARE_PLAN.value, "status": EntryStatus.CURRENT.value})
    if found != 1:
        raise UnknownReference(f"care_plan_id {care_plan_id} is not a care plan of this patient")


# ----------------------------------------------------------------------------- care plans


async def _insert_first(uow: UnitOfWork, principal: Principal, encounter: Document,
                        resource_type: ResourceType, content: Document) -> Document:
    head, version = first_version(str(uuid.uuid4()), encounter, resource_type, content,
                                  Authored(principal.subject, utcnow()))
    await store.insert_entry(uow, head, version)
    uow.publish(events.RecordEntryAdded(
        entry_id=head["_id"], encounter_id=encounter["_id"], patient_id=head["patient_id"],
        resource_type=resource_type.value, recorded_by=principal.subject,
        recorded_at=head["recorded_at"]),
        subject=f"entry/{head['_id']}", patientid=head["patient_id"])
    return head


async def create_plan(runtime: ServiceRuntime, principal: Principal, body: CarePlanIn
                      ) -> Document:
    """Version 1 of a plan in the encounter, ``draft`` or ``active``; ``careplan.updated``.

    Raises:
        EncounterNotFound (404), NotTreating / Forbidden (403),
        EncounterStateConflict (409): the encounter is planned or cancelled,
        UnknownReference (422): ``addresses`` names another patient's or no condition.
    """

    async def write(uow: UnitOfWork) -> Document:
        encounter = await load_encounter(uow, body.encounter_id)
        await accessor(uow, principal, encounter["patient_id"], write=True)
        accepts_entries(encounter)
        await _check_addresses(uow, encounter["patient_id"], body.addresses)
        head = await _insert_first(uow, principal, encounter, ResourceType.CARE_PLAN,
                                   body.content(body.status))
        entries.announce_plan(uow, head)
        return head

    return await runtime.transact(write, actor=principal.actor)


async def correct_plan(runtime: ServiceRuntime, principal: Principal, plan_id: str,
                       body: CarePlanCorrectionIn) -> Document:
    """A new version of the plan's content (its status unchanged); ``careplan.updated``.

    Raises: as :func:`healthflow.records.entries.correct_entry`, and
    UnknownReference (422) for ``addresses``.
    """

    async def prepare(uow: UnitOfWork, head: Document, content: Document) -> None:
        await _check_addresses(uow, head["patient_id"], content["addresses"])
        content["status"] = head["content"]["status"]

    return await entries.supersede(
        runtime, principal, plan_id, expected_version=body.version, reason=body.reason,
        status=EntryStatus.CURRENT, prepare=prepare,
        content=(ResourceType.CARE_PLAN, body.plan.content("")))


async def move_plan(runtime: ServiceRuntime, principal: Principal, plan_id: str,
                    body: PlanStatusIn) -> Document:
    """The plan's next status as a new version; ``careplan.updated``.

    Raises:
        EntryNotFound (404), NotTreating / Forbidden (403), PlanStateConflict /
        VersionConflict / EntryWithdrawn (409), UnprocessableContent (422): revoking
        without a reason.
    """

    async def write(uow: UnitOfWork) -> Document:
        head = await _of_type(uow, plan_id, ResourceType.CARE_PLAN)
        await accessor(uow, principal, head["patient_id"], write=True)
        new_head, version = plan_transition(
            head, PlanStatus(body.status), expected_version=body.version,
            authored=Authored(principal.subject, utcnow(), body.reason))
        await entries.save_successor(uow, head, new_head, version)
        return new_head

    return await runtime.transact(write, actor=principal.actor)


# ----------------------------------------------------------------------------- procedures


def _procedure_content(body: ProcedureContent, principal: Principal) -> Document:
    content = body.model_dump(exclude={"encounter_id"})
    content["performer_id"] = content["performer_id"] or principal.subject
    if content["status"] != "not-done" and content["performed"] is None:
        content["performed"] = utcnow()
    return content


async def record_procedure(runtime: ServiceRuntime, principal: Principal, body: ProcedureIn
                           ) -> Document:
    """Version 1 of a procedure in the encounter; ``procedure.recorded``.

    Raises:
        EncounterNotFound (404), NotTreating / Forbidden (403),
        EncounterStateConflict (409), UnknownReference (422): ``care_plan_id``.
    """
    content = _procedure_content(body, principal)

    async def write(uow: UnitOfWork) -> Document:
        encounter = await load_encounter(uow, body.encounter_id)
        await accessor(uow, principal, encounter["patient_id"], write=True)
        accepts_entries(encounter)
        await _check_plan(uow, encounter["patient_id"], body.care_plan_id)
        head = await _insert_first(uow, principal, encounter, ResourceType.PROCEDURE, content)
        uow.publish(events.ProcedureRecorded(
            procedure_id=head["_id"], encounter_id=encounter["_id"],
            appointment_id=encounter["appointment_id"], patient_id=head["patient_id"],
            care_plan_id=body.care_plan_id, performer_id=content["performer_id"],
            status=content["status"], performed_at=content["performed"],
            recorded_by=principal.subject, recorded_at=head["recorded_at"]),
            subject=f"procedure/{head['_id']}", patientid=head["patient_id"])
        await coding.announce(uow, encounter)  # recorded after the end: codes changed
        return head

    return await runtime.transact(write, actor=principal.actor)


async def correct_procedure(runtime: ServiceRuntime, principal: Principal, procedure_id: str,
                            body: ProcedureCorrectionIn) -> Document:
    """A new version of the procedure (``record.entry_corrected``).

    Without ``performer_id`` the performer recorded so far is kept (the correcting user
    is not the one who performed it); likewise ``performed``.

    Raises: as :func:`healthflow.records.entries.correct_entry`, and
    UnknownReference (422) for ``care_plan_id``.
    """
    content = _procedure_content(body.procedure, principal)

    async def prepare(uow: UnitOfWork, head: Document, new: Document) -> None:
        await _check_plan(uow, head["patient_id"], new["care_plan_id"])
        if body.procedure.performer_id is None:
            new["performer_id"] = head["content"].get("performer_id") or new["performer_id"]
        if body.procedure.performed is None and new["performed"] is not None:
            new["performed"] = head["content"]["performed"] or new["performed"]

    return await entries.supersede(
        runtime, principal, procedure_id, expected_version=body.version, reason=body.reason,
        status=EntryStatus.CURRENT, prepare=prepare,
        content=(ResourceType.PROCEDURE, content))


# ----------------------------------------------------------------------------- reads


async def _of_type(uow: UnitOfWork, entry_id: str, resource_type: ResourceType) -> Document:
    head = await store.get_entry(uow.db, entry_id, session=uow.session)
    if head is None or head["resource_type"] != resource_type:
        raise EntryNotFound(f"no {resource_type} {entry_id}")
    return head


async def read_one(runtime: ServiceRuntime, principal: Principal, entry_id: str,
                   resource_type: ResourceType) -> Document:
    """The current version of a plan or procedure (404 also for another patient's)."""

    async def read(uow: UnitOfWork) -> Document:
        head = await _of_type(uow, entry_id, resource_type)
        if await hidden(uow, principal, head["patient_id"]):
            raise EntryNotFound(f"no {resource_type} {entry_id}")
        record_access(uow, principal, head["patient_id"],
                      await accessor(uow, principal, head["patient_id"]), "entries")
        return head

    return await runtime.transact(read, actor=principal.actor)


async def list_of_patient(runtime: ServiceRuntime, principal: Principal, patient_id: str,
                          resource_type: ResourceType, *, cursor: str | None, limit: int
                          ) -> tuple[list[Document], str | None]:
    """One page of the patient's plans or procedures, oldest first, and the next cursor.

    Raises:
        NotTreating / Forbidden (403); BadRequest (400): a cursor this API did not issue.
    """

    async def read(uow: UnitOfWork) -> tuple[list[Document], str | None]:
        record_access(uow, principal, patient_id,
                      await accessor(uow, principal, patient_id), "entries")
        return await store.entries_page(
            uow.db, {"patient_id": patient_id, "resource_type": resource_type.value},
            cursor=cursor, limit=limit, session=uow.session)

    return await runtime.transact(read, actor=principal.actor)
