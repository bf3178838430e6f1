"""The read models the doctor service keeps from other services' events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from healthflow.common.events.envelope import CloudEvent
from healthflow.doctor import schedules


async def handled(p, event_id: str) -> None:
    async def seen() -> bool:
        return await p.db["inbox"].find_one({"_id": event_id}) is not None

    await p.eventually(seen, what=f"event {event_id} in the doctor inbox")


async def test_older_or_repeated_hospital_events_change_nothing(platform):
    p = platform
    hid = await p.add_hospital("Ordered General")
    await p.add_doctor("doc-r", affiliations=[{"hospital_id": hid}])
    before = await p.db["hospitals"].find_one({"_id": hid})
    doctor_before = await p.db["doctors"].find_one({"_id": "doc-r"})
    assert before["verified"] is True and before["version"] == 2
    stale = CloudEvent(source="/healthflow/hospital", type="hospital.registered",
                       subject=f"hospital/{hid}",
                       data={"hospital_id": hid, "version": 1, "name": "Old name",
                             "city": "Bonn", "country": "DE", "time_zone": "Europe/Berlin",
                             "status": "pending", "services": [], "registered_by": "rep-1"})
    await p.transport.publish(stale)
    await handled(p, stale.id)
    await p.transport.publish(stale)  # a redelivery: the inbox makes it a no-op
    assert await p.db["hospitals"].find_one({"_id": hid}) == before
    assert await p.db["doctors"].find_one({"_id": "doc-r"}) == doctor_before
    assert await p.db["inbox"].count_documents({"_id": stale.id}) == 1


async def test_bookings_of_unknown_doctors_are_kept_for_later(platform):
    p = platform
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    await p.publish_booking("appointment.booked", appointment_id="a-x", doctor_id="nobody",
                            start=start, end=start + timedelta(minutes=30), status="booked")

    async def stored() -> bool:
        return await p.db["bookings"].find_one({"_id": "a-x"}) is not None

    await p.eventually(stored, what="the booking in the read model")
    assert await p.transport.dead_letters("doctor") == []


async def test_daily_refresh_recomputes_stale_search_dates(platform):
    p = platform
    await p.add_doctor("doc-s")
    r = await p.put_availability("doc-s", {"slot_minutes": 60, "weekly": [
        {"location": "online", "day": day, "start": "09:00", "end": "10:00"}
        for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")]})
    assert r.status_code == 200, r.text
    fresh = (await p.db["doctors"].find_one({"_id": "doc-s"}))["open_dates"]
    assert len(fresh) >= 2 * 58  # every day of the horizon, plain and /online
    yesterday = datetime.now(UTC) - timedelta(days=1)
    await p.db["doctors"].update_one({"_id": "doc-s"}, {"$set": {
        "open_dates": [], "open_dates_from": yesterday}})
    midnight = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), tzinfo=UTC)
    refreshed = await schedules.refresh_open_dates(p.runtime.transact, p.db, older_than=midnight)
    assert refreshed == 1
    doc = await p.db["doctors"].find_one({"_id": "doc-s"})
    assert doc["open_dates"] == fresh and doc["open_dates_from"] > yesterday
    assert await schedules.refresh_open_dates(p.runtime.transact, p.db, older_than=midnight) == 0
