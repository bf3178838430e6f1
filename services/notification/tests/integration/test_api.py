"""The HTTP API: preferences, feed, delivery log search, permissions, problem+json."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from healthflow.common.events.envelope import CloudEvent
from healthflow.notification import store

from ..conftest import Notif, appointment, event, user_registered

START = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)
BASE = "/api/v1/notifications"


async def test_preferences_default_then_replace_and_validate(notif: Notif) -> None:
    me = notif.headers("pat-p")
    prefs = (await notif.client.get(f"{BASE}/preferences", headers=me)).json()
    assert prefs == {
        "user_id": "pat-p",
        "channels": {"email": True, "sms": True, "push": True, "in_app": True},
        "locale": "en", "timezone": None, "quiet_hours": "", "updated_at": None,
        "consent": {"email": True, "sms": True, "push": True}}
    put = await notif.client.put(f"{BASE}/preferences", headers=me, json={
        "channels": {"sms": False}, "locale": "de", "timezone": "America/New_York",
        "quiet_hours": "22:30-06:15"})
    assert put.status_code == 200, put.text
    prefs = (await notif.client.get(f"{BASE}/preferences", headers=me)).json()
    assert (prefs["channels"]["sms"], prefs["locale"], prefs["timezone"],
            prefs["quiet_hours"]) == (False, "de", "America/New_York", "22:30-06:15")
    for bad in ({"timezone": "Mars/Olympus"}, {"quiet_hours": "25:00-07:00"},
                {"quiet_hours": "07:00-07:00"}, {"locale": "xx"}, {"consent": {"sms": True}}):
        response = await notif.client.put(f"{BASE}/preferences", headers=me, json=bad)
        assert response.status_code == 422, bad
        assert response.headers["content-type"] == "application/problem+json"
    assert (await notif.client.get(f"{BASE}/preferences")).status_code == 401


async def test_an_opted_out_channel_is_not_used(notif: Notif) -> None:
    await notif.deliver(user_registered("pat-q", phone="+4915100000400"))
    await notif.client.put(f"{BASE}/preferences", headers=notif.headers("pat-q"),
                           json={"channels": {"sms": False}, "quiet_hours": ""})
    booked = appointment("appointment.booked", "appt-q", "pat-q", START)
    await notif.deliver(booked)
    await notif.settle()
    assert notif.twilio.to("+4915100000400") == []
    sms = (await notif.deliveries(source_id=booked.id, channel="sms"))[0]
    assert (sms["status"], sms["reason"]) == ("suppressed", "opted_out")


async def test_staff_search_the_delivery_log_patients_cannot(notif: Notif) -> None:
    await notif.deliver(user_registered("pat-a", phone="+4915100000501"),
                        user_registered("pat-b", phone="+4915100000502"))
    for n, user in enumerate(("pat-a", "pat-b", "pat-a")):
        notif.clock.advance(seconds=1)
        await notif.deliver(appointment("appointment.booked", f"appt-{n}", user, START))
    await notif.settle()
    url = f"{BASE}/deliveries"
    patient = await notif.client.get(url, headers=notif.headers("pat-a"))
    assert patient.status_code == 403
    assert patient.headers["content-type"] == "application/problem+json"
    await notif.deliver(staff_event("staff.assigned", "staff-1", "hosp-1"))
    for role in ("admin", "patient_care"):
        staff = notif.headers("staff-1", (role,))
        page = (await notif.client.get(url, headers=staff, params={
            "user_id": "pat-a", "channel": "sms", "status": "sent"})).json()
        assert [(i["user_id"], i["channel"], i["status"]) for i in page["items"]] == [
            ("pat-a", "sms", "sent")] * 2
        assert page["items"][0]["to"] == "+49*******0501"  # masked
        assert "content" not in page["items"][0] and "body" not in str(page)
        assert page["items"][0]["created_at"] > page["items"][1]["created_at"]
    staff = notif.headers("staff-1", ("patient_care",))
    first = (await notif.client.get(url, headers=staff, params={"limit": 2})).json()
    second = (await notif.client.get(url, headers=staff, params={
        "limit": 2, "cursor": first["next_cursor"]})).json()
    ids = [i["id"] for i in first["items"] + second["items"]]
    assert len(ids) == len(set(ids)) == 4
    bad = await notif.client.get(url, headers=staff, params={"cursor": "!!"})
    assert bad.status_code == 400
    assert (await notif.client.get(url, headers=staff, params={"status": "lost"})).status_code \
        == 422


def staff_event(type_: str, user_id: str, hospital_id: str, membership_id: str | None = None,
                **extra: Any) -> CloudEvent:
    """``staff.assigned`` / ``staff.removed`` as the hospital service publishes them."""
    return event(type_, {"hospital_id": hospital_id, "department_id": None,
                         "user_id": user_id, "staff_role": "patient_care",
                         "membership_id": membership_id or str(uuid.uuid4()), **extra},
                 subject=f"hospital/{hospital_id}")


async def test_staff_search_only_their_hospitals_deliveries(notif: Notif) -> None:
    """Issue 16: a delivery about an appointment shows to the staff of its hospitals (the
    location's in person, every hospital of the doctor online); one about no appointment
    to admins only; a removed membership shows nothing more."""
    await notif.deliver(user_registered("pat-h", phone="+4915100000701"))
    await notif.deliver(
        appointment("appointment.booked", "appt-1", "pat-h", START, hospital_ids=["hosp-1"]),
        appointment("appointment.booked", "appt-2", "pat-h", START, location_id="hosp-2",
                    hospital_ids=["hosp-2"]),
        appointment("appointment.booked", "appt-3", "pat-h", START, location_id=None,
                    mode="online", hospital_ids=["hosp-2", "hosp-3"]))
    await notif.settle()
    membership = str(uuid.uuid4())
    await notif.deliver(staff_event("staff.assigned", "care-2", "hosp-2", membership))
    url, care = f"{BASE}/deliveries", notif.headers("care-2", ("patient_care",))

    async def seen(headers: dict[str, str]) -> set[str | None]:
        page = (await notif.client.get(url, headers=headers, params={"limit": 100})).json()
        ids = {i["id"] for i in page["items"]}
        return {d.get("appointment_id") for d in await notif.deliveries() if d["_id"] in ids}

    assert await seen(care) == {"appt-2", "appt-3"}
    assert await seen(notif.headers("care-x", ("patient_care",))) == set()  # no membership
    assert await seen(notif.headers("adm", ("admin",))) == {None, "appt-1", "appt-2", "appt-3"}
    await notif.deliver(staff_event("staff.removed", "care-2", "hosp-2", membership,
                                    removed_at=datetime.now(UTC).isoformat()))
    assert await seen(care) == set()


async def test_deliveries_from_before_tenancy_are_adopted_into_their_hospitals(notif: Notif
                                                                               ) -> None:
    await notif.deliver(user_registered("pat-o", phone="+4915100000801"),
                        appointment("appointment.booked", "appt-old", "pat-o", START))
    await notif.settle()
    await notif.db["deliveries"].update_many({}, {"$unset": {"hospital_ids": ""}})
    await notif.deliver(staff_event("staff.assigned", "care-1", "hosp-1"))
    url, care = f"{BASE}/deliveries", notif.headers("care-1", ("patient_care",))
    assert (await notif.client.get(url, headers=care)).json()["items"] == []
    adopted = await store.adopt_delivery_hospitals(notif.db)
    assert adopted == len(await notif.deliveries(appointment_id="appt-old")) > 0
    assert await store.adopt_delivery_hospitals(notif.db) == 0
    items = (await notif.client.get(url, headers=care)).json()["items"]
    assert items and {i["user_id"] for i in items} == {"pat-o"}
    assert all(d["hospital_ids"] == ["hosp-1"]
               for d in await notif.deliveries(appointment_id="appt-old"))


async def test_users_read_and_mark_only_their_own_feed(notif: Notif) -> None:
    await notif.deliver(user_registered("pat-f"), user_registered("pat-g"))
    notif.clock.advance(seconds=1)
    await notif.deliver(appointment("appointment.booked", "appt-f", "pat-f", START))
    mine = notif.headers("pat-f")
    feed = (await notif.client.get(f"{BASE}/feed", headers=mine)).json()
    assert [i["template"] for i in feed["items"]] == ["appointment_booked", "welcome"]
    assert "09:30 CET" in feed["items"][0]["body"]
    item = feed["items"][0]["id"]
    other = await notif.client.post(f"{BASE}/feed/{item}/read",
                                    headers=notif.headers("pat-g"))
    assert other.status_code == 404
    read = await notif.client.post(f"{BASE}/feed/{item}/read", headers=mine)
    assert read.json()["read_at"] is not None
    unread = (await notif.client.get(f"{BASE}/feed", headers=mine,
                                     params={"unread": True})).json()
    assert [i["template"] for i in unread["items"]] == ["welcome"]
    marked = (await notif.client.post(f"{BASE}/feed/read-all", headers=mine)).json()
    assert marked == {"marked": 1}


async def test_a_deactivated_user_gets_nothing(notif: Notif) -> None:
    await notif.deliver(user_registered("pat-d", phone="+4915100000600"),
                        event("user.deactivated", {"user_id": "pat-d", "sessions_revoked": 1}))
    booked = appointment("appointment.booked", "appt-d", "pat-d", START)
    await notif.deliver(booked)
    await notif.settle()
    assert notif.twilio.to("+4915100000600") == []
    assert {d["reason"] for d in await notif.deliveries(source_id=booked.id)} == {"inactive"}


async def test_the_doctor_sees_bookings_in_the_feed_without_the_patients_name(
        notif: Notif) -> None:
    await notif.deliver(user_registered("pat-h", name="Hanna Private"),
                        user_registered("doc-user-1", name="Dr. Ada Lovelace"))
    await notif.deliver(appointment("appointment.booked", "appt-h", "pat-h", START))
    feed = (await notif.client.get(f"{BASE}/feed", headers=notif.headers(
        "doc-user-1", ("doctor",)))).json()
    [item] = [i for i in feed["items"] if i["template"] == "doctor_appointment_booked"]
    assert item["body"] == "HealthFlow: New booking: Wednesday, 25 November 2026, 09:30 CET."
    assert "Hanna" not in str(feed)
    patient_feed = (await notif.client.get(f"{BASE}/feed", headers=notif.headers(
        "pat-h"))).json()
    assert "doctor_appointment_booked" not in str(patient_feed)
