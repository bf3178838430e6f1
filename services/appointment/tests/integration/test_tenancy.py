"""Staff act only at the hospitals where they work (issue 16): two hospitals, A and B.

Memberships arrive as ``staff.assigned`` / ``staff.removed`` through the service's
idempotent consumer, as in production; appointments of hospital B are, to the staff of
hospital A, exactly like appointments that do not exist.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from healthflow.appointment import store

from .conftest import Service, next_weekday, schedule, window
from .test_appointments import assert_problem, berlin, book

A, B = "hosp-a", "hosp-b"


def hours(*hospitals: str | None) -> list[dict[str, Any]]:
    """Weekday hours: 09:00–12:00 at each hospital in turn by day, online 14:00–16:00."""
    return [window(day, "09:00", "12:00", hospital=hospitals[day % len(hospitals)])
            for day in range(1, 6)] + [window(day, "14:00", "16:00", hospital=None)
                                       for day in range(1, 6)]


async def two_hospitals(svc: Service) -> dict[str, str]:
    """Doctor ``dr-a`` works at A, ``dr-b`` at B; one appointment booked with each (by their
    patients). Returns the appointment ids by hospital."""
    await svc.publish_doctor(schedule("dr-a", windows=hours(A)))
    await svc.publish_doctor(schedule("dr-b", windows=hours(B)))
    ids = {}
    for hospital, doctor in ((A, "dr-a"), (B, "dr-b")):
        _, patient = svc.patient()
        made = await book(svc, patient, doctor, berlin(next_weekday(2), 9))
        assert made.status_code == 201, made.text
        assert made.json()["location_id"] == hospital
        ids[hospital] = made.json()["id"]
    return ids


def same_as_missing(svc_response: Any, missing_response: Any, aid: str, missing: str) -> None:
    """Another hospital's appointment answers exactly as one that does not exist."""
    there = assert_problem(svc_response, 404, "appointment-not-found")
    absent = assert_problem(missing_response, 404, "appointment-not-found")
    assert there["detail"].replace(aid, "ID") == absent["detail"].replace(missing, "ID")
    assert set(there) == set(absent)


async def test_staff_of_a_cannot_list_read_book_or_manage_appointments_of_b(svc: Service
                                                                           ) -> None:
    ids = await two_hospitals(svc)
    _, reception_a = await svc.staff("receptionist", A)
    _, care_a = await svc.staff("patient_care", A)

    listed = await svc.client.get("/api/v1/appointments", headers=reception_a)
    assert [a["id"] for a in listed.json()["items"]] == [ids[A]]
    by_doctor = await svc.client.get("/api/v1/appointments", params={"doctor_id": "dr-b"},
                                     headers=care_a)
    assert by_doctor.json()["items"] == []
    assert (await svc.client.get(f"/api/v1/appointments/{ids[A]}", headers=reception_a)
            ).status_code == 200

    missing = str(uuid.uuid4())
    for path, body in (("", None), ("/cancel", {"reason_code": "other"}),
                       ("/reschedule", {"start": berlin(next_weekday(2), 10).isoformat()}),
                       ("/confirm", None), ("/check-in", None), ("/complete", None),
                       ("/no-show", None)):
        send = svc.client.get if not path else svc.client.post
        kwargs: dict[str, Any] = {"headers": care_a}
        if body is not None:
            kwargs["json"] = body
        same_as_missing(await send(f"/api/v1/appointments/{ids[B]}{path}", **kwargs),
                        await send(f"/api/v1/appointments/{missing}{path}", **kwargs),
                        ids[B], missing)

    patient_id, _ = svc.patient()
    refused = assert_problem(await book(svc, reception_a, "dr-b", berlin(next_weekday(3), 9),
                                        patient_id=patient_id), 403, "forbidden")
    assert "staff membership" in refused["detail"]
    assert await svc.runtime.db[store.APPOINTMENTS].count_documents(
        {"patient_id": patient_id}) == 0
    assert (await book(svc, reception_a, "dr-a", berlin(next_weekday(3), 9),
                       patient_id=patient_id)).status_code == 201
    # B's appointment is untouched; the admin (platform-wide) sees both
    admin = svc.as_role("admin")
    everything = await svc.client.get("/api/v1/appointments", headers=admin)
    assert {a["id"] for a in everything.json()["items"]} >= set(ids.values())
    b_now = (await svc.client.get(f"/api/v1/appointments/{ids[B]}", headers=admin)).json()
    assert b_now["status"] == "booked" and len(b_now["status_history"]) == 1


