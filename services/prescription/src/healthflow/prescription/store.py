"""Collections, indexes and queries of the prescription service (the repository).

Collections (database ``healthflow_prescription``), times aware UTC::

    prescriptions  {_id, patient_id, encounter_id, prescriber_id, status,
                    medication: {text, code, system, ingredient, drug_class, key},
                    dosage: {dose: {value, unit}, route: {code, system, display, name},
                             frequency: {count, period, period_unit},
                             duration: {value, unit} | None, instructions},
                    dispense_request: {quantity: {value, unit}, repeats},
                    allowed_total, dispensed_total, dispenses: [{id, by, at, quantity}],
                    override: {reason, conflicts, by, at} | None, status_reason,
                    documents: [{sha256, signature, kid, signed_at}] (printed PDFs),
                    created_at, issued_at, updated_at, version}
    encounters     read model from ``encounter.started``/``.finished``:
                    {_id: encounter_id, patient_id, practitioner_id, status,
                     started_at, finished_at, hospital_id (when the event names one)}
    hospitals      read model from ``hospital.*``: {_id: hospital_id, version, name, city,
                    country, status}; an event older than the kept ``version`` changes nothing
    people         names from ``user.registered``: {_id: user_id, full_name}
    signing_keys   {_id: "current", private_key: envelope of the 32-byte Ed25519 seed
                    (healthflow.common.keywrap, bound to ``prescription`` and
                    ``signing_keys/current``), created_at} when no key is configured;
                    an older release's clear ``seed`` (base64url) is wrapped at start
    public_keys    every signing key ever used, public part only: {_id: kid, jwk, added_at}
                   (the published key set; a rotated-out key keeps verifying)
    allergies      read model from ``patient.allergies_changed``:
                    {_id: patient_id, profile_version, allergies: [{allergy_id, substance,
                     code, system, criticality, clinical_status}], changed_at}
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common import careteam
from healthflow.common.care import in_care
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, Indexes, utcnow
from healthflow.common.pagination import keyset_page

PRESCRIPTIONS = "prescriptions"
ENCOUNTERS = "encounters"
ALLERGIES = "allergies"
PEOPLE = "people"
HOSPITALS = "hospitals"
SIGNING_KEYS = "signing_keys"
SIGNING_KEY_ID = "current"
PUBLIC_KEYS = "public_keys"

INDEXES: Indexes = {
    PRESCRIPTIONS: [
        IndexModel([("patient_id", ASCENDING), ("created_at", ASCENDING)], name="patient"),
        IndexModel([("patient_id", ASCENDING), ("medication.key", ASCENDING),
                    ("status", ASCENDING)], name="same_drug"),
    ],
    ENCOUNTERS: [IndexModel([("practitioner_id", ASCENDING), ("patient_id", ASCENDING)],
                            name="care")],
}

Db = AsyncDatabase[Document]


# ----------------------------------------------------------------------------- prescriptions


async def get(db: Db, prescription_id: str, session: Any = None) -> Document | None:
    return await db[PRESCRIPTIONS].find_one({"_id": prescription_id}, session=session)


async def insert(uow: UnitOfWork, doc: Document) -> None:
    await uow.db[PRESCRIPTIONS].insert_one(doc, session=uow.session)


async def update(uow: UnitOfWork, doc: Document, fields: Document,
                 push: Document | None = None) -> bool:
    """``$set`` ``fields`` (and ``$push`` ``push``) if ``doc`` is still at its version."""
    change: Document = {"$set": fields, "$inc": {"version": 1}}
    if push:
        change["$push"] = push
    result = await uow.db[PRESCRIPTIONS].update_one(
        {"_id": doc["_id"], "version": doc["version"]}, change, session=uow.session)
    return result.matched_count == 1


async def active_same_drug(uow: UnitOfWork, patient_id: str, key: str,
                           exclude: str | None = None) -> list[Document]:
    """The patient's ``active`` prescriptions of the drug ``key`` (``medication.key``)."""
    query: Document = {"patient_id": patient_id, "medication.key": key, "status": "active"}
    if exclude:
        query["_id"] = {"$ne": exclude}
    return await uow.db[PRESCRIPTIONS].find(query, session=uow.session).to_list()


async def of_patient(uow: UnitOfWork, patient_id: str, statuses: list[str] | None, *,
                     cursor: str | None, limit: int) -> tuple[list[Document], str | None]:
    """One page of the patient's prescriptions (only ``statuses`` if given), oldest
    first, and the next cursor (``None`` on the last page).

    Raises:
        BadRequest (400): a cursor this API did not issue.
    """
    query: Document = {"patient_id": patient_id}
    if statuses is not None:
        query["status"] = {"$in": statuses}
    return await keyset_page(uow.db[PRESCRIPTIONS], query, sort=["created_at", "_id"],
                             cursor=cursor, limit=limit, hint="patient", session=uow.session)


