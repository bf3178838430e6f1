"""The care journey (issue 4) through the gateway, as each role would do it: a verified
hospital in Europe/Berlin, a verified doctor's weekly hours, search, slots, booking,
rescheduling, cancelling, a booking by patient-care staff with special requests, check-in
and completion; wrong owners, wrong roles and bad input refused with precise problems;
the audit log holds it all, and its chain verifies. Slots are checked across the 2027
daylight-saving changes of Europe/Berlin.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from healthflow.devkit.testing import RunningPlatform, eventually

from .conftest import (
    BERLIN,
    User,
    assert_chain_ok,
    assert_problem,
    assign_staff,
    audit_events,
    create_doctor,
    create_staff,
    ok,
    publish_availability,
    register_hospital,
    register_patient,
    weekly_hours,
)

TZ = ZoneInfo(BERLIN)
SPECIALTY = "cardiology"


def next_weekday(iso_weekday: int, after_days: int = 7) -> date:
    """The first Berlin date with ``iso_weekday`` at least ``after_days`` from today."""
    day = datetime.now(TZ).date() + timedelta(days=after_days)
    while day.isoweekday() != iso_weekday:
        day += timedelta(days=1)
    return day


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ)


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


async def slots(api: httpx.AsyncClient, user: User, doctor_id: str, start: datetime,
                end: datetime) -> list[datetime]:
    """The free slot starts (aware UTC) of ``doctor_id`` in ``[start, end)``."""
    body = ok(await api.get("/api/v1/slots", headers=user.headers, params={
        "doctor_id": doctor_id, "from": start.isoformat(), "to": end.isoformat()}))
    assert body["doctor_id"] == doctor_id
    for item in body["items"]:
        assert item["timezone"] == BERLIN and item["mode"] == "in_person", item
    return [instant(item["start"]) for item in body["items"]]


async def search(api: httpx.AsyncClient, user: User, **params: str) -> set[str]:
    page = ok(await api.get("/api/v1/doctors", headers=user.headers,
                            params={"limit": 200, **params}))
    return {d["id"] for d in page["items"]}


async def book(api: httpx.AsyncClient, user: User, doctor_id: str, start: datetime,
               **extra: Any) -> httpx.Response:
    return await api.post("/api/v1/appointments", headers=user.headers,
                          json={"doctor_id": doctor_id, "start": start.isoformat(),
                                "mode": "in_person", **extra})


async def test_care_journey(platform: RunningPlatform, admin: User, compliance: User) -> None:
    async with platform.client() as api:
        # --- the admin registers and verifies a hospital with two departments; a second
        # hospital stays pending
        charite = await register_hospital(api, admin, f"Charité {uuid.uuid4().hex[:6]}",
                                          departments=["Cardiology", "Neurology"])
        pending = await register_hospital(api, admin, f"Pending Klinik {uuid.uuid4().hex[:6]}",
                                          departments=["Cardiology"], verify=False)
        patient = await register_patient(api, "journey")
        other_patient = await register_patient(api, "bystander")

        # wrong role: a patient cannot verify a hospital (nor a doctor, nor register one)
        assert_problem(await api.post(f"/api/v1/hospitals/{pending['id']}/verify",
                                      headers=patient.headers), 403, "forbidden")
        assert_problem(await api.post("/api/v1/hospitals", headers=patient.headers, json={
            "name": "Mine", "time_zone": BERLIN, "address": {"city": "Berlin",
                                                            "country": "DE"}}),
                       403, "forbidden")

        listed = {h["id"] for h in ok(await api.get(
            "/api/v1/hospitals", headers=patient.headers, params={"limit": 200}))["items"]}
        assert charite["id"] in listed and pending["id"] not in listed
        assert_problem(await api.get(f"/api/v1/hospitals/{pending['id']}",
                                     headers=patient.headers), 404)
        departments = ok(await api.get(f"/api/v1/hospitals/{charite['id']}/departments",
                                       headers=patient.headers))
        assert {d["name"] for d in departments} == {"Cardiology", "Neurology"}

        # --- doctors: one verified at the verified hospital, one never verified, one
        # verified but only at the pending hospital
        cardiology = charite["departments"]["Cardiology"]
        doctor, profile = await create_doctor(
            api, admin, family=f"Herz{uuid.uuid4().hex[:5]}",
            affiliations=[{"hospital_id": charite["id"], "department_id": cardiology}])
        unverified, _ = await create_doctor(
            api, admin, family=f"Warte{uuid.uuid4().hex[:5]}", verify=False,
            affiliations=[{"hospital_id": charite["id"], "department_id": cardiology}])
        elsewhere, _ = await create_doctor(
            api, admin, family=f"Anders{uuid.uuid4().hex[:5]}",
            affiliations=[{"hospital_id": pending["id"]}])
        # another doctor cannot verify a licence; a patient cannot see an unverified profile
        assert_problem(await api.post(f"/api/v1/doctors/{unverified.id}/verify",
                                      headers=doctor.headers), 403, "forbidden")
        assert_problem(await api.get(f"/api/v1/doctors/{unverified.id}",
                                     headers=patient.headers), 404)
        assert profile["affiliations"][0]["hospital_id"] == charite["id"]

        # weekly hours Mon–Fri 09:00–12:00 with a 10:30–11:00 break, and Sunday 01:00–04:00
        # (to see the daylight-saving changes), in the hospital's zone
        hours = weekly_hours(charite["id"], breaks=[{"start": "10:30", "end": "11:00"}])
        hours += weekly_hours(charite["id"], days=["sun"], start="01:00", end="04:00")
        availability = await publish_availability(api, doctor, hours)
        assert availability["time_zones"][f"hospital:{charite['id']}"] == BERLIN
        await publish_availability(api, unverified, weekly_hours(charite["id"]))
        await publish_availability(api, elsewhere, weekly_hours(pending["id"]))
        # another (verified, so visible) doctor's schedule is not this doctor's to change;
        # an unverified one's is not even visible to them
        assert_problem(await api.put(f"/api/v1/doctors/{elsewhere.id}/availability",
                                     headers=doctor.headers,
                                     json={"slot_minutes": 30, "weekly": []}), 403, "forbidden")
        assert_problem(await api.put(f"/api/v1/doctors/{unverified.id}/availability",
                                     headers=doctor.headers,
                                     json={"slot_minutes": 30, "weekly": []}), 404)

        # --- the patient searches by specialty and finds only the bookable doctor
        found: set[str] = set()

        async def listed_in_search() -> bool:
            nonlocal found
            found = await search(api, patient, specialty=SPECIALTY)
            return doctor.id in found

        await eventually(listed_in_search, within=20,
                         message="the verified doctor never appeared in the search")
        assert unverified.id not in found and elsewhere.id not in found, found
        assert doctor.id in await search(api, patient, specialty=SPECIALTY,
                                         hospital_id=charite["id"], language="en")
        assert not await search(api, patient, hospital_id=pending["id"])

        monday = next_weekday(1)
        week = (local(monday, 0), local(monday + timedelta(days=7), 0))
        free: list[datetime] = []

        async def has_slots() -> bool:
            nonlocal free
            response = await api.get("/api/v1/slots", headers=patient.headers, params={
                "doctor_id": doctor.id, "from": week[0].isoformat(),
                "to": week[1].isoformat()})
            if response.status_code in (404, 409):  # the schedule is still on its way
                return False
            free = await slots(api, patient, doctor.id, *week)
            return bool(free)

        await eventually(has_slots, within=20, message="the doctor's slots never appeared")
        monday_slots = [s for s in free if s.astimezone(TZ).date() == monday]
        assert [s.astimezone(TZ).strftime("%H:%M") for s in monday_slots] == [
            "09:00", "09:30", "10:00", "11:00", "11:30"], monday_slots
        assert len([s for s in free if s.astimezone(TZ).isoweekday() <= 5]) == 25

        # the unverified doctor and the doctor at the unverified hospital are not bookable
        for blocked in (unverified, elsewhere):
            async def refused(blocked: User = blocked) -> bool:
                response = await api.get("/api/v1/slots", headers=patient.headers, params={
                    "doctor_id": blocked.id, "from": week[0].isoformat(),
                    "to": week[1].isoformat()})
                return response.status_code == 409
            await eventually(refused, within=20,
                             message=f"{blocked.id}'s schedule never reached scheduling")
            assert_problem(await book(api, patient, blocked.id, local(monday, 9)), 409,
                           "doctor-not-bookable")

        # --- book, reschedule, cancel
        first = ok(await book(api, patient, doctor.id, local(monday, 9),
                              reason="chest pain when climbing stairs"), 201)
        assert first["status"] == "booked" and first["patient_id"] == patient.id
        assert instant(first["start"]) == local(monday, 9).astimezone(UTC)
        assert first["timezone"] == BERLIN and first["booked_by_role"] == "patient"
        assert first["fee_amount"] == 6000 and first["fee_currency"] == "EUR"
        # the slot is gone for everyone, and it cannot be taken twice
        assert local(monday, 9) not in await slots(api, other_patient, doctor.id, *week)
        assert_problem(await book(api, other_patient, doctor.id, local(monday, 9)), 409,
                       "slot-already-booked")

        moved = ok(await api.post(f"/api/v1/appointments/{first['id']}/reschedule",
                                  headers=patient.headers,
                                  json={"start": local(monday, 11).isoformat()}))
        assert instant(moved["start"]) == local(monday, 11).astimezone(UTC)
        assert [instant(r["previous_start"]) for r in moved["reschedules"]] == [
            local(monday, 9).astimezone(UTC)]
        assert local(monday, 9) in await slots(api, patient, doctor.id, *week)

        tuesday = monday + timedelta(days=1)
        second = ok(await book(api, patient, doctor.id, local(tuesday, 9, 30)), 201)
        cancelled = ok(await api.post(f"/api/v1/appointments/{second['id']}/cancel",
                                      headers=patient.headers,
                                      json={"reason_code": "patient_request",
                                            "note": "feeling better"}))
        assert cancelled["status"] == "cancelled"
        assert cancelled["cancellation"]["by"] == patient.id
        assert cancelled["cancellation"]["by_role"] == "patient"
        assert local(tuesday, 9, 30) in await slots(api, patient, doctor.id, *week)
        # a cancelled appointment stays cancelled
        assert_problem(await api.post(f"/api/v1/appointments/{second['id']}/cancel",
                                      headers=patient.headers,
                                      json={"reason_code": "other"}), 409,
                       "invalid-transition")

        # --- patient-care staff book for the other patient, with special requests
        care = await create_staff(api, admin, ["patient_care"])
        await assign_staff(api, admin, charite["id"], care, "patient_care")
        preferences = {"interpreter_language": "ar", "accessibility_needs": ["wheelchair"],
                       "preferred_practitioner_gender": "female",
                       "notes_for_staff": "arrives with a carer; quiet room please"}
        booked: dict[str, Any] = {}

        async def booked_by_staff() -> bool:
            # staff book only where they work: retried until the membership has arrived
            response = await book(api, care, doctor.id, local(tuesday, 10),
                                  patient_id=other_patient.id, preferences=preferences,
                                  reason="follow-up")
            if response.status_code == 403 and "staff membership" in response.text:
                return False
            booked.update(ok(response, 201))
            return True

        await eventually(booked_by_staff, within=20, interval=0.2,
                         message="the staff membership never reached the appointment service")
        on_behalf = booked
        assert on_behalf["patient_id"] == other_patient.id
        assert on_behalf["booked_by"] == care.id and on_behalf["booked_by_role"] == "staff"
        assert on_behalf["preferences"] == preferences
        seen = ok(await api.get(f"/api/v1/appointments/{on_behalf['id']}",
                                headers=other_patient.headers))
        assert seen["preferences"] == preferences
        own = ok(await api.get("/api/v1/appointments", headers=other_patient.headers))
        assert [a["id"] for a in own["items"]] == [on_behalf["id"]]
        # a patient cannot book for someone else
        assert_problem(await book(api, patient, doctor.id, local(tuesday, 11),
                                  patient_id=other_patient.id), 403, "forbidden")

        # --- wrong owner: the first patient on the other's appointment; another doctor
        for method, suffix, body in (("GET", "", None),
                                     ("POST", "/cancel", {"reason_code": "other"}),
                                     ("POST", "/reschedule",
                                      {"start": local(tuesday, 11).isoformat()})):
            assert_problem(await api.request(method, f"/api/v1/appointments/{on_behalf['id']}"
                                             f"{suffix}", headers=patient.headers, json=body),
                           403, "forbidden")
        assert_problem(await api.post(f"/api/v1/appointments/{first['id']}/check-in",
                                      headers=unverified.headers), 403, "forbidden")
        # a patient cannot check themselves in
        assert_problem(await api.post(f"/api/v1/appointments/{first['id']}/check-in",
                                      headers=patient.headers), 403, "forbidden")

        # --- the doctor's day: check in, complete
        day = ok(await api.get("/api/v1/appointments", headers=doctor.headers,
                               params={"date": monday.isoformat()}))
        assert [a["id"] for a in day["items"]] == [first["id"]]
        checked_in = ok(await api.post(f"/api/v1/appointments/{first['id']}/check-in",
                                       headers=doctor.headers))
        assert checked_in["status"] == "checked_in"
        completed = ok(await api.post(f"/api/v1/appointments/{first['id']}/complete",
                                      headers=doctor.headers))
        assert completed["status"] == "completed"
        assert [h["status"] for h in completed["status_history"]] == [
            "booked", "checked_in", "completed"]

        # --- bad input gets a precise problem
        last_monday = next_weekday(1, after_days=-7)
        body = assert_problem(await book(api, patient, doctor.id, local(last_monday, 9)),
                              422, "slot-in-past")
        assert "past" in body["detail"]
        saturday = monday + timedelta(days=5)
        assert_problem(await book(api, patient, doctor.id, local(saturday, 9)), 422,
                       "outside-availability")
        assert_problem(await book(api, patient, doctor.id, local(tuesday, 19)), 422,
                       "outside-availability")
        assert_problem(await book(api, patient, doctor.id, local(monday, 10, 30)), 422,
                       "outside-availability")  # the break
        assert_problem(await book(api, patient, doctor.id, local(monday, 9, 10)), 422,
                       "off-slot-grid")
        naive = await api.post("/api/v1/appointments", headers=patient.headers, json={
            "doctor_id": doctor.id, "start": local(monday, 9, 30).replace(tzinfo=None)
            .isoformat(), "mode": "in_person"})
        body = assert_problem(naive, 422, "validation")
        assert "offset" in body["detail"], body
        naive_range = await api.get("/api/v1/slots", headers=patient.headers, params={
            "doctor_id": doctor.id, "from": f"{monday.isoformat()}T00:00:00",
            "to": week[1].isoformat()})
        assert "offset" in assert_problem(naive_range, 422)["detail"]
        body = assert_problem(await book(api, patient, str(uuid.uuid4()), local(monday, 9)),
                              404, "unknown-doctor")
        assert_problem(await api.get("/api/v1/slots", headers=patient.headers, params={
            "doctor_id": str(uuid.uuid4()), "from": week[0].isoformat(),
            "to": week[1].isoformat()}), 404, "unknown-doctor")

        # --- the audit log, read by the compliance officer
        wanted = {"appointment.booked", "appointment.rescheduled", "appointment.cancelled",
                  "appointment.checked_in", "appointment.completed"}
        trail: list[dict[str, Any]] = []

        async def journey_audited() -> bool:
            nonlocal trail
            trail = await audit_events(api, compliance, patient=patient.id)
            return wanted <= {e["type"] for e in trail}

        await eventually(journey_audited, within=20,
                         message=f"the audit log lacks some of {sorted(wanted)}")
        kinds = [e["type"] for e in trail if e["type"].startswith("appointment.")]
        assert sorted(kinds) == sorted(["appointment.booked", "appointment.booked",
                                        "appointment.rescheduled", "appointment.cancelled",
                                        "appointment.checked_in", "appointment.completed"]
                                       ), kinds
        for entry in trail:
            assert entry["patientid"] == patient.id, entry
        booked = [e for e in trail if e["type"] == "appointment.booked"]
        assert {e["subject"] for e in booked} == {first["id"], second["id"]}
        assert all(e["actor"] == patient.id for e in booked)
        completed_entry = next(e for e in trail if e["type"] == "appointment.completed")
        assert completed_entry["actor"] == doctor.id

        async def staff_booking_audited() -> bool:
            entries = await audit_events(api, compliance, patient=other_patient.id,
                                         type="appointment.booked")
            return [e["subject"] for e in entries] == [on_behalf["id"]]

        await eventually(staff_booking_audited, within=20,
                         message="the staff booking is not in the audit log")
        staff_entry = (await audit_events(api, compliance, patient=other_patient.id,
                                          type="appointment.booked"))[0]
        assert staff_entry["actor"] == care.id
        assert staff_entry["envelope"]["data"]["booked_by_role"] == "staff"
        # special requests and the reason stay in the appointment service
        text = str(staff_entry["envelope"])
        assert "quiet room" not in text and "follow-up" not in text and "wheelchair" not in text
        hospital_entries = await audit_events(api, compliance,
                                              subject=f"hospital/{charite['id']}")
        assert {"hospital.registered", "hospital.verified"} <= {e["type"]
                                                                for e in hospital_entries}
        await assert_chain_ok(api, compliance)

        # --- daylight saving: wall-clock hours stay put, UTC moves (Europe/Berlin 2027)
        spring = (datetime(2027, 3, 27, tzinfo=TZ), datetime(2027, 3, 30, tzinfo=TZ))
        spring_slots = await slots(api, patient, doctor.id, *spring)
        sunday = [s for s in spring_slots if s.astimezone(TZ).date() == date(2027, 3, 28)]
        # 02:00–03:00 does not exist on 28 March 2027: no slot there, none doubled
        assert [s.astimezone(TZ).strftime("%H:%M") for s in sunday] == [
            "01:00", "01:30", "03:00", "03:30"], sunday
        assert [s.strftime("%H:%M") for s in sunday] == ["00:00", "00:30", "01:00", "01:30"]
        mondays = [s for s in spring_slots if s.astimezone(TZ).date() == date(2027, 3, 29)]
        assert mondays[0] == datetime(2027, 3, 29, 7, 0, tzinfo=UTC)  # 09:00 CEST
        autumn = (datetime(2027, 10, 30, tzinfo=TZ), datetime(2027, 11, 2, tzinfo=TZ))
        autumn_slots = await slots(api, patient, doctor.id, *autumn)
        sunday = [s for s in autumn_slots if s.astimezone(TZ).date() == date(2027, 10, 31)]
        # 02:00–03:00 happens twice on 31 October 2027: its first occurrence only
        assert [s.strftime("%H:%M") for s in sunday] == [
            "23:00", "23:30", "00:00", "00:30", "02:00", "02:30"], sunday
        mondays = [s for s in autumn_slots if s.astimezone(TZ).date() == date(2027, 11, 1)]
        assert mondays[0] == datetime(2027, 11, 1, 8, 0, tzinfo=UTC)  # 09:00 CET
        # a booking across the change is held at the local time in the hospital's zone
        after_change = ok(await book(api, other_patient, doctor.id,
                                     datetime(2027, 3, 29, 9, 0, tzinfo=TZ)), 201)
        assert instant(after_change["start"]) == datetime(2027, 3, 29, 7, 0, tzinfo=UTC)
        assert instant(after_change["end"]) - instant(after_change["start"]) == timedelta(
            minutes=30)
