"""Use cases of record entries (``Condition``, ``Observation``, ``MedicationStatement``).

Written by a treating doctor in an encounter that has started; corrected by a new
version (who, when, why) or withdrawn as ``entered-in-error``; never updated in
place or deleted (:func:`healthflow.records.domain.next_version`). Reads follow
:func:`healthflow.records.service.accessor` and are recorded for anyone but the
patient.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from healthflow.common.auth import Principal
from healthflow.common.errors import UnprocessableContent
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.service import ServiceRuntime
from healthflow.records import coding, events, store
from healthflow.records.domain import (
    Authored,
    EncounterNotFound,
    EntryNotFound,
    EntryStatus,
    ResourceType,
    VersionConflict,
    accepts_entries,
    first_version,
    next_version,
)
from healthflow.records.schemas import CorrectionIn, NewEntryIn, WithdrawalIn
from healthflow.records.service import (
    accessor,
    hidden,
    load_encounter,
    record_access,
)


def _content(entry: NewEntryIn | CorrectionIn) -> tuple[ResourceType, Document]:
    """The resource type and the stored content of a validated entry body.

    Observations without ``effective`` are effective when written (filled by the caller).
    """
    return ResourceType(entry.entry.type), entry.entry.content()


async def add_entry(runtime: ServiceRuntime, principal: Principal, encounter_id: str,
                    body: NewEntryIn) -> Document:
    """Write version 1 of an entry in the encounter; ``record.entry_added``.

    Raises:
        EncounterNotFound (404), NotTreating / Forbidden (403),
        EncounterStateConflict (409): the encounter is planned or cancelled.
    """
    resource_type, content = _content(body)

    async def write(uow: UnitOfWork) -> Document:
        encounter = await load_encounter(uow, encounter_id)
        await accessor(uow, principal, encounter["patient_id"], write=True)
        accepts_entries(encounter)
        now = utcnow()
        if resource_type is ResourceType.OBSERVATION and content["effective"] is None:
            content["effective"] = now
        head, version = first_version(str(uuid.uuid4()), encounter, resource_type, content,
                                      Authored(principal.subject, now))
        await store.insert_entry(uow, head, version)
        uow.publish(events.RecordEntryAdded(
            entry_id=head["_id"], encounter_id=encounter_id, patient_id=head["patient_id"],
            resource_type=resource_type.value, recorded_by=principal.subject, recorded_at=now),
            subject=f"entry/{head['_id']}", patientid=head["patient_id"])
        if resource_type in coding.CODED:  # a diagnosis added after the end
            await coding.announce(uow, encounter)
        return head

    return await runtime.transact(write, actor=principal.actor)


Prepare = Callable[[UnitOfWork, Document, Document], Awaitable[None]]
"""Completes and checks a correction's new content against the head, in the transaction."""


async def supersede(runtime: ServiceRuntime, principal: Principal, entry_id: str, *,
                    expected_version: int, reason: str, status: EntryStatus,
                    content: tuple[ResourceType, Document] | None,
                    prepare: Prepare | None = None) -> Document:
    """A correction (``content``) or withdrawal (``None``) of any entry, as a new version.

    Raises: as :func:`correct_entry`, and whatever ``prepare`` raises.
    """
    async def write(uow: UnitOfWork) -> Document:
        head = await store.get_entry(uow.db, entry_id, session=uow.session)
        if head is None:
            raise EntryNotFound(f"no record entry {entry_id}")
        await accessor(uow, principal, head["patient_id"], write=True)
        new_content = None
        if content is not None:
            resource_type, new_content = content
            if resource_type != head["resource_type"]:
                raise UnprocessableContent(f"the entry is a {head['resource_type']}, "
                                           f"not a {resource_type}")
            if resource_type is ResourceType.OBSERVATION and new_content["effective"] is None:
                new_content["effective"] = head["content"]["effective"]
            if prepare is not None:
                await prepare(uow, head, new_content)
        now = utcnow()
        new_head, version = next_version(
            head, expected_version=expected_version, content=new_content, status=status,
            authored=Authored(principal.subject, now, reason))
        await save_successor(uow, head, new_head, version)
        return new_head

    return await runtime.transact(write, actor=principal.actor)