# ----------------------------------------------------------------------------- read models


async def get_encounter(uow: UnitOfWork, encounter_id: str) -> Document | None:
    return await uow.db[ENCOUNTERS].find_one({"_id": encounter_id}, session=uow.session)


async def put_encounter(uow: UnitOfWork, encounter_id: str, fields: Document,
                        on_insert: Document) -> None:
    await uow.db[ENCOUNTERS].update_one(
        {"_id": encounter_id}, {"$set": fields, "$setOnInsert": on_insert}, upsert=True,
        session=uow.session)


async def put_hospital(uow: UnitOfWork, hospital_id: str, version: int, facts: Document
                       ) -> None:
    """Keep ``facts`` of the hospital at ``version`` unless a newer version is kept."""
    newer = await uow.db[HOSPITALS].find_one({"_id": hospital_id, "version": {"$gte": version}},
                                             {"_id": 1}, session=uow.session)
    if newer is None:
        await uow.db[HOSPITALS].update_one({"_id": hospital_id},
                                           {"$set": {**facts, "version": version}},
                                           upsert=True, session=uow.session)


async def get_hospital(uow: UnitOfWork, hospital_id: str) -> Document | None:
    return await uow.db[HOSPITALS].find_one({"_id": hospital_id}, session=uow.session)


async def treats(uow: UnitOfWork, doctor_user_id: str, patient_id: str) -> bool:
    """Whether the doctor is in a care relationship with the patient now: an encounter
    they conduct, or one that finished less than ``care_after_encounter_days`` ago (the
    records service's rule, :func:`healthflow.common.care.in_care`; an encounter left
    open lasts that period from its start)."""
    now, after = utcnow(), careteam.care_period(uow)
    async for encounter in uow.db[ENCOUNTERS].find(
            {"practitioner_id": doctor_user_id, "patient_id": patient_id},
            {"status": 1, "started_at": 1, "finished_at": 1}, session=uow.session):
        started = encounter.get("started_at") or now
        finished = encounter.get("finished_at") if encounter.get("status") == "finished" \
            else None
        relationship = careteam.new_relationship(
            encounter["_id"], doctor_user_id, patient_id, started,
            encounter_id=encounter["_id"]) | {"encounter_finished_at": finished}
        if in_care(relationship, now, after):
            return True
    return False


async def allergies_of(uow: UnitOfWork, patient_id: str) -> Document | None:
    return await uow.db[ALLERGIES].find_one({"_id": patient_id}, session=uow.session)


async def put_allergies(uow: UnitOfWork, patient_id: str, doc: Document) -> None:
    await uow.db[ALLERGIES].replace_one({"_id": patient_id}, doc, upsert=True,
                                        session=uow.session)


async def put_person(uow: UnitOfWork, user_id: str, full_name: str) -> None:
    await uow.db[PEOPLE].update_one({"_id": user_id}, {"$set": {"full_name": full_name}},
                                    upsert=True, session=uow.session)


async def delete_person(uow: UnitOfWork, user_id: str) -> None:
    await uow.db[PEOPLE].delete_one({"_id": user_id}, session=uow.session)


async def names(uow: UnitOfWork, user_ids: list[str]) -> dict[str, str]:
    """``{user_id: full_name}`` of those known."""
    found = uow.db[PEOPLE].find({"_id": {"$in": user_ids}}, session=uow.session)
    return {p["_id"]: p["full_name"] async for p in found}


async def add_document(uow: UnitOfWork, prescription_id: str, document: Document) -> None:
    """Keep a printed PDF's signed hash once (the prescription's clinical version is kept)."""
    await uow.db[PRESCRIPTIONS].update_one(
        {"_id": prescription_id, "documents.sha256": {"$ne": document["sha256"]}},
        {"$push": {"documents": document}}, session=uow.session)


async def remember_public_key(db: Db, kid: str, jwk: Document, at: Any) -> None:
    """Keep ``jwk`` in the key set (once per ``kid``; idempotent)."""
    await db[PUBLIC_KEYS].update_one({"_id": kid},
                                     {"$setOnInsert": {"jwk": jwk, "added_at": at}},
                                     upsert=True)


async def public_keys(db: Db) -> list[Document]:
    """Every public key ever used, newest first: ``[{_id: kid, jwk, added_at}]``."""
    return await db[PUBLIC_KEYS].find({}).sort([("added_at", DESCENDING),
                                                ("_id", ASCENDING)]).to_list()
