"""Insurance end to end through the gateway: a checked-in patient is diagnosed (ICD-10)
and their lab test charged by the doctor, invoiced by the hospital's accountant, claimed
by the patient under their coverage once the encounter is finished and its codes reached
the payment service (409 ``encounter-not-coded`` before; the claim lists the code),
adjudicated by the payer sandbox (the platform's clearinghouse, its default ``standard``
plan: 80 % rounded down, less a 1000 copay), and the remainder paid partly at the desk
and the rest by the patient's card (the invoice's checkout, localstripe); the claim as
FHIR R4 validates with the R4B models.

A platform of its own with the services this needs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.claim import Claim
from fhir.resources.R4B.claimresponse import ClaimResponse

from healthflow.devkit.testing import RunningPlatform, eventually, platform_process, rabbitmq_vhost

from .conftest import (
    as_admin,
    assert_problem,
    create_doctor,
    create_staff,
    ok,
    publish_availability,
    register_hospital,
    register_patient,
    weekly_hours,
)
from .test_care_journey import TZ, book, local, next_weekday, slots
from .test_payments import pay


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    workdir = tmp_path_factory.mktemp("insurance")
    with rabbitmq_vhost() as amqp_url, platform_process(
            workdir, amqp_url, "--only", "auth,hospital,doctor,appointment,records,payment"
    ) as running:
        yield running


async def until_ok(call: Any, status: int, message: str) -> dict[str, Any]:
    """The JSON of ``await call()`` once it answers ``status`` (events on their way)."""
    body: dict[str, Any] = {}

    async def answered() -> bool:
        nonlocal body
        response: httpx.Response = await call()
        body = response.json() if response.status_code == status else {}
        return response.status_code == status

    await eventually(answered, within=30, interval=0.3, message=message)
    return body


async def test_a_claim_is_adjudicated_by_the_sandbox_and_the_remainder_paid(
        platform: RunningPlatform) -> None:
    async with platform.client() as api:
        admin = await as_admin(api, platform)
        hospital = await register_hospital(api, admin, f"Claim Klinik {uuid.uuid4().hex[:6]}")
        doctor, _ = await create_doctor(api, admin, family=f"Claim{uuid.uuid4().hex[:5]}",
                                        affiliations=[{"hospital_id": hospital["id"]}])
        await publish_availability(api, doctor, weekly_hours(hospital["id"], days=["mon"]))
        accountant = await create_staff(api, admin, ["accountant"])
        ok(await api.post(f"/api/v1/hospitals/{hospital['id']}/staff", headers=admin.headers,
                          json={"user_id": accountant.id, "staff_role": "accountant"}), 201)
        patient, stranger = await register_patient(api, "insured"), await register_patient(
            api, "other")
        monday = next_weekday(1)
        free: list[datetime] = []

        async def has_slots() -> bool:
            nonlocal free
            free = await slots(api, patient, doctor.id, local(monday, 0),
                               local(monday + timedelta(days=1), 0))
            return bool(free)

        await eventually(has_slots, within=30, message="the doctor's slots never appeared")
        appointment = ok(await book(api, patient, doctor.id, free[0].astimezone(TZ)), 201)
        ok(await api.post(f"/api/v1/appointments/{appointment['id']}/check-in",
                          headers=doctor.headers))
        encounters = await until_ok(lambda: api.get(
            "/api/v1/encounters", headers=patient.headers,
            params={"patient_id": patient.id}), 200, "no encounter at check-in")
        encounter_id = encounters["items"][0]["id"]
        # the doctor diagnoses (ICD-10): the claim will carry the code, never the note
        ok(await api.post(f"/api/v1/records/encounters/{encounter_id}/entries",
                          headers=doctor.headers, json={"entry": {
                              "type": "Condition", "code": "J06.9",
                              "note": "scratchy throat"}}), 201)

        # the doctor charges two lab tests once the encounter has reached the payment
        item = {"encounter_id": encounter_id, "code": "2345-7", "description": "Glucose",
                "quantity": 2, "unit_price": 2150, "currency": "EUR"}
        await until_ok(lambda: api.post("/api/v1/charge-items", headers=doctor.headers,
                                        json=item), 201, "the encounter never reached billing")
        invoice = await until_ok(lambda: api.post(
            "/api/v1/invoices", headers=accountant.headers,
            json={"patient_id": patient.id, "hospital_id": hospital["id"]}), 201,
            "the accountant never became finance of the hospital")
        assert (invoice["total_gross"], invoice["patient_share"]) == (4300, 4300)

        coverage = ok(await api.post("/api/v1/coverages", headers=patient.headers, json={
            "payer_id": "payer-sandbox", "payer_name": "Sandbox Health",
            "subscriber_id": "SBX-0042", "plan": "standard",
            "period_start": (date.today() - timedelta(days=1)).isoformat()}), 201)
        body = {"invoice_id": invoice["id"], "coverage_id": coverage["id"]}
        assert_problem(await api.post("/api/v1/claims", headers=stranger.headers, json=body),
                       404)
        # the encounter is still in progress: not coded yet, so the claim waits
        early = await api.post("/api/v1/claims", headers=patient.headers, json=body)
        assert_problem(early, 409)
        assert early.json()["type"].endswith("/encounter-not-coded")
        ok(await api.post(f"/api/v1/encounters/{encounter_id}/finish",
                          headers=doctor.headers))
        claim = await until_ok(lambda: api.post("/api/v1/claims", headers=patient.headers,
                                                json=body), 201,
                               "the encounter's codes never reached the payment")
        assert claim["diagnoses"] == [{
            "sequence": 1, "system": "http://hl7.org/fhir/sid/icd-10", "code": "J06.9",
            "display": "Acute upper respiratory infection, unspecified"}]
        assert [i["diagnosis_sequence"] for i in claim["items"]] == [[1]]
        # 80 % of 4300 = 3440, less the 1000 copay: the payer covers 2440, the patient 1860
        assert (claim["response"]["outcome"], claim["response"]["benefit"],
                claim["response"]["patient_share"]) == ("complete", 2440, 1860)
        assert_problem(await api.post("/api/v1/claims", headers=patient.headers, json=body),
                       409)

        owed = ok(await api.get(f"/api/v1/invoices/{invoice['id']}",
                                headers=patient.headers))
        assert (owed["insurance_share"], owed["patient_share"], owed["payment_state"]) == (
            2440, 1860, "unpaid")
        part = ok(await api.post(f"/api/v1/invoices/{invoice['id']}/payments",
                                 headers=accountant.headers, json={"amount": 1000}))
        assert (part["status"], part["payment_state"]) == ("issued", "partially_paid")
        # the patient pays the rest (860) by card: localstripe's webhook reaches the gateway
        checkout_url = f"/api/v1/invoices/{invoice['id']}/checkout"
        assert_problem(await api.post(checkout_url, headers=stranger.headers), 404)
        checkout = ok(await api.post(checkout_url, headers=patient.headers), 201)
        assert (checkout["amount"], checkout["currency"]) == (860, "EUR")
        intent = await asyncio.to_thread(pay, platform, checkout["client_secret"],
                                         "4242424242424242")
        assert intent.status == "succeeded"
        paid: dict[str, Any] = {}

        async def balanced() -> bool:
            nonlocal paid
            paid = ok(await api.get(f"/api/v1/invoices/{invoice['id']}",
                                    headers=patient.headers))
            return bool(paid["status"] == "balanced")

        await eventually(balanced, within=30, interval=0.3,
                         message="the card payment never reached the invoice")
        assert (paid["paid"], paid["payment_state"]) == (1860, "paid")
        assert_problem(await api.post(checkout_url, headers=patient.headers), 409)
        summary = ok(await api.get("/api/v1/billing/summary", headers=patient.headers))
        assert summary["currencies"] == [{"currency": "EUR", "billed": 4300, "paid": 1860,
                                          "outstanding": 0, "refunded": 0,
                                          "insurance_share": 2440}]

        # the accountant reads the patient's coverage and the claim; FHIR R4 validates
        listed = ok(await api.get("/api/v1/coverages", headers=accountant.headers,
                                  params={"patient_id": patient.id}))
        assert [c["id"] for c in listed] == [coverage["id"]]
        served = await api.get(f"/api/v1/claims/{claim['id']}/fhir",
                               headers=accountant.headers)
        assert served.status_code == 200, served.text
        assert served.headers["content-type"] == "application/fhir+json"
        raw = served.json()
        Bundle.model_validate(raw)
        fhir_claim = next(e["resource"] for e in raw["entry"]
                          if e["resource"]["resourceType"] == "Claim")
        assert Claim.model_validate(fhir_claim).diagnosis[0].diagnosisCodeableConcept.coding[
            0].code == "J06.9"
        assert "scratchy" not in served.text
        response = next(e["resource"] for e in raw["entry"]
                        if e["resource"]["resourceType"] == "ClaimResponse")
        assert ClaimResponse.model_validate(response).outcome == "complete"
        totals = {t["category"]["coding"][0]["code"]: t["amount"]["value"]
                  for t in response["total"]}
        assert totals == {"submitted": 43, "copay": 10, "benefit": 24.4}  # EUR, JSON numbers
