"""Doctor profiles, licence verification, permissions and bad input, through the app."""

from __future__ import annotations

from typing import Any

import pytest

ADMIN = "admin-1"


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    return body


async def test_registration_and_licence_verification(platform):
    p = platform
    hid = await p.add_hospital()
    dep = await p.add_department(hid, "Cardiology")
    created = await p.add_doctor("doc-1", verify=False,
                                 affiliations=[{"hospital_id": hid, "department_id": dep}],
                                 languages=["DE", "en-gb"], specialties=[" Cardiology "])
    assert created["id"] == "doc-1" and created["status"] == "pending"
    assert created["languages"] == ["de", "en-GB"] and created["specialties"] == ["cardiology"]
    assert created["display_name"] == "Dr. Anna Schmidt"
    assert not created["searchable"]
    # unverified: hidden from the public and other users, visible to self and verifiers
    problem(await p.client.get("/api/v1/doctors/doc-1"), 404)
    problem(await p.client.get("/api/v1/doctors/doc-1", headers=p.as_("x", "patient")), 404)
    assert (await p.client.get("/api/v1/doctors/doc-1",
                               headers=p.as_("doc-1", "doctor"))).status_code == 200
    assert [e["doctor_id"] for e in await p.outbox("doctor.registered")] == ["doc-1"]
    assert await p.outbox("doctor.schedule_changed") == []
    problem(await p.client.post("/api/v1/doctors", json={}, headers=p.as_("doc-1", "doctor")),
            422)

    r = await p.client.post("/api/v1/doctors/doc-1/verify", headers=p.as_(ADMIN, "admin"))
    assert r.status_code == 200 and r.json()["status"] == "verified" and r.json()["searchable"]
    assert (await p.client.get("/api/v1/doctors/doc-1")).status_code == 200
    [verified] = await p.outbox("doctor.verified")
    assert verified["doctor_id"] == "doc-1" and verified["user_id"] == "doc-1"
    [schedule] = await p.outbox("doctor.schedule_changed")
    assert schedule["verified"] is True and schedule["bookable"] is True
    assert schedule["weekly"] == [] and schedule["slot_minutes"] is None
    assert schedule["fee"] == {"amount": 6000, "currency": "EUR", "requires_prepayment": False}
    assert [loc["key"] for loc in schedule["locations"]] == ["online", f"hospital:{hid}"]

    again = problem(await p.client.post("/api/v1/doctors/doc-1/verify",
                                        headers=p.as_(ADMIN, "admin")), 409)
    assert again["current_status"] == "verified"
    problem(await p.client.post("/api/v1/doctors/doc-1/reject", json={"reason": "fake"},
                                headers=p.as_(ADMIN, "admin")), 409)
    problem(await p.client.post("/api/v1/doctors/doc-1", json=None,
                                headers=p.as_(ADMIN, "admin")), 405)
    # registering twice is a conflict
    problem(await p.client.post("/api/v1/doctors", json={**p.body(), "affiliations": []},
                                headers=p.as_("doc-1", "doctor")), 409)


async def test_a_doctor_can_require_prepayment_and_it_is_published(platform):
    """Issue 15: "any consultation whose doctor requires prepayment" — the doctor's fee
    says so, and ``doctor.schedule_changed`` carries it to the appointment service."""
    p = platform
    await p.add_doctor("doc-pre")
    r = await p.client.patch("/api/v1/doctors/doc-pre",
                             json={"fee": {"amount": 5000, "currency": "EUR",
                                           "requires_prepayment": True}},
                             headers=p.as_("doc-pre", "doctor"))
    assert r.status_code == 200, r.text
    assert r.json()["fee"] == {"amount": 5000, "currency": "EUR", "requires_prepayment": True}
    last = (await p.outbox("doctor.schedule_changed"))[-1]
    assert last["fee"] == {"amount": 5000, "currency": "EUR", "requires_prepayment": True}


