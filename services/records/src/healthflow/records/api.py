"""HTTP routes (thin: parse, declare the permission, call a use case, shape the answer).

* ``/api/v1/encounters`` — open a walk-in/virtual/emergency encounter, list a
  patient's, read one, finish one;
* ``/api/v1/records`` — entries of an encounter: write, list, read, history,
  correct, withdraw (``entered-in-error``);
* ``/api/v1/fhir/Patient/{id}/$everything`` — the record as a FHIR R4 Bundle.

Ownership and care-relationship checks live in :mod:`.service` (``accessor``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import JSONResponse

from healthflow.common.auth import Principal, require, require_any
from healthflow.common.http import get_runtime
from healthflow.common.pagination import Page
from healthflow.common.permissions import Permission as P
from healthflow.common.service import ServiceRuntime
from healthflow.records import entries, service
from healthflow.records.schemas import (
    CorrectionIn,
    EncounterIn,
    EncounterOut,
    EntryOut,
    EntryVersionOut,
    NewEntryIn,
    WithdrawalIn,
)

Runtime = Annotated[ServiceRuntime, Depends(get_runtime)]
Id = Annotated[str, Path(max_length=64)]
READERS = (P.RECORDS_READ_OWN, P.RECORDS_READ_TREATED, P.RECORDS_READ_ANY)
OPENERS = (P.RECORDS_WRITE_TREATED, P.ENCOUNTERS_OPEN_ANY)

encounters = APIRouter(prefix="/api/v1/encounters", tags=["encounters"])
records = APIRouter(prefix="/api/v1/records", tags=["records"])
fhir = APIRouter(prefix="/api/v1/fhir", tags=["fhir"])
routers = [encounters, records, fhir]


@encounters.post("", status_code=201, summary="Open a walk-in, virtual or emergency encounter")
async def open_encounter(runtime: Runtime, body: EncounterIn, response: Response,
                         principal: Principal = require_any(*OPENERS)) -> EncounterOut:
    """In progress from now; encounters of appointments open at check-in by themselves.

    422 ``unknown-patient``; 403 for a doctor naming another doctor.
    """
    doc = await service.open_encounter(runtime, principal, body)
    response.headers["Location"] = f"{encounters.prefix}/{doc['_id']}"
    return EncounterOut.from_document(doc)


@encounters.get("", summary="A patient's encounters, oldest first")
async def list_encounters(runtime: Runtime,
                          patient_id: Annotated[str, Query(min_length=1, max_length=64)],
                          principal: Principal = require_any(*READERS)) -> Page[EncounterOut]:
    docs = await service.list_encounters(runtime, principal, patient_id)
    return Page[EncounterOut](items=[EncounterOut.from_document(d) for d in docs])


@encounters.get("/{encounter_id}", summary="One encounter")
async def get_encounter(runtime: Runtime, encounter_id: Id,
                        principal: Principal = require_any(*READERS)) -> EncounterOut:
    """404 for a patient asking for another patient's; 403 ``not-treating``."""
    return EncounterOut.from_document(
        await service.read_encounter(runtime, principal, encounter_id))


@encounters.post("/{encounter_id}/finish", summary="Finish an in-progress encounter now")
async def finish_encounter(runtime: Runtime, encounter_id: Id,
                           principal: Principal = require_any(*OPENERS)) -> EncounterOut:
    """409 ``encounter-state`` unless in progress."""
    return EncounterOut.from_document(
        await service.finish_encounter(runtime, principal, encounter_id))


@records.post("/encounters/{encounter_id}/entries", status_code=201,
              summary="Write a diagnosis, observation or medication in an encounter")
async def add_entry(runtime: Runtime, encounter_id: Id, body: NewEntryIn, response: Response,
                    principal: Principal = require(P.RECORDS_WRITE_TREATED)) -> EntryOut:
    """Version 1; 409 ``encounter-state`` while the encounter is planned or cancelled."""
    head = await entries.add_entry(runtime, principal, encounter_id, body)
    response.headers["Location"] = f"{records.prefix}/entries/{head['_id']}"
    return EntryOut.from_document(head)


@records.get("/encounters/{encounter_id}/entries", summary="The entries of an encounter")
async def list_entries(runtime: Runtime, encounter_id: Id,
                       principal: Principal = require_any(*READERS)) -> Page[EntryOut]:
    heads = await entries.entries_of_encounter(runtime, principal, encounter_id)
    return Page[EntryOut](items=[EntryOut.from_document(h) for h in heads])


@records.get("/entries/{entry_id}", summary="The current version of an entry")
async def get_entry(runtime: Runtime, entry_id: Id,
                    principal: Principal = require_any(*READERS)) -> EntryOut:
    return EntryOut.from_document(await entries.read_entry(runtime, principal, entry_id))


@records.get("/entries/{entry_id}/history", summary="Every version of an entry")
async def get_history(runtime: Runtime, entry_id: Id,
                      principal: Principal = require_any(*READERS)) -> list[EntryVersionOut]:
    return [EntryVersionOut.from_document(v)
            for v in await entries.entry_history(runtime, principal, entry_id)]


@records.post("/entries/{entry_id}/corrections", summary="Correct an entry (a new version)")
async def correct_entry(runtime: Runtime, entry_id: Id, body: CorrectionIn,
                        principal: Principal = require(P.RECORDS_WRITE_TREATED)) -> EntryOut:
    """409 ``version-conflict`` when ``version`` is not the current one."""
    return EntryOut.from_document(await entries.correct_entry(runtime, principal, entry_id, body))


@records.post("/entries/{entry_id}/entered-in-error", summary="Withdraw an entry")
async def withdraw_entry(runtime: Runtime, entry_id: Id, body: WithdrawalIn,
                         principal: Principal = require(P.RECORDS_WRITE_TREATED)) -> EntryOut:
    """A new version with status ``entered-in-error``; nothing is deleted."""
    return EntryOut.from_document(
        await entries.withdraw_entry(runtime, principal, entry_id, body))


@fhir.get("/Patient/{patient_id}/$everything", summary="The record as a FHIR R4 Bundle",
          response_class=JSONResponse,
          responses={200: {"content": {"application/fhir+json": {}}}})
async def patient_everything(runtime: Runtime, patient_id: Id,
                             principal: Principal = require_any(*READERS)) -> JSONResponse:
    """A ``searchset`` Bundle: Patient, Encounters, Conditions, Observations,
    MedicationStatements (``application/fhir+json``). ``fullUrl``s are under the
    gateway's configured public address (``public_base_url``), never the service's
    internal one nor a ``Host`` the client chose."""
    base = runtime.settings.public_base_url.rstrip("/") + fhir.prefix
    bundle: dict[str, Any] = await service.everything(runtime, principal, patient_id, base)
    return JSONResponse(bundle, media_type="application/fhir+json")