async def test_online_appointments_belong_to_every_hospital_of_the_doctor(svc: Service
                                                                        ) -> None:
    # dr-ab sees patients at A on even weekdays, at B on odd ones, and online
    await svc.publish_doctor(schedule("dr-ab", windows=hours(A, B)))
    _, patient = svc.patient()
    online = await book(svc, patient, "dr-ab", berlin(next_weekday(2), 14), mode="online")
    assert online.status_code == 201, online.text
    aid = online.json()["id"]
    _, nurse_a = await svc.staff("nurse", A)
    _, nurse_b = await svc.staff("nurse", B)
    _, nurse_c = await svc.staff("nurse", "hosp-c")
    for nurse in (nurse_a, nurse_b):
        assert (await svc.client.get(f"/api/v1/appointments/{aid}", headers=nurse)
                ).status_code == 200
    assert_problem(await svc.client.get(f"/api/v1/appointments/{aid}", headers=nurse_c),
                   404, "appointment-not-found")

    # staff of A may not move an in-person appointment at A to the doctor's hours at B
    _, reception_a = await svc.staff("receptionist", A)
    patient_id, _ = svc.patient()
    at_a = await book(svc, reception_a, "dr-ab", berlin(next_weekday(2), 9),
                      patient_id=patient_id)
    assert at_a.status_code == 201 and at_a.json()["location_id"] == A
    moved = await svc.client.post(
        f"/api/v1/appointments/{at_a.json()['id']}/reschedule",
        json={"start": berlin(next_weekday(3), 9).isoformat(), "location_id": B},
        headers=reception_a)
    assert_problem(moved, 403, "forbidden")


async def test_a_department_membership_reaches_its_hospitals_appointments(svc: Service
                                                                         ) -> None:
    ids = await two_hospitals(svc)
    _, nurse = await svc.staff("nurse", A, department="cardiology-a")
    listed = await svc.client.get("/api/v1/appointments", headers=nurse)
    assert [a["id"] for a in listed.json()["items"]] == [ids[A]]


async def test_removal_ends_access_in_any_order_and_redelivery_does_not_revive_it(
        svc: Service) -> None:
    ids = await two_hospitals(svc)
    membership, nurse = await svc.staff("nurse", A)
    url = f"/api/v1/appointments/{ids[A]}"
    assert (await svc.client.get(url, headers=nurse)).status_code == 200

    removed_at = datetime.now(UTC).isoformat()
    await svc.staff_event("staff.removed", membership, removed_at=removed_at)
    assert_problem(await svc.client.get(url, headers=nurse), 404, "appointment-not-found")
    assert (await svc.client.get("/api/v1/appointments", headers=nurse)).json()["items"] == []
    # the assignment delivered again (a late copy, another event id) brings nothing back
    await svc.staff_event("staff.assigned", membership)
    assert_problem(await svc.client.get(url, headers=nurse), 404, "appointment-not-found")

    # removal first, assignment after (out of order): never active
    late = {"hospital_id": A, "department_id": None, "user_id": "nurse-late",
            "staff_role": "nurse", "membership_id": str(uuid.uuid4())}
    await svc.staff_event("staff.removed", late, removed_at=removed_at)
    await svc.staff_event("staff.assigned", late)
    late_nurse = svc.tokens.headers("nurse-late", roles=["nurse"])
    assert_problem(await svc.client.get(url, headers=late_nurse), 404, "appointment-not-found")

    # re-assigned: a new membership, access again
    await svc.staff("nurse", A, sub="nurse-late")
    assert (await svc.client.get(url, headers=late_nurse)).status_code == 200
    docs = await svc.runtime.db["staff_memberships"].find({"user_id": "nurse-late"}).to_list()
    assert sorted(d["removed_at"] is None for d in docs) == [False, True]


async def test_appointments_booked_before_tenancy_are_adopted_into_their_hospitals(
        svc: Service) -> None:
    ids = await two_hospitals(svc)
    _, patient = svc.patient()
    online = (await book(svc, patient, "dr-b", berlin(next_weekday(4), 14),
                         mode="online")).json()["id"]
    appointments = svc.runtime.db[store.APPOINTMENTS]
    await appointments.update_many({}, {"$unset": {"hospital_ids": ""}})
    _, care_b = await svc.staff("patient_care", B)
    assert (await svc.client.get("/api/v1/appointments", headers=care_b)).json()["items"] == []

    assert await store.adopt_hospitals(svc.runtime.db) == 3
    assert await store.adopt_hospitals(svc.runtime.db) == 0
    # the app ran it at its start and recorded it, so later starts do not scan again
    assert await svc.runtime.db["migrations"].find_one(
        {"_id": "appointments.hospital_ids"}) is not None
    listed = await svc.client.get("/api/v1/appointments", headers=care_b)
    assert {a["id"] for a in listed.json()["items"]} == {ids[B], online}
