"""Profiles from registration, own edits, access rules and the access log events."""

from __future__ import annotations

from typing import Any

import httpx

from .conftest import PERSON_KEYS, PatientService, appointment_data

PROBLEM = "application/problem+json"


def problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"].endswith("/" + slug), body
    return body


async def test_registration_creates_one_profile_and_ignores_other_roles(
        psvc: PatientService) -> None:
    data = PERSON_KEYS.registered("pat-reg", roles=["patient"], email="reg@example.org",
                                  phone="+4930111111", full_name="Grace Hopper")
    await psvc.deliver("user.registered", data, event_id="evt-reg-1")
    await psvc.deliver("user.registered", data, event_id="evt-reg-1")  # redelivery
    await psvc.deliver("user.registered", data, event_id="evt-reg-2")  # a second event
    await psvc.deliver("user.registered", PERSON_KEYS.registered(
        "doc-1", roles=["doctor"], email="doc@example.org", phone=None, full_name="Dr One",
        self_registered=False))
    assert await psvc.runtime.db["patients"].count_documents({}) == 1
    [registered] = await psvc.outbox("patient.registered")
    assert registered["envelope"]["patientid"] == "pat-reg"
    assert set(registered["envelope"]["data"]) == {"patient_id", "registered_at"}

    me = await psvc.client.get("/api/v1/patients/me",
                               headers=psvc.tokens.headers("pat-reg", roles=["patient"]))
    assert me.status_code == 200
    body = me.json()
    assert body["name"]["text"] == "Grace Hopper"
    assert body["telecom"] == {"email": "reg@example.org", "phone": "+4930111111"}
    assert body["consents"]["sms"] == {"granted": False, "at": None}
    nobody = await psvc.client.get("/api/v1/patients/me",
                                   headers=psvc.tokens.headers("pat-none", roles=["patient"]))
    problem(nobody, 404, "patient-not-found")


async def test_patient_edits_own_chart_and_events_name_sections_only(
        psvc: PatientService) -> None:
    pid = await psvc.register()
    me = psvc.tokens.headers(pid, roles=["patient"])
    patch = {
        "birth_date": "1906-12-09", "gender": "female",
        "allergies": [{"code": {"text": "Penicillin", "system": "http://snomed.info/sct",
                                "code": "764146007"}, "criticality": "high",
                       "reactions": [{"manifestation": "hives", "severity": "moderate"}]}],
        "conditions": [{"code": {"text": "Asthma", "code": "J45"},
                        "clinical_status": "active", "onset_date": "1950-01-01"}],
        "emergency_contacts": [{"name": "Vincent Hopper", "relationship": "husband",
                                "phone": "+12025550123"}],
        "consents": {"email": True, "sms": True},
    }
    resp = await psvc.client.patch("/api/v1/patients/me", json=patch, headers=me)
    assert resp.status_code == 200, resp.text
    chart = resp.json()
    assert chart["birth_date"] == "1906-12-09" and chart["allergies"][0]["id"]
    assert chart["consents"]["email"]["granted"] is True and chart["consents"]["email"]["at"]
    assert chart["consents"]["push"]["granted"] is False

    [updated] = await psvc.outbox("patient.updated", pid)
    assert updated["envelope"]["data"]["sections"] == [
        "birth_date", "gender", "allergies", "conditions", "emergency_contacts", "consents"]
    assert "Penicillin" not in str(updated["envelope"])
    consents = await psvc.outbox("patient.consent_changed", pid)
    assert sorted((e["envelope"]["data"]["channel"], e["envelope"]["data"]["granted"])
                  for e in consents) == [("email", True), ("sms", True)]

    # The same patch again changes nothing and publishes nothing.
    again = await psvc.client.patch("/api/v1/patients/me", json=patch | {
        "allergies": chart["allergies"], "conditions": chart["conditions"]}, headers=me)
    assert again.status_code == 200
    assert len(await psvc.outbox("patient.updated", pid)) == 1
    withdraw = await psvc.client.patch("/api/v1/patients/me",
                                       json={"consents": {"email": False}}, headers=me)
    assert withdraw.json()["consents"]["email"]["granted"] is False
    assert len(await psvc.outbox("patient.consent_changed", pid)) == 3

    problem(await psvc.client.patch("/api/v1/patients/me", json={"ssn": "x"}, headers=me),
            422, "validation")
    problem(await psvc.client.patch("/api/v1/patients/me", json={"gender": "robot"},
                                    headers=me), 422, "validation")
    problem(await psvc.client.patch("/api/v1/patients/me",
                                    json={"telecom": {"phone": "0301234"}}, headers=me),
            422, "validation")
    # Found by Schemathesis (libs/client/tests/test_fuzz.py): a null section was stored,
    # and every later read of the chart was a 500.
    for section in ("telecom", "name", "allergies", "conditions", "emergency_contacts",
                    "consents"):
        problem(await psvc.client.patch("/api/v1/patients/me", json={section: None},
                                        headers=me), 422, "validation")
    cleared = await psvc.client.patch("/api/v1/patients/me",
                                      json={"birth_date": None, "gender": None}, headers=me)
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["birth_date"] is None
    assert (await psvc.client.get("/api/v1/patients/me", headers=me)).status_code == 200
    doctor = psvc.tokens.headers("doc-x", roles=["doctor"])
    problem(await psvc.client.patch("/api/v1/patients/me", json={}, headers=doctor),
            403, "forbidden")


