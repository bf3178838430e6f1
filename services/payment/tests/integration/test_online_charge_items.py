"""Charge items of an online consultation's encounter (no hospital of its own: records
publishes ``hospital_id`` None for it) belong to the doctor's first affiliated hospital,
the platform's rule for online consultations (as their payments and invoices), so that
hospital's finance can add and invoice them at its tax rate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from healthflow.devkit.testing import (
    TokenFactory,
    doctor_schedule,
    eventually,
    schedule_window,
)
from healthflow.payment import service

from .test_api import Client
from .test_invoices import (
    TELE,
    accountant_at,
    client,  # noqa: F401  (the fixture)
    deliver,
    is_problem,
)


async def test_an_online_encounters_charge_items_are_invoiced_by_the_doctors_hospital(
        client: Client, tokens: TokenFactory) -> None:  # noqa: F811
    http, app = client
    db = app.state.runtime.db
    await deliver(app, "doctor.schedule_changed", doctor_schedule(
        "doc-online", windows=[schedule_window(1, "09:00", "12:00", hospital=TELE),
                               schedule_window(2, "09:00", "12:00", hospital="h-tele-west")]),
                  "doctor")
    await accountant_at(app, "acc-online", TELE)
    encounter_id = str(uuid.uuid4())
    await deliver(app, "encounter.started", {
        "encounter_id": encounter_id, "patient_id": "p-online",
        "practitioner_id": "doc-online", "appointment_id": str(uuid.uuid4()),
        "encounter_class": "VR", "hospital_id": None,
        "started_at": datetime.now(UTC).isoformat()}, "records")

    async def known() -> bool:
        return bool(await db["doctors"].find_one({"_id": "doc-online"})
                    and await db["encounters"].find_one({"_id": encounter_id}))

    await eventually(known, within=10, interval=0.05, message="read models not applied")
    accountant = tokens.headers("acc-online", ("accountant",))
    item = {"encounter_id": encounter_id, "code": "follow-up", "quantity": 1,
            "description": "Follow-up review", "unit_price": 1190, "currency": "EUR"}
    added = await http.post("/api/v1/charge-items", headers=tokens.headers(
        "doc-online", ("doctor",)), json=item)
    assert added.status_code == 201, added.text
    assert added.json()["hospital_id"] == TELE
    # the hospital's finance may charge for it too; another hospital's may not
    assert (await http.post("/api/v1/charge-items", headers=accountant, json={
        **item, "code": "report", "unit_price": 595})).status_code == 201
    await accountant_at(app, "acc-second", "h-tele-west")
    assert is_problem(await http.post("/api/v1/charge-items", headers=tokens.headers(
        "acc-second", ("accountant",)), json=item), 403)
    listed = (await http.get("/api/v1/charge-items", headers=accountant,
                             params={"hospital_id": TELE})).json()["items"]
    assert len(listed) == 2
    created = await http.post("/api/v1/invoices", headers=accountant,
                              json={"patient_id": "p-online", "hospital_id": TELE})
    assert created.status_code == 201, created.text
    invoice = created.json()
    assert (invoice["hospital_id"], invoice["total_gross"]) == (TELE, 1190 + 595)
    assert invoice["total_tax"] == 190 + 95  # the hospital's 19 %, tax included
    assert await db["charge_items"].count_documents(
        {"patient_id": "p-online", "status": "billable"}) == 0


async def test_online_charge_items_entered_before_are_placed_at_start(
        client: Client) -> None:  # noqa: F811
    """Billable items stored with no hospital get their doctor's first one (the start-up
    migration); an unknown doctor's stay as they are."""
    _, app = client
    db = app.state.runtime.db
    await deliver(app, "doctor.schedule_changed", doctor_schedule(
        "doc-old", windows=[schedule_window(1, "09:00", "12:00", hospital=TELE)]), "doctor")

    async def known() -> bool:
        return bool(await db["doctors"].find_one({"_id": "doc-old"}))

    await eventually(known, within=10, interval=0.05, message="doctor not applied")
    await db["charge_items"].insert_many([
        {"_id": "ci-old", "hospital_id": None, "status": "billable", "performer_id": "doc-old"},
        {"_id": "ci-unknown", "hospital_id": None, "status": "billable",
         "performer_id": "doc-unknown"}])
    assert await service.backfill_charge_item_hospitals(app.state.runtime) == 1
    placed = {d["_id"]: d["hospital_id"] async for d in db["charge_items"].find({})}
    assert placed == {"ci-old": TELE, "ci-unknown": None}
