"""Who reads which payment: the patient their own, an accountant the payments of the
hospitals whose books they keep (``payments:read_hospital``), an admin every one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from healthflow.contracts.appointment import AppointmentBooked
from healthflow.devkit.embedded import EmbeddedStripe
from healthflow.devkit.testing import TokenFactory
from healthflow.payment import service, store

from .test_api import Client, booked, deliver_booking, payment_app
from .test_invoices import accountant_at

HA, HB = "h-a", "h-b"


@pytest.fixture
async def client(mongodb_url: str, unique_name: str, tokens: TokenFactory,
                 stripe_server: EmbeddedStripe, s3_env: dict[str, str]
                 ) -> AsyncIterator[Client]:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens,
                           stripe_server, s3_env) as running:
        yield running


def at(hospital: str, patient: str) -> AppointmentBooked:
    """A paid booking at ``hospital`` (its location)."""
    return booked(patient_id=patient).model_copy(update={"location_id": hospital})


async def test_an_accountant_reads_only_the_payments_of_their_hospitals(
        client: Client, tokens: TokenFactory) -> None:
    http, app = client
    a, b = at(HA, "patient-a"), at(HB, "patient-b")
    await deliver_booking(app, a)
    await deliver_booking(app, b)
    await accountant_at(app, "acc-a", HA)
    acc_a = tokens.headers("acc-a", ("accountant",))
    listed = await http.get("/api/v1/payments", headers=acc_a)
    assert listed.status_code == 200, listed.text
    assert [p["appointment_id"] for p in listed.json()] == [a.appointment_id]
    named = await http.get("/api/v1/payments", params={"patient_id": "patient-b"},
                           headers=acc_a)
    assert named.status_code == 200 and named.json() == []
    mine = await http.get(f"/api/v1/payments/checkout/{a.appointment_id}", headers=acc_a)
    assert mine.status_code == 200 and mine.json()["client_secret"] is None
    theirs = await http.get(f"/api/v1/payments/checkout/{b.appointment_id}", headers=acc_a)
    missing = await http.get("/api/v1/payments/checkout/nothing-here", headers=acc_a)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.headers["content-type"].startswith("application/problem+json")
    admin = tokens.headers("admin-1", ("admin",))
    everything = await http.get("/api/v1/payments", headers=admin)
    assert {p["appointment_id"] for p in everything.json()} == {a.appointment_id,
                                                                 b.appointment_id}


async def test_payments_stored_without_a_hospital_are_placed_at_start(
        client: Client, tokens: TokenFactory) -> None:
    http, app = client
    runtime = app.state.runtime
    event = at(HA, "patient-a")
    await deliver_booking(app, event)
    await runtime.db["payments"].update_many({}, {"$unset": {"hospital_id": ""}})
    await accountant_at(app, "acc-a", HA)
    url = f"/api/v1/payments/checkout/{event.appointment_id}"
    acc_a = tokens.headers("acc-a", ("accountant",))
    assert (await http.get(url, headers=acc_a)).status_code == 404  # an older record
    assert await service.backfill_hospitals(runtime) == 1
    assert await service.backfill_hospitals(runtime) == 0  # once
    assert (await http.get(url, headers=acc_a)).status_code == 200


async def test_payments_flagged_for_review_are_shown_and_listed_for_finance(
        client: Client, tokens: TokenFactory) -> None:
    http, app = client
    runtime = app.state.runtime
    flagged, fine = at(HA, "patient-a"), at(HA, "patient-b")
    for event in (flagged, fine):
        await deliver_booking(app, event)
    doc = await runtime.db["payments"].find_one({"appointment_id": flagged.appointment_id})
    await store.flag_for_review(runtime.db, doc["_id"], "webhook:amount_mismatch")
    await accountant_at(app, "acc-a", HA)
    for who in (tokens.headers("acc-a", ("accountant",)), tokens.headers("admin", ("admin",))):
        listed = await http.get("/api/v1/payments", params={"review": "true"}, headers=who)
        assert listed.status_code == 200, listed.text
        assert [(p["appointment_id"], p["review"]["reason"], p["hospital_id"])
                for p in listed.json()] == [
            (flagged.appointment_id, "webhook:amount_mismatch", HA)]
        others = await http.get("/api/v1/payments", params={"review": "false"}, headers=who)
        assert [p["appointment_id"] for p in others.json()] == [fine.appointment_id]
    other = await http.get("/api/v1/payments", params={"review": "true"},
                           headers=tokens.headers("acc-b", ("accountant",)))
    assert other.status_code == 200 and other.json() == []  # not their hospital's
