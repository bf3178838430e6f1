"""``patients:read_any`` reaches the patients of the caller's hospitals only (issue 16).

Two hospitals, A and B. A patient belongs to the hospitals of their appointments
(``hospital_ids`` of appointment events) and encounters (``encounter.started``);
memberships arrive as ``staff.assigned`` / ``staff.removed``, as in production.
"""

from __future__ import annotations

from datetime import UTC, datetime

from .conftest import PatientService, appointment_data
from .test_patients import problem

A, B = "hosp-a", "hosp-b"


async def patients_of_two_hospitals(psvc: PatientService) -> dict[str, str]:
    """One patient booked at A (an appointment event), one walked in at B (an encounter),
    one of no hospital yet. Returns their ids by hospital (``None`` for the last)."""
    at_a = await psvc.register(full_name="Tenant Alpha")
    await psvc.deliver("appointment.booked", appointment_data(
        appointment_id=f"appt-{at_a}", patient_id=at_a, doctor_id="d-a",
        doctor_user_id="doc-a", location_id=A, hospital_ids=[A]))
    at_b = await psvc.register(full_name="Tenant Bravo")
    await psvc.encounter_started(at_b, B)
    nowhere = await psvc.register(full_name="Tenant Charlie")
    return {A: at_a, B: at_b, "none": nowhere}


def same_as_missing(there: dict[str, str], absent: dict[str, str], pid: str,
                    missing: str) -> None:
    assert there["detail"].replace(pid, "ID") == absent["detail"].replace(missing, "ID")
    assert set(there) == set(absent)


async def test_staff_of_a_find_and_read_only_patients_of_a(psvc: PatientService) -> None:
    ids = await patients_of_two_hospitals(psvc)
    _, care_a = await psvc.staff("patient_care", A)
    _, nurse_a = await psvc.staff("nurse", A)
    for headers in (care_a, nurse_a):
        found = await psvc.client.get("/api/v1/patients", params={"name": "tenant"},
                                      headers=headers)
        assert [p["id"] for p in found.json()["items"]] == [ids[A]], found.text
        assert (await psvc.client.get(f"/api/v1/patients/{ids[A]}", headers=headers)
                ).status_code == 200
        missing = "pat-missing"
        absent = problem(await psvc.client.get(f"/api/v1/patients/{missing}",
                                               headers=headers), 404, "patient-not-found")
        for other in (ids[B], ids["none"]):
            there = problem(await psvc.client.get(f"/api/v1/patients/{other}",
                                                  headers=headers), 404, "patient-not-found")
            same_as_missing(there, absent, other, missing)
    # nothing was read of B's patient, so nothing was recorded about them
    assert await psvc.outbox("patient.record_accessed", ids[B]) == []

    # admins hold no patients:read_any by themselves; one who is a nurse too reads everywhere
    admin = psvc.tokens.headers("admin-1", roles=["admin", "nurse"])
    everyone = await psvc.client.get("/api/v1/patients", params={"name": "tenant"},
                                     headers=admin)
    assert sorted(p["id"] for p in everyone.json()["items"]) == sorted(ids.values())
    for pid in ids.values():
        assert (await psvc.client.get(f"/api/v1/patients/{pid}", headers=admin)
                ).status_code == 200

    unassigned = psvc.tokens.headers("care-nowhere", roles=["patient_care"])
    nothing = await psvc.client.get("/api/v1/patients", params={"name": "tenant"},
                                    headers=unassigned)
    assert nothing.status_code == 200 and nothing.json()["items"] == []


async def test_a_later_appointment_at_b_makes_the_patient_one_of_b_too(
        psvc: PatientService) -> None:
    ids = await patients_of_two_hospitals(psvc)
    _, care_b = await psvc.staff("patient_care", B)
    chart = f"/api/v1/patients/{ids[A]}"
    problem(await psvc.client.get(chart, headers=care_b), 404, "patient-not-found")
    await psvc.deliver("appointment.booked", appointment_data(
        appointment_id="appt-b", patient_id=ids[A], doctor_id="d-b", doctor_user_id="doc-b",
        location_id=B, hospital_ids=[B]))
    assert (await psvc.client.get(chart, headers=care_b)).status_code == 200
    found = await psvc.client.get("/api/v1/patients", params={"name": "tenant"},
                                  headers=care_b)
    assert sorted(p["id"] for p in found.json()["items"]) == sorted([ids[A], ids[B]])


async def test_hospitals_heard_of_before_the_profile_are_kept(psvc: PatientService) -> None:
    pid = "pat-early"
    await psvc.encounter_started(pid, A)  # before user.registered
    await psvc.register(pid, full_name="Tenant Early")
    _, care_a = await psvc.staff("patient_care", A)
    assert (await psvc.client.get(f"/api/v1/patients/{pid}", headers=care_a)
            ).status_code == 200
    found = await psvc.client.get("/api/v1/patients", params={"name": "tenant early"},
                                  headers=care_a)
    assert [p["id"] for p in found.json()["items"]] == [pid]


async def test_a_removed_membership_ends_access(psvc: PatientService) -> None:
    ids = await patients_of_two_hospitals(psvc)
    membership, care_a = await psvc.staff("patient_care", A)
    chart = f"/api/v1/patients/{ids[A]}"
    assert (await psvc.client.get(chart, headers=care_a)).status_code == 200
    await psvc.deliver("staff.removed", {**membership,
                                         "removed_at": datetime.now(UTC).isoformat()})
    problem(await psvc.client.get(chart, headers=care_a), 404, "patient-not-found")
    found = await psvc.client.get("/api/v1/patients", params={"name": "tenant"},
                                  headers=care_a)
    assert found.json()["items"] == []
    # a late redelivery of the assignment does not bring it back
    await psvc.deliver("staff.assigned", membership)
    problem(await psvc.client.get(chart, headers=care_a), 404, "patient-not-found")