async def save_successor(uow: UnitOfWork, head: Document, new_head: Document,
                         version: Document) -> None:
    """Store a new version of ``head``; ``record.entry_corrected`` (and, for a plan,
    ``careplan.updated``; for a diagnosis or procedure of a finished encounter,
    ``encounter.coded``).

    Raises:
        VersionConflict (409): another version was written meanwhile.
    """
    if not await store.supersede_entry(uow, head["version"], new_head, version):
        raise VersionConflict("the entry changed concurrently; reload it and retry")
    uow.publish(events.RecordEntryCorrected(
        entry_id=head["_id"], encounter_id=head["encounter_id"], patient_id=head["patient_id"],
        resource_type=head["resource_type"], version=new_head["version"],
        status=new_head["status"], corrected_by=new_head["updated_by"],
        corrected_at=new_head["updated_at"]),
        subject=f"entry/{head['_id']}", patientid=head["patient_id"])
    if head["resource_type"] == ResourceType.CARE_PLAN:
        announce_plan(uow, new_head)
    await coding.entry_changed(uow, head["encounter_id"], head["resource_type"])


def announce_plan(uow: UnitOfWork, head: Document) -> None:
    """``careplan.updated`` for the plan's version ``head`` now is (ids, codes, times)."""
    uow.publish(events.CarePlanUpdated(
        care_plan_id=head["_id"], encounter_id=head["encounter_id"],
        patient_id=head["patient_id"], version=head["version"],
        status="entered-in-error" if head["status"] == EntryStatus.ENTERED_IN_ERROR
        else head["content"]["status"],
        updated_by=head["updated_by"], updated_at=head["updated_at"]),
        subject=f"careplan/{head['_id']}", patientid=head["patient_id"])


async def correct_entry(runtime: ServiceRuntime, principal: Principal, entry_id: str,
                        body: CorrectionIn) -> Document:
    """A new version of the entry with new content; ``record.entry_corrected``.

    Raises:
        EntryNotFound (404), NotTreating / Forbidden (403), VersionConflict /
        EntryWithdrawn (409), UnprocessableContent (422): another resource type,
        nothing changed.
    """
    return await supersede(runtime, principal, entry_id, expected_version=body.version,
                            reason=body.reason, status=EntryStatus.CURRENT,
                            content=_content(body))


async def withdraw_entry(runtime: ServiceRuntime, principal: Principal, entry_id: str,
                         body: WithdrawalIn) -> Document:
    """A new version marking the entry ``entered-in-error`` (content kept); the same event.

    Raises: as :func:`correct_entry`.
    """
    return await supersede(runtime, principal, entry_id, expected_version=body.version,
                            reason=body.reason, status=EntryStatus.ENTERED_IN_ERROR,
                            content=None)


async def _readable_entry(uow: UnitOfWork, principal: Principal, entry_id: str, scope: str
                          ) -> Document:
    head = await store.get_entry(uow.db, entry_id, session=uow.session)
    if head is None or await hidden(uow, principal, head["patient_id"]):
        raise EntryNotFound(f"no record entry {entry_id}")
    record_access(uow, principal, head["patient_id"],
                  await accessor(uow, principal, head["patient_id"]), scope)
    return head


async def read_entry(runtime: ServiceRuntime, principal: Principal, entry_id: str) -> Document:
    """The current version of an entry (404 also for a patient asking for another's)."""

    async def read(uow: UnitOfWork) -> Document:
        return await _readable_entry(uow, principal, entry_id, "entries")

    return await runtime.transact(read, actor=principal.actor)


async def entry_history(runtime: ServiceRuntime, principal: Principal, entry_id: str
                        ) -> list[Document]:
    """Every version of an entry, version 1 first."""

    async def read(uow: UnitOfWork) -> list[Document]:
        await _readable_entry(uow, principal, entry_id, "history")
        return await store.versions_of(uow.db, entry_id, session=uow.session)

    return await runtime.transact(read, actor=principal.actor)


async def entries_of_encounter(runtime: ServiceRuntime, principal: Principal,
                               encounter_id: str, *, cursor: str | None, limit: int
                               ) -> tuple[list[Document], str | None]:
    """One page of the current versions of the encounter's entries, oldest first, and
    the next cursor. Raises: as :func:`read_entry`; BadRequest (400) for a foreign cursor."""

    async def read(uow: UnitOfWork) -> tuple[list[Document], str | None]:
        encounter = await load_encounter(uow, encounter_id)
        if await hidden(uow, principal, encounter["patient_id"]):
            raise EncounterNotFound(f"no encounter {encounter_id}")
        record_access(uow, principal, encounter["patient_id"],
                      await accessor(uow, principal, encounter["patient_id"]), "entries")
        return await store.entries_page(uow.db, {"encounter_id": encounter_id},
                                        cursor=cursor, limit=limit, session=uow.session)

    return await runtime.transact(read, actor=principal.actor)
