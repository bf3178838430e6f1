"""Prescribing, safety checks, overrides, dispensing and access, on the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from healthflow.common.events.envelope import CloudEvent
from healthflow.contracts.records import EncounterFinished
from healthflow.devkit.testing import eventually

from .conftest import Pharmacy, allergies_changed

PROBLEM = "application/problem+json"


def problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"].endswith("/" + slug), body
    return body


async def test_a_penicillin_allergy_refuses_amoxicillin_until_overridden_with_a_reason(
        pharmacy: Pharmacy) -> None:
    encounter = await pharmacy.encounter("pat-1", "doc-1")
    await pharmacy.allergies("pat-1", 2, "Penicillin")
    refused = problem(await pharmacy.prescribe("doc-1", encounter), 409, "prescription-safety")
    assert refused["conflicts"] == [{"kind": "allergy-class", "with_id": "al-penicillin",
                                     "criticality": "high", "detail": refused["conflicts"][0][
                                         "detail"]}]
    assert "Penicillin" in refused["detail"] and "override" in refused["detail"]
    assert await pharmacy.runtime.db["prescriptions"].count_documents({}) == 0

    checked = await pharmacy.client.post("/api/v1/prescriptions/checks", json={
        "encounter_id": encounter, "medication": {"text": "ampicillin"}},
        headers=pharmacy.as_("doc-1", "doctor"))
    assert [c["kind"] for c in checked.json()["conflicts"]] == ["allergy-class"]
    assert await pharmacy.runtime.db["prescriptions"].count_documents({}) == 0

    reason = "tolerated amoxicillin in 2024 under observation"
    issued = await pharmacy.prescribe("doc-1", encounter, override={"reason": reason})
    assert issued.status_code == 201, issued.text
    rx = issued.json()
    assert rx["status"] == "active" and rx["intent"] == "order" and rx["patient_id"] == "pat-1"
    assert rx["override"]["reason"] == reason and rx["override"]["by"] == "doc-1"
    assert rx["dosage"]["route"] == {"name": "oral", "code": "26643006",
                                     "system": "http://snomed.info/sct",
                                     "display": "Oral route"}
    assert rx["allowed_total"] == 42 and rx["medication"]["drug_class"] == "penicillins"
    assert issued.headers["location"] == f"/api/v1/prescriptions/{rx['id']}"
    [event] = await pharmacy.outbox("prescription.issued")
    assert event["patientid"] == "pat-1" and event["subject"] == f"prescription/{rx['id']}"
    assert event["data"]["override"] == {
        "reason": reason, "conflicts": [{"kind": "allergy-class", "with_id": "al-penicillin"}]}
    assert "Amoxicillin" not in str(event) and "Penicillin" not in str(event)

    # the same drug again is a duplicate of the active one
    duplicate = problem(await pharmacy.prescribe("doc-1", encounter, override=None), 409,
                        "prescription-safety")
    assert {c["kind"] for c in duplicate["conflicts"]} == {"allergy-class", "duplicate"}
    assert {"kind": "duplicate", "with_id": rx["id"]} in [
        {k: c[k] for k in ("kind", "with_id")} for c in duplicate["conflicts"]]


async def test_a_doctor_prescribes_only_in_their_own_known_encounter(pharmacy: Pharmacy) -> None:
    encounter = await pharmacy.encounter("pat-2", "doc-2")
    problem(await pharmacy.prescribe("doc-other", encounter), 403, "not-your-encounter")
    problem(await pharmacy.prescribe("doc-2", "enc-unknown"), 422, "unknown-encounter")
    problem(await pharmacy.client.post("/api/v1/prescriptions", json={},
                                       headers=pharmacy.as_("pat-2", "patient")), 403,
            "forbidden")
    bad = await pharmacy.prescribe("doc-2", encounter, dose={"value": 5, "unit": "tablets"})
    problem(bad, 422, "validation")
    assert "UCUM" in bad.text
    assert await pharmacy.runtime.db["prescriptions"].count_documents({}) == 0
    assert (await pharmacy.prescribe("doc-2", encounter)).status_code == 201


async def test_dispensing_by_pharmacists_up_to_quantity_times_one_plus_repeats(
        pharmacy: Pharmacy) -> None:
    encounter = await pharmacy.encounter("pat-3", "doc-3")
    rx = (await pharmacy.prescribe("doc-3", encounter)).json()
    url = f"/api/v1/prescriptions/{rx['id']}/dispense"
    pharmacist = pharmacy.as_("ph-1", "pharmacist")
    capsules = {"quantity": {"value": 21, "unit": "{capsule}"}}
    problem(await pharmacy.client.post(url, json=capsules, headers=pharmacy.as_("doc-3",
                                                                                "doctor")),
            403, "forbidden")
    problem(await pharmacy.client.post(url, json={"quantity": {"value": 1, "unit": "mg"}},
                                       headers=pharmacist), 422, "unit-mismatch")
    first = await pharmacy.client.post(url, json=capsules, headers=pharmacist)
    assert first.status_code == 200, first.text
    assert (first.json()["status"], first.json()["dispensed_total"]) == ("active", 21)
    over = problem(await pharmacy.client.post(url, json={"quantity": {
        "value": 22, "unit": "{capsule}"}}, headers=pharmacist), 409, "over-dispense")
    assert over["remaining"] == 21
    done = (await pharmacy.client.post(url, json=capsules, headers=pharmacist)).json()
    assert done["status"] == "completed" and done["dispensed_total"] == 42
    assert [d["by"] for d in done["dispenses"]] == ["ph-1", "ph-1"]
    problem(await pharmacy.client.post(url, json=capsules, headers=pharmacist), 409,
            "prescription-state")
    events = await pharmacy.outbox("prescription.dispensed")
    assert sorted((e["data"]["dispensed_total"], e["data"]["status"]) for e in events) == [
        (21, "active"), (42, "completed")]


async def test_drafts_are_issued_or_cancelled_by_their_prescriber_only(
        pharmacy: Pharmacy) -> None:
    encounter = await pharmacy.encounter("pat-4", "doc-4")
    draft = (await pharmacy.prescribe("doc-4", encounter, draft=True)).json()
    assert draft["status"] == "draft" and draft["issued_at"] is None
    assert await pharmacy.outbox("prescription.issued") == []
    base = f"/api/v1/prescriptions/{draft['id']}"
    # the patient and pharmacists do not see drafts
    problem(await pharmacy.client.get(base, headers=pharmacy.as_("pat-4", "patient")), 404,
            "prescription-not-found")
    problem(await pharmacy.client.get(base, headers=pharmacy.as_("ph-1", "pharmacist")), 404,
            "prescription-not-found")
    await pharmacy.encounter("pat-4", "doc-colleague")  # treats pat-4 too
    problem(await pharmacy.client.post(f"{base}/issue", json={},
                                       headers=pharmacy.as_("doc-colleague", "doctor")),
            403, "not-prescriber")
    issued = await pharmacy.client.post(f"{base}/issue", json={},
                                        headers=pharmacy.as_("doc-4", "doctor"))
    assert issued.status_code == 200 and issued.json()["status"] == "active"
    problem(await pharmacy.client.post(f"{base}/issue", json={},
                                       headers=pharmacy.as_("doc-4", "doctor")),
            409, "prescription-state")
    cancelled = await pharmacy.client.post(f"{base}/cancel", json={"reason": "switched drug"},
                                           headers=pharmacy.as_("doc-4", "doctor"))
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["status_reason"] == "switched drug"
    [event] = await pharmacy.outbox("prescription.cancelled")
    assert (event["data"]["status"], event["data"]["previous_status"]) == ("cancelled",
                                                                           "active")
    assert "switched" not in str(event)
    problem(await pharmacy.client.post(f"{base}/dispense", json={
        "quantity": {"value": 1, "unit": "{capsule}"}},
        headers=pharmacy.as_("ph-1", "pharmacist")), 409, "prescription-state")


async def test_who_reads_which_prescriptions(pharmacy: Pharmacy) -> None:
    encounter = await pharmacy.encounter("pat-5", "doc-5")
    active = (await pharmacy.prescribe("doc-5", encounter)).json()
    draft = (await pharmacy.prescribe("doc-5", encounter, draft=True, medication={
        "text": "Ibuprofen"})).json()
    await pharmacy.encounter("pat-5", "doc-colleague")

    async def listed(user: str, role: str, patient: str = "pat-5") -> Any:
        return await pharmacy.client.get("/api/v1/prescriptions", params={
            "patient_id": patient}, headers=pharmacy.as_(user, role))

    def ids(response: httpx.Response) -> set[str]:
        assert response.status_code == 200, response.text
        return {item["id"] for item in response.json()["items"]}

    assert ids(await listed("doc-5", "doctor")) == {active["id"], draft["id"]}
    assert ids(await listed("doc-colleague", "doctor")) == {active["id"], draft["id"]}
    assert ids(await listed("pat-5", "patient")) == {active["id"]}
    assert ids(await listed("ph-1", "pharmacist")) == {active["id"]}
    problem(await listed("doc-stranger", "doctor"), 403, "not-treating")
    problem(await listed("pat-other", "patient"), 403, "forbidden")
    one = f"/api/v1/prescriptions/{active['id']}"
    for user, role in (("pat-5", "patient"), ("doc-colleague", "doctor"),
                       ("ph-1", "pharmacist")):
        assert (await pharmacy.client.get(one, headers=pharmacy.as_(user, role))
                ).status_code == 200
    problem(await pharmacy.client.get(one, headers=pharmacy.as_("doc-stranger", "doctor")),
            403, "not-treating")
    problem(await pharmacy.client.get(one, headers=pharmacy.as_("pat-other", "patient")),
            404, "prescription-not-found")
    problem(await pharmacy.client.get(one, headers=pharmacy.as_("nurse-1", "nurse")),
            403, "forbidden")
    assert (await pharmacy.client.get(one)).status_code == 401
    # every read by someone other than the patient is an audit event; refusals are not reads
    accessed = sorted((e["data"]["accessor_id"], e["data"]["scope"],
                       e["data"]["prescription_id"])
                      for e in await pharmacy.outbox("prescription.accessed"))
    assert accessed == sorted([
        ("doc-5", "list", None), ("doc-colleague", "list", None), ("ph-1", "list", None),
        ("doc-colleague", "prescription", active["id"]),
        ("ph-1", "prescription", active["id"])]), accessed


async def test_an_older_allergy_list_never_replaces_a_newer_one(pharmacy: Pharmacy) -> None:
    await pharmacy.allergies("pat-6", 5)  # the allergy was removed in version 5
    await pharmacy.send(allergies_changed("pat-6", 3, "Penicillin"))  # late, older
    encounter = await pharmacy.encounter("pat-6", "doc-6")  # processed after the late list
    assert (await pharmacy.prescribe("doc-6", encounter)).status_code == 201
    doc = await pharmacy.runtime.db["allergies"].find_one({"_id": "pat-6"})
    assert doc["profile_version"] == 5 and doc["allergies"] == []


async def test_concurrent_dispenses_never_exceed_the_allowed_total(pharmacy: Pharmacy) -> None:
    """Pharmacists at two counters: the check and the write are one conditional update,
    so the losers get 409 and nothing beyond quantity × (1 + repeats) is handed out."""
    import asyncio

    encounter = await pharmacy.encounter("pat-c", "doc-c")
    rx = (await pharmacy.prescribe("doc-c", encounter)).json()  # 21 × (1 + 1)
    url = f"/api/v1/prescriptions/{rx['id']}/dispense"
    answers = await asyncio.gather(*(
        pharmacy.client.post(url, json={"quantity": {"value": 21, "unit": "{capsule}"}},
                             headers=pharmacy.as_(f"ph-{i}", "pharmacist")) for i in range(6)))
    codes = sorted(a.status_code for a in answers)
    assert codes.count(200) <= 2 and set(codes) <= {200, 409}, [a.text for a in answers]
    doc = await pharmacy.runtime.db["prescriptions"].find_one({"_id": rx["id"]})
    assert doc["dispensed_total"] == 21 * codes.count(200) <= 42
    assert len(doc["dispenses"]) == codes.count(200)


async def test_the_list_pages_past_a_page_with_the_patients_filter_kept(
        pharmacy: Pharmacy) -> None:
    encounter = await pharmacy.encounter("pat-7", "doc-7")
    issued = []
    for i in range(5):
        made = await pharmacy.prescribe("doc-7", encounter, draft=i == 2, medication={
            "text": f"Medication {i}"})
        assert made.status_code == 201, made.text
        issued.append(made.json()["id"])
    pages, cursor = [], None
    while True:
        response = await pharmacy.client.get("/api/v1/prescriptions", params={
            "patient_id": "pat-7", "limit": 2, **({"cursor": cursor} if cursor else {})},
            headers=pharmacy.as_("pat-7", "patient"))
        assert response.status_code == 200, response.text
        pages.append([item["id"] for item in response.json()["items"]])
        if (cursor := response.json()["next_cursor"]) is None:
            break
    assert pages == [issued[:2], [issued[3], issued[4]]]  # no draft for the patient
    problem(await pharmacy.client.get("/api/v1/prescriptions", params={
        "patient_id": "pat-7", "cursor": "!!"}, headers=pharmacy.as_("pat-7", "patient")),
        400, "bad-request")


async def test_a_doctor_reads_them_until_the_period_after_their_encounter(
        pharmacy: Pharmacy) -> None:
    """The records service's care rule (90 days by default, on the real clock): a doctor
    whose encounter with the patient finished 89 days ago reads the prescriptions, one
    whose encounter finished 91 days ago no longer does (not for ever after one visit)."""
    encounter = await pharmacy.encounter("pat-9", "doc-9")
    assert (await pharmacy.prescribe("doc-9", encounter)).status_code == 201
    for doctor, days in (("doc-recent", 89), ("doc-long-ago", 91)):
        done = datetime.now(UTC) - timedelta(days=days)
        finished = EncounterFinished(
            encounter_id=f"enc-{doctor}", patient_id="pat-9", practitioner_id=doctor,
            appointment_id=None, encounter_class="AMB", started_at=done - timedelta(hours=1),
            finished_at=done)
        await pharmacy.send(CloudEvent(
            source="/healthflow/records", type=EncounterFinished.event_type,
            subject=f"encounter/enc-{doctor}", data=finished.model_dump(mode="json")))

    async def known() -> bool:
        return await pharmacy.runtime.db["encounters"].count_documents(
            {"_id": {"$in": ["enc-doc-recent", "enc-doc-long-ago"]}}) == 2

    await eventually(known, message="encounter.finished never applied")

    async def listed(doctor: str) -> httpx.Response:
        return await pharmacy.client.get("/api/v1/prescriptions", params={
            "patient_id": "pat-9"}, headers=pharmacy.as_(doctor, "doctor"))

    assert (await listed("doc-recent")).status_code == 200
    problem(await listed("doc-long-ago"), 403, "not-treating")
