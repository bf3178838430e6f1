"""The HTTP API: preferences, feed, delivery log search, permissions, problem+json."""

from __future__ import annotations

from datetime import UTC, datetime

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