async def test_rejection_and_licence_change_returns_to_pending(platform):
    p = platform
    await p.add_doctor("doc-2", verify=False)
    problem(await p.client.post("/api/v1/doctors/doc-2/reject", json={},
                                headers=p.as_(ADMIN, "admin")), 422)
    r = await p.client.post("/api/v1/doctors/doc-2/reject",
                            json={"reason": "licence number not on the register"},
                            headers=p.as_(ADMIN, "admin"))
    assert r.json()["status"] == "rejected"
    assert r.json()["rejection_reason"] == "licence number not on the register"
    [rejected] = await p.outbox("doctor.rejected")
    assert rejected["reason"] == "licence number not on the register"
    # the doctor corrects the licence: back to pending, ready for a new decision
    r = await p.client.patch("/api/v1/doctors/doc-2",
                             json={"licence": {"number": "BLN-99999", "issuer": "ÄK Berlin"}},
                             headers=p.as_("doc-2", "doctor"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending" and r.json()["rejection_reason"] is None
    r = await p.client.post("/api/v1/doctors/doc-2/verify", headers=p.as_(ADMIN, "admin"))
    assert r.json()["status"] == "verified"
    # editing other fields keeps the verification; the licence change revokes it
    r = await p.client.patch("/api/v1/doctors/doc-2", json={"fee": {"amount": 0,
                                                                     "currency": "EUR"}},
                             headers=p.as_("doc-2", "doctor"))
    assert r.json()["status"] == "verified" and r.json()["fee"]["amount"] == 0
    r = await p.client.patch("/api/v1/doctors/doc-2",
                             json={"licence": {"number": "BLN-1", "issuer": "ÄK Berlin"}},
                             headers=p.as_("doc-2", "doctor"))
    assert r.json()["status"] == "pending"
    last = (await p.outbox("doctor.schedule_changed"))[-1]
    assert last["verified"] is False and last["bookable"] is False


async def test_every_mutating_route_refuses_the_wrong_role_and_owner(platform):
    p = platform
    hid = await p.add_hospital()
    await p.add_doctor("doc-3", affiliations=[{"hospital_id": hid}])
    before = await p.db["doctors"].find_one({"_id": "doc-3"})
    availability = {"slot_minutes": 30, "weekly": [
        {"location": f"hospital:{hid}", "day": "mon", "start": "09:00", "end": "10:00"}]}
    calls = [
        ("POST", "/api/v1/doctors", p.body()),
        ("PATCH", "/api/v1/doctors/doc-3", {"fee": {"amount": 1, "currency": "EUR"}}),
        ("POST", "/api/v1/doctors/doc-3/verify", None),
        ("POST", "/api/v1/doctors/doc-3/reject", {"reason": "because"}),
        ("PUT", "/api/v1/doctors/doc-3/availability", availability),
    ]
    for role in ("patient", "nurse", "patient_care"):
        for method, url, body in calls:
            r = await p.client.request(method, url, json=body, headers=p.as_("someone", role))
            problem(r, 403)
    # another doctor: may not edit this profile or its hours, nor decide licences
    other = p.as_("doc-other", "doctor")
    for method, url, body in calls[1:]:
        problem(await p.client.request(method, url, json=body, headers=other), 403)
    # an admin decides licences and may manage any schedule, but not edit the profile
    problem(await p.client.patch("/api/v1/doctors/doc-3", json=calls[1][2],
                                 headers=p.as_(ADMIN, "admin")), 403)
    for method, url, body in calls:
        problem(await p.client.request(method, url, json=body), 401)
    after = await p.db["doctors"].find_one({"_id": "doc-3"})
    assert after == before
    r = await p.client.put("/api/v1/doctors/doc-3/availability", json=availability,
                           headers=p.as_(ADMIN, "admin"))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"years_of_practice": 9}, "body.years_of_practice"),
        ({"time_zone": "Europe/Atlantis"}, "body.time_zone"),
        ({"fee": {"amount": -1, "currency": "EUR"}}, "body.fee.amount"),
        ({"fee": {"amount": 100, "currency": "EUX"}}, "body.fee.currency"),
        ({"fee": {"amount": 100, "currency": "eur"}}, "body.fee.currency"),
        ({"fee": {"amount": 10.5, "currency": "EUR"}}, "body.fee.amount"),
        ({"languages": ["english"]}, "body.languages.0"),
        ({"specialties": ["heart surgery"]}, "body.specialties.0"),
        ({"modes": ["video"]}, "body.modes.0"),
        ({"modes": []}, "body.modes"),
        ({"name": {"given": [], "family": "X"}}, "body.name.given"),
        ({"licence": {"number": "", "issuer": "x"}}, "body.licence.number"),
        ({"affiliations": [{"hospital_id": "no-such-hospital"}]},
         "body.affiliations.0.hospital_id"),
    ],
)
async def test_bad_profile_input_is_precise_and_writes_nothing(platform, change, location):
    p = platform
    r = await p.client.post("/api/v1/doctors", json={**p.body(), **change},
                            headers=p.as_("doc-bad", "doctor"))
    body = problem(r, 422)
    assert location in [e["location"] for e in body["errors"]], body
    assert await p.db["doctors"].count_documents({}) == 0
    assert await p.event_count() == 0


