"""Booking, lifecycle, ownership, policies and bad input through the HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from datetime import time as wall
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from healthflow.common.events.envelope import CloudEvent

from .conftest import Service, next_weekday, schedule, window

BERLIN = ZoneInfo("Europe/Berlin")
PROBLEM = "application/problem+json"


def berlin(day: Any, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, wall(hour, minute), tzinfo=BERLIN)


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"].endswith("/" + slug), body
    return body


async def book(svc: Service, headers: dict[str, str], doctor: str, start: datetime,
               **extra: Any) -> httpx.Response:
    return await svc.client.post(
        "/api/v1/appointments",
        json={"doctor_id": doctor, "start": start.isoformat(), **extra}, headers=headers)


async def test_full_lifecycle_with_reschedule_history_and_events(svc: Service) -> None:
    await svc.publish_doctor(schedule("dr-life"))
    doctor = svc.tokens.headers("user-dr-life", roles=["doctor"])
    patient_id, patient = svc.patient()
    monday = next_weekday(1)
    created = await book(
        svc, patient, "dr-life", berlin(monday, 9, 30), reason="chest pain since Tuesday",
        preferences={"interpreter_language": "ar", "accessibility_needs": ["wheelchair"],
                     "preferred_practitioner_gender": "female", "notes_for_staff": "anxious"},
    )
    assert created.status_code == 201, created.text
    appt = created.json()
    assert appt["status"] == "booked" and appt["patient_id"] == patient_id
    assert appt["timezone"] == "Europe/Berlin" and appt["location_id"] == "h1"
    assert datetime.fromisoformat(appt["end"]) - datetime.fromisoformat(appt["start"]) == \
        timedelta(minutes=30)
    aid = appt["id"]

    # The event carries ids, times and the zone; never the reason or preferences.
    [event] = await svc.outbox("appointment.booked", aid)
    envelope = event["envelope"]
    assert envelope["patientid"] == patient_id and envelope["actor"] == patient_id
    assert envelope["data"]["doctor_user_id"] == "user-dr-life"
    assert envelope["data"]["timezone"] == "Europe/Berlin"
    assert "chest" not in str(envelope) and "anxious" not in str(envelope)

    # The doctor sees it in their day (their time zone); another patient cannot read it.
    day = await svc.client.get("/api/v1/appointments", params={"date": monday.isoformat()},
                               headers=doctor)
    assert [a["id"] for a in day.json()["items"]] == [aid]
    _, stranger = svc.patient()
    assert_problem(await svc.client.get(f"/api/v1/appointments/{aid}", headers=stranger),
                   403, "forbidden")
    assert (await svc.client.get("/api/v1/appointments", headers=stranger)).json()["items"] == []

    # Only the doctor or staff confirm; a patient cannot.
    assert_problem(await svc.client.post(f"/api/v1/appointments/{aid}/confirm",
                                         headers=patient), 403, "forbidden")
    other_doctor = svc.tokens.headers("user-dr-other", roles=["doctor"])
    assert_problem(await svc.client.post(f"/api/v1/appointments/{aid}/confirm",
                                         headers=other_doctor), 403, "forbidden")
    confirmed = await svc.client.post(f"/api/v1/appointments/{aid}/confirm", headers=doctor)
    assert confirmed.json()["status"] == "confirmed"

    # The patient reschedules: history kept, back to booked, old slot free again.
    moved = await svc.client.post(f"/api/v1/appointments/{aid}/reschedule",
                                  json={"start": berlin(monday, 11).isoformat()},
                                  headers=patient)
    assert moved.status_code == 200, moved.text
    body = moved.json()
    assert body["status"] == "booked"
    assert datetime.fromisoformat(body["start"]) == berlin(monday, 11)
    [entry] = body["reschedules"]
    assert datetime.fromisoformat(entry["previous_start"]) == berlin(monday, 9, 30)
    assert entry["by"] == patient_id and entry["by_role"] == "patient"
    _, other_patient = svc.patient()
    assert (await book(svc, other_patient, "dr-life", berlin(monday, 9, 30))).status_code == 201
    assert_problem(await book(svc, other_patient, "dr-life", berlin(monday, 11)),
                   409, "slot-already-booked")

    # Check in, complete; then nothing more.
    assert_problem(await svc.client.post(f"/api/v1/appointments/{aid}/complete",
                                         headers=doctor), 409, "invalid-transition")
    staff = (await svc.staff("patient_care"))[1]
    assert (await svc.client.post(f"/api/v1/appointments/{aid}/check-in",
                                  headers=staff)).json()["status"] == "checked_in"
    done = await svc.client.post(f"/api/v1/appointments/{aid}/complete", headers=doctor)
    assert done.json()["status"] == "completed"
    assert [h["status"] for h in done.json()["status_history"]] == [
        "booked", "confirmed", "checked_in", "completed"]
    assert_problem(await svc.client.post(f"/api/v1/appointments/{aid}/cancel",
                                         json={"reason_code": "other"}, headers=staff),
                   409, "invalid-transition")
    for type_ in ("confirmed", "rescheduled", "checked_in", "completed"):
        [e] = await svc.outbox(f"appointment.{type_}", aid)
        assert e["envelope"]["patientid"] == patient_id


async def test_cancel_releases_the_slot_and_records_who_and_why(svc: Service) -> None:
    await svc.publish_doctor(schedule("dr-cancel"))
    patient_id, patient = svc.patient()
    start = berlin(next_weekday(3), 10)
    aid = (await book(svc, patient, "dr-cancel", start)).json()["id"]
    cancelled = await svc.client.post(
        f"/api/v1/appointments/{aid}/cancel",
        json={"reason_code": "patient_request", "note": "feeling better"}, headers=patient)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["cancellation"]["by_role"] == "patient"
    [event] = await svc.outbox("appointment.cancelled", aid)
    data = event["envelope"]["data"]
    assert data["cancelled_by"] == patient_id and data["reason_code"] == "patient_request"
    assert "feeling" not in str(event["envelope"])
    assert await svc.runtime.db["slot_locks"].count_documents({"appointment_id": aid}) == 0
    _, someone = svc.patient()
    assert (await book(svc, someone, "dr-cancel", start)).status_code == 201
    # The same patient can rebook too (their own locks were released).
    assert (await book(svc, patient, "dr-cancel", start + timedelta(minutes=30))
            ).status_code == 201


async def test_a_patient_cannot_hold_two_overlapping_appointments(svc: Service) -> None:
    await svc.publish_doctor(schedule("dr-p1"))
    await svc.publish_doctor(schedule("dr-p2", slot_minutes=20,
                                      windows=[window(4, "09:10", "12:00", hospital="h2")]))
    _, patient = svc.patient()
    thursday = next_weekday(4)
    assert (await book(svc, patient, "dr-p1", berlin(thursday, 9, 30))).status_code == 201
    # 09:50–10:10 with another doctor on another grid overlaps 09:30–10:00.
    assert_problem(await book(svc, patient, "dr-p2", berlin(thursday, 9, 50)),
                   409, "patient-already-booked")
    assert (await book(svc, patient, "dr-p2", berlin(thursday, 10, 10))).status_code == 201


async def test_online_consultation_with_a_fee_awaits_payment(svc: Service) -> None:
    await svc.publish_doctor(schedule("dr-online"))
    _, patient = svc.patient()
    resp = await book(svc, patient, "dr-online", berlin(next_weekday(2), 14, 30), mode="online")
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["status"] == "pending_payment" and body["location_id"] is None
    assert (body["fee_amount"], body["fee_currency"]) == (4000, "EUR")


def paid(appointment_id: str, patient_id: str, type_: str = "payment.succeeded",
         status: str | None = None) -> CloudEvent:
    """``payment.succeeded`` (or ``payment.expired``) as the payment service publishes it."""
    return CloudEvent(source="/healthflow/payment", type=type_,
                      subject="payment/p1", data={
                          "payment_id": "p1", "appointment_id": appointment_id,
                          "patient_id": patient_id, "amount": 4000, "currency": "EUR",
                          "status": status or type_.split(".")[1], "intent_id": "pi_1"})


async def test_a_booking_refused_for_unverified_coverage_says_so(svc: Service) -> None:
    """Payment refuses to open a hold where the hospital requires eligibility and the
    patient has no coverage verified in force (``payment.expired``, status ``refused``):
    the cancellation names that reason, not an unpaid hold."""
    await svc.publish_doctor(schedule("dr-eligible"))
    patient_id, patient = svc.patient()
    held = (await book(svc, patient, "dr-eligible", berlin(next_weekday(3), 15),
                       mode="online")).json()
    await svc.runtime.transport.publish(
        paid(held["id"], patient_id, "payment.expired", status="refused"))
    after = (await svc.client.get(f"/api/v1/appointments/{held['id']}",
                                  headers=patient)).json()
    assert (after["status"], after["cancellation"]["reason_code"]) == (
        "cancelled", "coverage_not_verified")


async def test_an_expired_payment_cancels_the_hold_and_frees_the_slot(svc: Service) -> None:
    await svc.publish_doctor(schedule("dr-unpaid"))
    patient_id, patient = svc.patient()
    start = berlin(next_weekday(3), 15)
    held = (await book(svc, patient, "dr-unpaid", start, mode="online")).json()
    _, other = svc.patient()
    assert_problem(await book(svc, other, "dr-unpaid", start, mode="online"),
                   409, "slot-already-booked")
    await svc.runtime.transport.publish(paid(held["id"], patient_id, "payment.expired"))
    await svc.runtime.transport.publish(paid(held["id"], patient_id))  # too late: no effect
    after = (await svc.client.get(f"/api/v1/appointments/{held['id']}",
                                  headers=patient)).json()
    assert after["status"] == "cancelled"
    assert after["cancellation"]["reason_code"] == "payment_not_received"
    assert after["cancellation"]["by_role"] == "system"
    [cancelled] = await svc.outbox("appointment.cancelled", held["id"])
    assert cancelled["envelope"]["data"]["reason_code"] == "payment_not_received"
    assert (await book(svc, other, "dr-unpaid", start, mode="online")).status_code == 201


async def test_a_payment_confirms_a_pending_appointment_once(svc: Service) -> None:
    await svc.publish_doctor(schedule("dr-paid"))
    patient_id, patient = svc.patient()
    held = (await book(svc, patient, "dr-paid", berlin(next_weekday(3), 14, 30),
                       mode="online")).json()
    assert held["status"] == "pending_payment"
    # staff cannot confirm an appointment that waits for its payment
    assert_problem(await svc.client.post(f"/api/v1/appointments/{held['id']}/confirm",
                                         headers=(await svc.staff("patient_care"))[1]),
                   409, "invalid-transition")
    await svc.runtime.transport.publish(paid(held["id"], patient_id))
    await svc.runtime.transport.publish(paid(held["id"], patient_id))  # redelivered
    after = (await svc.client.get(f"/api/v1/appointments/{held['id']}",
                                  headers=patient)).json()
    assert after["status"] == "confirmed"
    assert [h["status"] for h in after["status_history"]] == [
        "pending_payment", "booked", "confirmed"]
    assert len(await svc.outbox("appointment.confirmed", held["id"])) == 1


async def test_bad_input_gets_precise_problems(svc: Service) -> None:
    await svc.publish_doctor(schedule("dr-bad"))
    await svc.publish_doctor(schedule("dr-unverified", bookable=False))
    _, patient = svc.patient()
    monday = next_weekday(1)
    last_week = berlin(datetime.now(UTC).date() - timedelta(days=7), 9)
    assert_problem(await book(svc, patient, "dr-bad", last_week), 422, "slot-in-past")
    assert_problem(await book(svc, patient, "dr-bad", berlin(monday, 13)),
                   422, "outside-availability")
    grid = assert_problem(await book(svc, patient, "dr-bad", berlin(monday, 9, 10)),
                          422, "off-slot-grid")
    assert len(grid["nearest_slots"]) == 2
    assert_problem(await book(svc, patient, "dr-nobody", berlin(monday, 9)),
                   404, "unknown-doctor")
    assert_problem(await book(svc, patient, "dr-unverified", berlin(monday, 9)),
                   409, "doctor-not-bookable")
    naive = await svc.client.post(
        "/api/v1/appointments",
        json={"doctor_id": "dr-bad", "start": f"{monday.isoformat()}T09:00:00"},
        headers=patient)
    assert "time-zone offset" in assert_problem(naive, 422, "validation")["detail"]
    extra = await svc.client.post(
        "/api/v1/appointments",
        json={"doctor_id": "dr-bad", "start": berlin(monday, 9).isoformat(), "price": 0},
        headers=patient)
    assert_problem(extra, 422, "validation")

    def slots(**params: str) -> Any:
        return svc.client.get("/api/v1/slots", params={"doctor_id": "dr-bad", **params},
                              headers=patient)

    start = berlin(monday, 0)
    ok = await slots(**{"from": start.isoformat(), "to": (start + timedelta(days=1)).isoformat()})
    assert len(ok.json()["items"]) == 6 + 4  # 09–12 in person, 14–16 online
    naive_from = await slots(**{"from": f"{monday.isoformat()}T00:00:00",
                                "to": (start + timedelta(days=1)).isoformat()})
    assert "time-zone offset" in assert_problem(naive_from, 422, "validation")["detail"]
    too_long = await slots(**{"from": start.isoformat(),
                              "to": (start + timedelta(days=32)).isoformat()})
    assert "31 days" in assert_problem(too_long, 422, "validation")["detail"]
    assert_problem(await slots(**{"from": start.isoformat(), "to": start.isoformat()}),
                   422, "validation")
    unverified = await svc.client.get(
        "/api/v1/slots", headers=patient,
        params={"doctor_id": "dr-unverified", "from": start.isoformat(),
                "to": (start + timedelta(days=1)).isoformat()})
    assert_problem(unverified, 409, "doctor-not-bookable")


async def test_roles_and_owners_are_enforced(svc: Service) -> None:
    await svc.publish_doctor(schedule("dr-roles"))
    tuesday = next_weekday(2)
    doctor = svc.tokens.headers("user-dr-roles", roles=["doctor"])
    assert_problem(await book(svc, doctor, "dr-roles", berlin(tuesday, 9)), 403, "forbidden")
    patient_id, patient = svc.patient()
    assert_problem(await book(svc, patient, "dr-roles", berlin(tuesday, 9),
                              patient_id="someone-else"), 403, "forbidden")
    staff = (await svc.staff("patient_care"))[1]
    assert_problem(await book(svc, staff, "dr-roles", berlin(tuesday, 9)), 422, "validation")
    by_staff = await book(svc, staff, "dr-roles", berlin(tuesday, 9), patient_id=patient_id)
    assert by_staff.status_code == 201 and by_staff.json()["booked_by_role"] == "staff"
    aid = by_staff.json()["id"]
    # The patient sees it; a nurse reads but cannot manage; an admin sees all.
    assert (await svc.client.get(f"/api/v1/appointments/{aid}", headers=patient)
            ).status_code == 200
    nurse = (await svc.staff("nurse"))[1]
    assert (await svc.client.get(f"/api/v1/appointments/{aid}", headers=nurse)
            ).status_code == 200
    assert_problem(await svc.client.post(f"/api/v1/appointments/{aid}/check-in",
                                         headers=nurse), 403, "forbidden")
    admin = svc.as_role("admin")
    listed = await svc.client.get("/api/v1/appointments", params={"patient_id": patient_id},
                                  headers=admin)
    assert [a["id"] for a in listed.json()["items"]] == [aid]
    assert_problem(await svc.client.get("/api/v1/appointments"), 401, "unauthorized")
    assert_problem(await svc.client.get("/api/v1/appointments/nope", headers=admin),
                   404, "appointment-not-found")


async def test_patients_cannot_cancel_or_reschedule_inside_the_window(svc: Service) -> None:
    # Slots around the clock in UTC so one starts within the next two hours.
    windows = [window(d, "00:00", "24:00", timezone="UTC") for d in range(1, 8)]
    await svc.publish_doctor(schedule("dr-soon", timezone="UTC", windows=windows))
    now = datetime.now(UTC)
    soon = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    _, patient = svc.patient()
    aid = (await book(svc, patient, "dr-soon", soon)).json()["id"]
    closed = assert_problem(
        await svc.client.post(f"/api/v1/appointments/{aid}/cancel",
                              json={"reason_code": "patient_request"}, headers=patient),
        409, "change-window-closed")
    assert "120 minutes" in closed["detail"] and "window_closed_at" in closed
    assert_problem(
        await svc.client.post(f"/api/v1/appointments/{aid}/reschedule",
                              json={"start": (soon + timedelta(days=1)).isoformat()},
                              headers=patient),
        409, "change-window-closed")
    staff = (await svc.staff("receptionist"))[1]
    overridden = await svc.client.post(f"/api/v1/appointments/{aid}/cancel",
                                       json={"reason_code": "scheduling_error"}, headers=staff)
    assert overridden.status_code == 200 and overridden.json()["status"] == "cancelled"


async def test_daylight_saving_changes(svc: Service) -> None:
    """Europe/Berlin: 2027-03-28 02:00 → 03:00 and 2027-10-31 03:00 → 02:00."""
    await svc.publish_doctor(schedule("dr-dst", windows=[window(7, "00:00", "04:00")]))
    _, patient = svc.patient()

    spring = await svc.client.get("/api/v1/slots", headers=patient, params={
        "doctor_id": "dr-dst", "from": "2027-03-27T12:00:00Z", "to": "2027-03-28T12:00:00Z"})
    starts = [datetime.fromisoformat(s["start"]) for s in spring.json()["items"]]
    assert [s.astimezone(BERLIN).strftime("%H:%M%z") for s in starts] == [
        "00:00+0100", "00:30+0100", "01:00+0100", "01:30+0100", "03:00+0200", "03:30+0200"]
    # "02:30+01:00" is a real instant (03:30 CEST): accepted as that slot.
    resp = await book(svc, patient, "dr-dst", datetime.fromisoformat("2027-03-28T02:30:00+01:00"))
    assert resp.status_code == 201, resp.text
    assert datetime.fromisoformat(resp.json()["start"]) == datetime(2027, 3, 28, 1, 30,
                                                                    tzinfo=UTC)
    # The wall time 02:30 without an offset names no instant at all.
    naive = await svc.client.post("/api/v1/appointments", headers=patient, json={
        "doctor_id": "dr-dst", "start": "2027-03-28T02:30:00"})
    assert_problem(naive, 422, "validation")

    autumn = await svc.client.get("/api/v1/slots", headers=patient, params={
        "doctor_id": "dr-dst", "from": "2027-10-30T12:00:00+02:00",
        "to": "2027-10-31T12:00:00+01:00"})
    local = [datetime.fromisoformat(s["start"]).astimezone(BERLIN).strftime("%H:%M%z")
             for s in autumn.json()["items"]]
    assert local == ["00:00+0200", "00:30+0200", "01:00+0200", "01:30+0200",
                     "02:00+0200", "02:30+0200", "03:00+0100", "03:30+0100"]
    # 02:30 CET (the repeated hour) is not a slot: it is off the grid inside no slot.
    repeated = await book(svc, patient, "dr-dst",
                          datetime.fromisoformat("2027-10-31T02:30:00+01:00"))
    assert_problem(repeated, 422, "outside-availability")
    ok = await book(svc, patient, "dr-dst", datetime.fromisoformat("2027-10-31T02:30:00+02:00"))
    assert ok.status_code == 201, ok.text
    # The doctor's day is the local day in Berlin (25 hours long on 2027-10-31).
    doctor = svc.tokens.headers("user-dr-dst", roles=["doctor"])
    day = await svc.client.get("/api/v1/appointments", params={"date": "2027-10-31"},
                               headers=doctor)
    assert [a["id"] for a in day.json()["items"]] == [ok.json()["id"]]


async def test_doctor_events_out_of_order_keep_the_newest_version(svc: Service) -> None:
    await svc.publish_doctor(schedule("dr-stale", slot_minutes=20, version=2))
    await svc.publish_doctor(schedule("dr-stale", slot_minutes=60, version=1))  # late, older
    doc = await svc.runtime.db["doctor_schedules"].find_one({"_id": "dr-stale"})
    assert doc is not None and doc["slot_minutes"] == 20 and doc["version"] == 2
    await svc.publish_doctor(schedule("dr-stale", bookable=False, version=3))  # licence pulled
    _, patient = svc.patient()
    assert_problem(await book(svc, patient, "dr-stale", berlin(next_weekday(1), 9)),
                   409, "doctor-not-bookable")
