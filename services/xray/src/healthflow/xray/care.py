"""Care relationships in the xray service: which doctors see a patient's orders, images
and reports (``imaging:read_treated``), kept in ``care_team`` from appointment and
encounter events and judged at read time by the records service's rule
(:mod:`healthflow.common.careteam`, ``XRAY_CARE_AFTER_ENCOUNTER_DAYS``).

:func:`adopt_legacy` carries the older ``care`` read model over at start.
"""

from __future__ import annotations

import logging

from healthflow.common import careteam
from healthflow.common.care import BEFORE_ANY_EVENT, CareStatus
from healthflow.common.mongo import Document, utcnow
from healthflow.common.service import ServiceRuntime
from healthflow.xray import store

log = logging.getLogger(__name__)


async def adopt_legacy(runtime: ServiceRuntime) -> None:
    """Carry the relationships of the older ``care`` read model (lists of booked,
    cancelled and conducted ids, "ever booked") into ``care_team`` at start, once (the
    old collection is dropped after), so a deploy ends nobody's current access.

    Booked, not cancelled appointments become ``active`` relationships from the move
    (their times were not kept, so each lasts ``care_after_encounter_days`` from it
    unless a later event says otherwise); cancelled ones ``inactive`` (a late booking
    grants nothing); each conducted encounter one of its own, ended that period after
    its finish when the encounters read model knows it. A relationship that exists
    already is left alone, so a restart during the move repeats nothing.
    """
    db, at, made = runtime.db, utcnow(), 0
    async for old in db[store.LEGACY_CARE].find({}):
        doctor, patient = old["doctor_user_id"], old["patient_id"]
        cancelled = set(old.get("cancelled", []))
        for appointment_id in set(old.get("appointments", [])) | cancelled:
            status = CareStatus.INACTIVE if appointment_id in cancelled else CareStatus.ACTIVE
            made += await _adopt(runtime, careteam.new_relationship(
                careteam.appointment_key(appointment_id), doctor, patient, at,
                appointment_id=appointment_id, status=status))
        for encounter_id in old.get("encounters", []):
            encounter = await db[store.ENCOUNTERS].find_one({"_id": encounter_id}) or {}
            doc = careteam.new_relationship(f"encounter:{encounter_id}", doctor, patient, at,
                                            encounter_id=encounter_id)
            doc["encounter_finished_at"] = encounter.get("finished_at")
            made += await _adopt(runtime, doc)
    await db.drop_collection(store.LEGACY_CARE)
    if made:
        log.info("adopted care relationships of the older read model", extra={"made": made})


async def _adopt(runtime: ServiceRuntime, doc: Document) -> int:
    return await careteam.adopt(runtime.db[store.CARE], doc | {"as_of": BEFORE_ANY_EVENT})
