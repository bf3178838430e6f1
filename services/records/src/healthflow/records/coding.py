"""The billing codes of an encounter: ``encounter.coded`` (for the payment service's
insurance claims, FHIR R4 ``Claim.diagnosis`` and ``Claim.procedure``).

Once an encounter is ``finished``, and again whenever one of its diagnoses or
procedures is added, corrected or withdrawn afterwards, :func:`announce` publishes the
full current lists in the same transaction, with the encounter's ``coding_revision``
incremented (so two changes at once meet a write conflict on the encounter and one
runs again after the other: revisions follow the commits).

What counts (codes only; no text, no name ever leaves):

* a diagnosis: a ``current`` ``Condition`` entry of the encounter with an ICD-10 code,
  whose ``verification_status`` is not ``refuted`` or ``entered-in-error`` (FHIR R4
  ``condition-ver-status``); ``display`` is the WHO title stored with the code;
* a procedure: a ``current`` ``Procedure`` entry with a code that was done
  (``completed`` or ``stopped``; not ``not-done``).

Both in the order first recorded, each code once.
"""

from __future__ import annotations

from pymongo import ReturnDocument

from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.contracts.records import CodedDiagnosis, CodedProcedure
from healthflow.records import events, store
from healthflow.records.domain import EncounterStatus, EntryStatus, ResourceType

CODED = (ResourceType.CONDITION, ResourceType.PROCEDURE)
"""The entry types whose changes change an encounter's billing codes."""
NOT_A_DIAGNOSIS = ("refuted", "entered-in-error")


def billing_codes(entries: list[Document]) -> tuple[list[CodedDiagnosis], list[CodedProcedure]]:
    """The diagnoses and procedures of ``entries`` (current versions, oldest first) that
    count for billing (see the module), each code once (pure)."""
    diagnoses: dict[str, CodedDiagnosis] = {}
    procedures: dict[tuple[str, str], CodedProcedure] = {}
    for entry in entries:
        content = entry["content"]
        code = content.get("code")
        if entry["status"] != EntryStatus.CURRENT or not code:
            continue
        if (entry["resource_type"] == ResourceType.CONDITION
                and content["verification_status"] not in NOT_A_DIAGNOSIS):
            diagnoses.setdefault(code["code"], CodedDiagnosis(
                system=code["system"], code=code["code"], display=code["display"]))
        elif (entry["resource_type"] == ResourceType.PROCEDURE
              and content["status"] != "not-done"):
            procedures.setdefault((code["system"], code["code"]), CodedProcedure(
                system=code["system"], code=code["code"]))
    return list(diagnoses.values()), list(procedures.values())


async def announce(uow: UnitOfWork, encounter: Document) -> None:
    """``encounter.coded`` with the encounter's current codes and its next revision, if
    it is finished (otherwise nothing: it is announced when it finishes)."""
    if encounter["status"] != EncounterStatus.FINISHED:
        return
    entries = await uow.db[store.ENTRIES].find(
        {"encounter_id": encounter["_id"], "resource_type": {"$in": list(CODED)}},
        session=uow.session).sort([("recorded_at", 1), ("_id", 1)]).to_list()
    diagnoses, procedures = billing_codes(entries)
    counted = await uow.db[store.ENCOUNTERS].find_one_and_update(
        {"_id": encounter["_id"]}, {"$inc": {"coding_revision": 1}},
        return_document=ReturnDocument.AFTER, session=uow.session)
    assert counted is not None  # read in this transaction
    uow.publish(events.EncounterCoded(
        encounter_id=encounter["_id"], patient_id=encounter["patient_id"],
        appointment_id=encounter["appointment_id"], hospital_id=encounter.get("hospital_id"),
        revision=counted["coding_revision"], diagnoses=diagnoses, procedures=procedures,
        coded_at=utcnow()), subject=f"encounter/{encounter['_id']}",
        patientid=encounter["patient_id"])


async def entry_changed(uow: UnitOfWork, encounter_id: str, resource_type: str) -> None:
    """After a diagnosis or procedure of the encounter was written: :func:`announce`."""
    if resource_type not in CODED:
        return
    encounter = await store.get_encounter(uow.db, encounter_id, session=uow.session)
    if encounter is not None:
        await announce(uow, encounter)