async def test_allergy_changes_reach_the_prescription_service_as_a_whole_list(
        psvc: PatientService) -> None:
    """``patient.allergies_changed`` carries the list (substance, coding, criticality) in
    the update's transaction, with the profile version; other sections publish none."""
    pid = await psvc.register()
    me = psvc.tokens.headers(pid, roles=["patient"])
    penicillin = {"code": {"text": "Penicillin", "system": "http://www.whocc.no/atc",
                           "code": "J01C"}, "criticality": "high",
                  "reactions": [{"manifestation": "hives", "severity": "moderate"}]}
    chart = (await psvc.client.patch("/api/v1/patients/me", json={"allergies": [penicillin]},
                                     headers=me)).json()
    await psvc.client.patch("/api/v1/patients/me", json={"gender": "female"}, headers=me)
    await psvc.client.patch("/api/v1/patients/me", json={"allergies": chart["allergies"]},
                            headers=me)  # unchanged: nothing published
    await psvc.client.patch("/api/v1/patients/me", json={"allergies": []}, headers=me)
    first, cleared = [e["envelope"] for e in await psvc.outbox("patient.allergies_changed",
                                                                pid)]
    assert first["patientid"] == pid and first["subject"] == pid
    assert first["data"]["allergies"] == [{
        "allergy_id": chart["allergies"][0]["id"], "substance": "Penicillin", "code": "J01C",
        "system": "http://www.whocc.no/atc", "criticality": "high",
        "clinical_status": "active"}]
    assert "hives" not in str(first)
    assert cleared["data"]["allergies"] == []
    assert cleared["data"]["profile_version"] > first["data"]["profile_version"]


async def test_who_may_read_a_chart_and_every_read_is_recorded(psvc: PatientService) -> None:
    pid = await psvc.register()
    own = psvc.tokens.headers(pid, roles=["patient"])
    assert (await psvc.client.get(f"/api/v1/patients/{pid}", headers=own)).status_code == 200
    assert await psvc.outbox("patient.record_accessed", pid) == []  # own reads are not logged

    other = psvc.tokens.headers("pat-other", roles=["patient"])
    problem(await psvc.client.get(f"/api/v1/patients/{pid}", headers=other), 403, "forbidden")

    _, staff = await psvc.staff("patient_care", "hosp-1", sub="care-1")
    await psvc.encounter_started(pid, "hosp-1")
    assert (await psvc.client.get(f"/api/v1/patients/{pid}", headers=staff)).status_code == 200
    [staff_read] = await psvc.outbox("patient.record_accessed", pid)
    envelope = staff_read["envelope"]
    assert envelope["patientid"] == pid and envelope["actor"] == "care-1"
    assert envelope["data"] == {"patient_id": pid, "accessor_id": "care-1",
                                "accessor_role": "staff", "accessor_roles": ["patient_care"],
                                "purpose": "patient_support", "scope": "chart"}

    doctor = psvc.tokens.headers("doc-user-1", roles=["doctor"])
    problem(await psvc.client.get(f"/api/v1/patients/{pid}", headers=doctor),
            403, "not-treating")
    booked = appointment_data(appointment_id="a-1", patient_id=pid, doctor_id="d-1",
                              doctor_user_id="doc-user-1")
    await psvc.deliver("appointment.booked", booked)
    read = await psvc.client.get(f"/api/v1/patients/{pid}", params={"purpose": "treatment"},
                                 headers=doctor)
    assert read.status_code == 200
    accesses = await psvc.outbox("patient.record_accessed", pid)
    assert [(e["envelope"]["data"]["accessor_id"], e["envelope"]["data"]["purpose"])
            for e in accesses] == [("care-1", "patient_support"), ("doc-user-1", "treatment")]
    await psvc.deliver("appointment.cancelled", appointment_data(
        cancelled=True, appointment_id="a-1", patient_id=pid, doctor_id="d-1",
        doctor_user_id="doc-user-1"))
    problem(await psvc.client.get(f"/api/v1/patients/{pid}", headers=doctor),
            403, "not-treating")
    problem(await psvc.client.get("/api/v1/patients/nobody", headers=staff),
            404, "patient-not-found")
    problem(await psvc.client.get(f"/api/v1/patients/{pid}"), 401, "unauthorized")


async def test_staff_search_is_indexed_paged_and_recorded(psvc: PatientService) -> None:
    ids = [await psvc.register(full_name=f"Searchable Person {i}") for i in range(3)]
    await psvc.register(full_name="Someone Else")
    _, staff = await psvc.staff("patient_care", "hosp-1", sub="care-2")
    for pid in ids:
        await psvc.encounter_started(pid, "hosp-1")
    first = await psvc.client.get("/api/v1/patients", params={"name": "searchable", "limit": 2},
                                  headers=staff)
    assert first.status_code == 200, first.text
    page = first.json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    second = await psvc.client.get("/api/v1/patients", headers=staff, params={
        "name": "SEARCHABLE", "limit": 2, "cursor": page["next_cursor"]})
    found = [p["id"] for p in page["items"]] + [p["id"] for p in second.json()["items"]]
    assert sorted(found) == sorted(ids) and second.json()["next_cursor"] is None
    recorded = await psvc.outbox("patient.record_accessed")
    assert sorted(e["envelope"]["patientid"] for e in recorded) == sorted(ids)
    assert {e["envelope"]["data"]["scope"] for e in recorded} == {"search_result"}

    problem(await psvc.client.get("/api/v1/patients", headers=staff), 422, "validation")
    problem(await psvc.client.get("/api/v1/patients", params={"name": "x", "cursor": "!!"},
                                  headers=staff), 400, "bad-request")
    doctor = psvc.tokens.headers("doc-2", roles=["doctor"])
    problem(await psvc.client.get("/api/v1/patients", params={"name": "s"}, headers=doctor),
            403, "forbidden")
