"""A claim's dates of service are the encounter's and the appointment's (not the day a
charge was entered), and a hospital's revenue names each doctor by one id (the
Practitioner id), whichever way the consultation was booked and paid. In-process on
the real MongoDB-protocol server, S3 server and localstripe."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from healthflow.devkit.embedded import EmbeddedStripe
from healthflow.devkit.testing import TokenFactory, doctor_schedule, eventually, schedule_window

from .test_api import Client, payment_app
from .test_insurance import PLANS, a_coverage
from .test_invoices import LAB, TELE, accountant_at, coded, deliver, paid_consultation


@pytest.fixture
async def client(mongodb_url: str, unique_name: str, tokens: TokenFactory,
                 stripe_server: EmbeddedStripe, s3_env: dict[str, str]
                 ) -> AsyncIterator[Client]:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env, default_tax_basis_points=700,
                           payer_sandbox_plans=PLANS) as running:
        yield running


async def encounter_on(app: Any, patient: str, doctor: str, hospital: str,
                       started_at: datetime) -> str:
    """Records' ``encounter.started`` of an encounter that started at ``started_at``."""
    encounter_id = str(uuid.uuid4())
    await deliver(app, "encounter.started", {
        "encounter_id": encounter_id, "patient_id": patient, "practitioner_id": doctor,
        "appointment_id": None, "encounter_class": "AMB", "hospital_id": hospital,
        "started_at": started_at.isoformat()}, "records")

    async def known() -> bool:
        return bool(await app.state.runtime.db["encounters"].find_one({"_id": encounter_id}))

    await eventually(known, within=10, interval=0.05, message="encounter not applied")
    return encounter_id


async def test_a_claim_is_dated_by_its_encounter_not_by_when_it_was_charged(
        client: Client, tokens: TokenFactory) -> None:
    http, app = client
    await accountant_at(app, "acc-lab", LAB)
    patient = tokens.headers("p-dated", ("patient",))
    seen = (datetime.now(UTC) - timedelta(days=5)).replace(microsecond=0)  # claimed later
    enc = await encounter_on(app, "p-dated", "doc-lab", LAB, seen)
    await coded(app, enc, "p-dated")
    item = await http.post("/api/v1/charge-items", headers=tokens.headers(
        "doc-lab", ("doctor",)), json={"encounter_id": enc, "code": "2345-7",
                                       "description": "Glucose", "quantity": 1,
                                       "unit_price": 1250, "currency": "EUR"})
    assert item.status_code == 201, item.text
    assert datetime.fromisoformat(item.json()["occurrence"]) == seen
    invoice = (await http.post("/api/v1/invoices", headers=tokens.headers(
        "acc-lab", ("accountant",)), json={"patient_id": "p-dated", "hospital_id": LAB})).json()
    coverage = (await http.post("/api/v1/coverages", headers=patient,
                                json=a_coverage())).json()
    claimed = await http.post("/api/v1/claims", headers=patient, json={
        "invoice_id": invoice["id"], "coverage_id": coverage["id"]})
    assert claimed.status_code == 201, claimed.text
    claim = claimed.json()
    assert [i["service_date"] for i in claim["items"]] == [seen.date().isoformat()]

    raw = (await http.get(f"/api/v1/claims/{claim['id']}/fhir", headers=patient)).json()
    Bundle.model_validate(raw)
    resource = raw["entry"][0]["resource"]
    assert resource["resourceType"] == "Claim"
    assert resource["billablePeriod"] == {"start": seen.date().isoformat(),
                                          "end": seen.date().isoformat()}
    assert [i["servicedDate"] for i in resource["item"]] == [seen.date().isoformat()]


async def test_a_prepaid_consultation_is_dated_by_its_appointment(
        client: Client, tokens: TokenFactory, stripe_server: EmbeddedStripe) -> None:
    http, app = client
    event, payment, _ = await paid_consultation(http, app, stripe_server, "p-later")
    item = await app.state.runtime.db["charge_items"].find_one({"payment_id": payment["_id"]})
    assert item is not None
    occurred = item["occurrence"].replace(tzinfo=UTC)
    assert abs(occurred - event.start) < timedelta(milliseconds=1)  # BSON keeps ms
    assert occurred.date() == (datetime.now(UTC) + timedelta(days=3)).date()


async def test_revenue_by_doctor_names_one_doctor_once_however_booked_and_paid(
        client: Client, tokens: TokenFactory, stripe_server: EmbeddedStripe) -> None:
    """The doctor's online consultation, prepaid by card (the appointment names them by
    ``doctor_id`` and ``doctor_user_id``), and their in-person one, charged in the
    encounter (``practitioner_id``) and paid at the desk: one doctor, one row."""
    http, app = client
    db = app.state.runtime.db
    await deliver(app, "doctor.schedule_changed", doctor_schedule(
        "doc-1", windows=[schedule_window(1, "09:00", "12:00", hospital=TELE)]), "doctor")
    await accountant_at(app, "acc-tele", TELE)

    async def doctor_known() -> bool:
        return bool(await db["doctors"].find_one({"_id": "doc-1"}))

    await eventually(doctor_known, within=10, interval=0.05, message="doctor not applied")
    event, _, _ = await paid_consultation(http, app, stripe_server, "p-rev", fee=4000)
    assert event.doctor_user_id == "user-doc-1" != event.doctor_id
    enc = await encounter_on(app, "p-rev", "user-doc-1", TELE, datetime.now(UTC))
    accountant = tokens.headers("acc-tele", ("accountant",))
    assert (await http.post("/api/v1/charge-items", headers=tokens.headers(
        "user-doc-1", ("doctor",)), json={"encounter_id": enc, "code": "consultation",
                                          "description": "Consultation", "quantity": 1,
                                          "unit_price": 4000, "currency": "EUR"})
            ).status_code == 201
    invoice = (await http.post("/api/v1/invoices", headers=accountant, json={
        "patient_id": "p-rev", "hospital_id": TELE})).json()
    paid = await http.post(f"/api/v1/invoices/{invoice['id']}/payments", headers=accountant,
                           json={"amount": 4000})
    assert paid.status_code == 200, paid.text

    now = datetime.now(UTC)
    revenue = (await http.get("/api/v1/billing/revenue", headers=accountant, params={
        "hospital_id": TELE, "from": (now - timedelta(days=1)).isoformat(),
        "to": (now + timedelta(days=1)).isoformat(), "period": "day"})).json()
    assert [(r["doctor_id"], r["service"], r["quantity"], r["gross"])
            for r in revenue["rows"]] == [("user-doc-1", "consultation", 2, 8000)]