async def test_affiliations_need_a_known_hospital_and_department(platform):
    p = platform
    hid = await p.add_hospital(verify=False)  # pending: known, so an affiliation is accepted
    other = await p.add_hospital("Other", city="Munich")
    dep_other = await p.add_department(other, "Radiology")
    r = await p.client.post(
        "/api/v1/doctors",
        json={**p.body(), "affiliations": [{"hospital_id": hid, "department_id": dep_other}]},
        headers=p.as_("doc-4", "doctor"))
    assert problem(r, 422)["errors"] == [{
        "location": "body.affiliations.0.department_id",
        "message": f"unknown department {dep_other} of hospital {hid}"}]
    rejected = await p.add_hospital("Rejected", verify=False)
    await p.hospital.post(f"/api/v1/hospitals/{rejected}/reject", json={"reason": "fake"},
                          headers=p.as_(ADMIN, "admin"))

    async def rejected_known() -> bool:
        doc = await p.db["hospitals"].find_one({"_id": rejected})
        return doc is not None and doc["status"] == "rejected"

    await p.eventually(rejected_known, what="the rejection in the read model")
    r = await p.client.post("/api/v1/doctors",
                            json={**p.body(), "affiliations": [{"hospital_id": rejected}]},
                            headers=p.as_("doc-4", "doctor"))
    problem(r, 422)
    assert await p.db["doctors"].count_documents({}) == 0
    r = await p.client.post("/api/v1/doctors",
                            json={**p.body(), "affiliations": [{"hospital_id": hid}]},
                            headers=p.as_("doc-4", "doctor"))
    assert r.status_code == 201


async def test_hospital_verification_reaches_the_doctor_read_model(platform):
    p = platform
    hid = await p.add_hospital("Late General", verify=False)
    await p.add_doctor("doc-5", affiliations=[{"hospital_id": hid}])
    doc = (await p.client.get("/api/v1/doctors/doc-5")).json()
    assert doc["status"] == "verified" and not doc["searchable"]
    assert (await p.client.get("/api/v1/doctors?specialty=cardiology")).json()["items"] == []
    before = await p.outbox("doctor.schedule_changed")
    assert before[-1]["bookable"] is False
    assert before[-1]["locations"][1]["bookable"] is False

    await p.verify_hospital(hid)  # hospital service → transport → doctor read model

    async def searchable() -> bool:
        found = (await p.client.get("/api/v1/doctors?specialty=cardiology")).json()["items"]
        return [d["id"] for d in found] == ["doc-5"]

    await p.eventually(searchable, what="the doctor to appear in search")
    after = await p.outbox("doctor.schedule_changed")
    assert len(after) == len(before) + 1
    assert after[-1]["bookable"] is True
    assert after[-1]["locations"][1] == {
        "key": f"hospital:{hid}", "mode": "in_person", "hospital_id": hid,
        "name": "Late General", "city": "Berlin", "timezone": "Europe/Berlin",
        "bookable": True}
    # redelivery of the same hospital event is a no-op (inbox), an older version is ignored
    stored = await p.db["hospitals"].find_one({"_id": hid})
    assert stored["verified"] is True and stored["version"] == 2
