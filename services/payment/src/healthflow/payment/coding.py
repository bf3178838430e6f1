"""The encounters' billing codes on a claim: FHIR R4 ``Claim.diagnosis``,
``Claim.procedure`` and each item's ``diagnosisSequence``
(https://hl7.org/fhir/R4/claim.html).

The codes come from the records service's ``encounter.coded`` (read model
``encounter_codes``, the newest revision kept; see :mod:`.handlers`): ICD-10 diagnosis
codes with their WHO titles and procedure codes with their systems, never text. An
invoice line's encounter is its charge item's ``encounter_id``, or, for a consultation's
charge item (made when it was paid, before it took place), the encounter of its
``appointment_id``.

Why payment may hold diagnosis codes at all: docs/decisions.md ("Diagnosis codes reach
the payment service").
"""

from __future__ import annotations

from typing import Any

from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document
from healthflow.payment import store
from healthflow.payment.domain import EncounterNotCoded

RETRY_AFTER_SECONDS = 60
"""What a refused claim's ``Retry-After`` says: codes follow the encounter's end."""


async def codes_of_items(uow: UnitOfWork, items: list[Document]) -> dict[str, Document]:
    """Charge item id → the ``encounter_codes`` document of its encounter, for every
    item with an encounter or an appointment (others have none).

    Raises:
        EncounterNotCoded: (409, ``Retry-After``) an item's encounter has no codes here
            yet: it has not finished, or its ``encounter.coded`` is on its way.
    """
    encounters = {i["encounter_id"] for i in items if i.get("encounter_id")}
    appointments = {i["appointment_id"] for i in items
                    if not i.get("encounter_id") and i.get("appointment_id")}
    found = await uow.db[store.ENCOUNTER_CODES].find(
        {"$or": [{"_id": {"$in": sorted(encounters)}},
                 {"appointment_id": {"$in": sorted(appointments)}}]},
        session=uow.session).to_list()
    by_encounter = {c["_id"]: c for c in found}
    by_appointment = {c["appointment_id"]: c for c in found if c.get("appointment_id")}
    codes: dict[str, Document] = {}
    for item in items:
        if item.get("encounter_id"):
            coded = by_encounter.get(item["encounter_id"])
        elif item.get("appointment_id"):
            coded = by_appointment.get(item["appointment_id"])
        else:
            continue
        if coded is None:
            what = (f"encounter {item['encounter_id']}" if item.get("encounter_id")
                    else f"the encounter of appointment {item['appointment_id']}")
            raise EncounterNotCoded(
                f"{what} (charge item {item['_id']}) has no diagnosis codes here yet: "
                "they arrive when the encounter is finished in the records; finish it, "
                f"then retry the claim (in {RETRY_AFTER_SECONDS} s)",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        codes[item["_id"]] = coded
    return codes


def coded_claim(items: list[Document], codes: dict[str, Document]) -> dict[str, Any]:
    """The coded parts of a claim whose ``items`` (:func:`.insurance.claim_items`) are
    billed in the encounters ``codes`` (by charge item id), pure:

    ``{"items": the items with encounter_id and diagnosis_sequence, "diagnoses":
    [{sequence, system, code, display}], "procedures": [{sequence, system, code}],
    "coding": [{encounter_id, revision}]}``. Diagnoses and procedures are numbered from
    1 in the order of the lines' encounters and, within one, as records lists them
    (first recorded first); a code billed in two encounters is listed once. Each item
    points to every diagnosis of its own encounter.
    """
    diagnoses: dict[tuple[str, str], Document] = {}
    procedures: dict[tuple[str, str], Document] = {}
    seen: dict[str, list[int]] = {}  # encounter id → its diagnoses' sequences
    coding: list[Document] = []
    out = []
    for item in items:
        coded = codes.get(item["charge_item_id"])
        if coded is not None and coded["_id"] not in seen:
            sequences = []
            for d in coded["diagnoses"]:
                entry = diagnoses.setdefault((d["system"], d["code"]), {
                    "sequence": len(diagnoses) + 1, "system": d["system"],
                    "code": d["code"], "display": d["display"]})
                sequences.append(entry["sequence"])
            for p in coded["procedures"]:
                procedures.setdefault((p["system"], p["code"]), {
                    "sequence": len(procedures) + 1, "system": p["system"],
                    "code": p["code"]})
            seen[coded["_id"]] = sequences
            coding.append({"encounter_id": coded["_id"], "revision": coded["version"]})
        out.append({**item, "encounter_id": coded["_id"] if coded else None,
                    "diagnosis_sequence": seen[coded["_id"]] if coded else []})
    return {"items": out, "diagnoses": list(diagnoses.values()),
            "procedures": list(procedures.values()), "coding": coding}
