"""Search (every filter through an index), availability and the free-date read model."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from healthflow.doctor import domain, schedules, store
from healthflow.doctor.domain import Mode

ADMIN = "admin-1"
BERLIN = ZoneInfo("Europe/Berlin")


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    return body


def upcoming(weekday: int, *, after: int = 2) -> date:
    """The first date with ISO ``weekday`` at least ``after`` days from today (UTC)."""
    day = datetime.now(UTC).date() + timedelta(days=after)
    while day.isoweekday() != weekday:
        day += timedelta(days=1)
    return day


def at(day: date, hhmm: str, zone: ZoneInfo = BERLIN) -> datetime:
    hours, minutes = map(int, hhmm.split(":"))
    return datetime.combine(day, time(hours, minutes), tzinfo=zone).astimezone(UTC)


def plan_stages(plan: dict[str, Any]) -> list[str]:
    stages = [plan.get("stage", "")]
    for key in ("inputStage", "outerStage", "innerStage"):
        if key in plan:
            stages += plan_stages(plan[key])
    for child in plan.get("inputStages", []):
        stages += plan_stages(child)
    return stages


async def assert_uses_index(p, query: dict[str, Any], index: str) -> None:
    plan = await p.db["doctors"].find(query).sort("sort_key", 1).hint(index).limit(10).explain()
    stages = plan_stages(plan["queryPlanner"]["winningPlan"])
    assert "IXSCAN" in stages and "COLLSCAN" not in stages, (query, stages)
    assert _index_names(plan["queryPlanner"]["winningPlan"]) == [index]


def _index_names(plan: dict[str, Any]) -> list[str]:
    names = [plan["indexName"]] if "indexName" in plan else []
    for key in ("inputStage", "outerStage", "innerStage"):
        if key in plan:
            names += _index_names(plan[key])
    return names


@pytest.fixture
async def directory(platform):
    """Three verified hospitals' worth of doctors; some must never be found."""
    p = platform
    h1 = await p.add_hospital("Charité Mitte", city="Berlin")
    h2 = await p.add_hospital("Klinikum Schwabing", city="München")
    h3 = await p.add_hospital("Pending Klinik", city="Hamburg", verify=False)
    d1 = await p.add_department(h1, "Cardiology")
    await p.add_doctor("d-schmidt", name={"given": ["Anna"], "family": "Schmidt"},
                       specialties=["cardiology"], languages=["de", "en-GB"],
                       affiliations=[{"hospital_id": h1, "department_id": d1}],
                       modes=["in_person", "online"])
    await p.add_doctor("d-berg", name={"given": ["Anna", "Annika"], "family": "Berg"},
                       specialties=["pediatrics"], languages=["en"],
                       affiliations=[{"hospital_id": h2}], modes=["online"])
    await p.add_doctor("d-mueller", name={"given": ["Bernd"], "family": "Müller"},
                       specialties=["dermatology"], languages=["fr"],
                       affiliations=[{"hospital_id": h2}], modes=["in_person"])
    # never listed: a verified doctor only at a pending hospital, and a pending licence
    await p.add_doctor("d-weber", name={"given": ["Carl"], "family": "Weber"},
                       affiliations=[{"hospital_id": h3}])
    await p.add_doctor("d-dora", verify=False, name={"given": ["Dora"], "family": "Schmidt"},
                       affiliations=[{"hospital_id": h1}])
    return {"h1": h1, "h2": h2, "h3": h3, "d1": d1}


async def ids(p, query: str = "") -> list[str]:
    r = await p.client.get(f"/api/v1/doctors?{query}")
    assert r.status_code == 200, r.text
    return [d["id"] for d in r.json()["items"]]


async def test_search_by_every_filter_through_an_index(platform, directory):
    p, h = platform, directory
    assert await ids(p) == ["d-berg", "d-mueller", "d-schmidt"]
    assert await ids(p, "name=ANN") == ["d-berg", "d-schmidt"]  # Berg matches twice, once out
    assert await ids(p, "name=schm") == ["d-schmidt"]
    assert await ids(p, "name=mü") == ["d-mueller"]
    assert await ids(p, "name=annika") == ["d-berg"]
    assert await ids(p, "specialty=Cardiology") == ["d-schmidt"]
    assert await ids(p, f"hospital_id={h['h1']}") == ["d-schmidt"]
    assert await ids(p, f"hospital_id={h['h3']}") == []
    assert await ids(p, f"department_id={h['d1']}") == ["d-schmidt"]
    assert await ids(p, "city=MÜNCHEN") == ["d-berg", "d-mueller"]
    assert await ids(p, "city=hamburg") == []
    assert await ids(p, "language=en") == ["d-berg", "d-schmidt"]
    assert await ids(p, "language=en-GB") == ["d-schmidt"]
    assert await ids(p, "mode=online") == ["d-berg", "d-schmidt"]
    assert await ids(p, "mode=in_person") == ["d-mueller", "d-schmidt"]
    assert await ids(p, "city=berlin&specialty=cardiology&language=de") == ["d-schmidt"]
    assert await ids(p, "city=münchen&mode=online&name=a") == ["d-berg"]
    problem(await p.client.get("/api/v1/doctors?mode=video"), 422)

    pages: list[str] = []
    cursor = ""
    for _ in range(5):
        r = (await p.client.get(f"/api/v1/doctors?limit=1{cursor}")).json()
        pages += [d["id"] for d in r["items"]]
        if r["next_cursor"] is None:
            break
        cursor = f"&cursor={r['next_cursor']}"
    assert pages == ["d-berg", "d-mueller", "d-schmidt"]

    on = upcoming(1)
    queries = [
        store.search_query(),
        store.search_query(name="ann"),
        store.search_query(specialty="cardiology"),
        store.search_query(hospital=h["h1"]),
        store.search_query(department=h["d1"]),
        store.search_query(city="Berlin"),
        store.search_query(language="en"),
        store.search_query(mode=Mode.ONLINE),
        store.search_query(on=on),
        store.search_query(on=on, mode=Mode.IN_PERSON),
        store.search_query(name="a", city="berlin", specialty="cardiology", language="de",
                           mode=Mode.ONLINE, on=on, hospital=h["h1"], department=h["d1"]),
    ]
    used = set()
    for query, index in queries:
        await assert_uses_index(p, {**query, "sort_key": {"$gt": "a"}}, index)
        used.add(index)
    assert used == {"search_all", *(name for _, name in store.SEARCH_FIELDS.values())}


async def test_date_search_follows_availability_leave_and_bookings(platform, directory):
    p, h = platform, directory
    monday, wednesday = upcoming(1), upcoming(3)
    r = await p.put_availability("d-schmidt", {
        "slot_minutes": 60,
        "weekly": [{"location": f"hospital:{h['h1']}", "day": "mon", "start": "09:00",
                    "end": "11:00"}],
        "leave": [{"kind": "leave", "start_date": (monday + timedelta(days=7)).isoformat(),
                   "end_date": (monday + timedelta(days=7)).isoformat()}],
    })
    assert r.status_code == 200, r.text
    r = await p.put_availability("d-berg", {"slot_minutes": 30, "weekly": [
        {"location": "online", "day": "wed", "start": "10:00", "end": "11:00"}]})
    assert r.status_code == 200, r.text

    assert await ids(p, f"date={monday}") == ["d-schmidt"]
    assert await ids(p, f"date={monday}&mode=in_person") == ["d-schmidt"]
    assert await ids(p, f"date={monday}&mode=online") == []
    assert await ids(p, f"date={monday + timedelta(days=7)}") == []  # on leave
    assert await ids(p, f"date={monday + timedelta(days=14)}") == ["d-schmidt"]
    assert await ids(p, f"date={monday + timedelta(days=1)}") == []
    assert await ids(p, f"date={wednesday}&mode=online") == ["d-berg"]
    far = datetime.now(UTC).date() + timedelta(days=domain.SEARCH_HORIZON_DAYS + 1)
    assert problem(await p.client.get(f"/api/v1/doctors?date={far}"), 422)["errors"][0][
        "location"] == "query.date"
    problem(await p.client.get("/api/v1/doctors?date=next-monday"), 422)

    # the appointment service books both Monday slots: the day is full
    for appointment_id, hhmm in (("a-1", "09:00"), ("a-2", "10:00")):
        start = at(monday, hhmm)
        await p.publish_booking("appointment.booked", appointment_id=appointment_id,
                                doctor_id="d-schmidt", start=start,
                                end=start + timedelta(hours=1), status="booked")

    async def listed_on_monday(expected: list[str]) -> bool:
        return await ids(p, f"date={monday}") == expected

    await p.eventually(lambda: listed_on_monday([]), what="a fully booked day to drop out")
    assert await ids(p, f"date={monday + timedelta(days=14)}") == ["d-schmidt"]
    start = at(monday, "09:00")
    await p.publish_booking("appointment.cancelled", appointment_id="a-1",
                            doctor_id="d-schmidt", start=start,
                            end=start + timedelta(hours=1), status="cancelled")
    await p.eventually(lambda: listed_on_monday(["d-schmidt"]),
                       what="a cancellation to free the day")
    # a-2 moves to the Monday two weeks on, which then has one slot left
    moved = at(monday + timedelta(days=14), "10:00")
    await p.publish_booking("appointment.rescheduled", appointment_id="a-2",
                            doctor_id="d-schmidt", start=moved,
                            end=moved + timedelta(hours=1), status="booked")

    async def moved_in_read_model() -> bool:
        doc = await p.db["bookings"].find_one({"_id": "a-2"})
        return doc is not None and doc["start"] == moved

    await p.eventually(moved_in_read_model, what="the reschedule in the bookings read model")
    assert await ids(p, f"date={monday}") == ["d-schmidt"]
    assert await ids(p, f"date={monday + timedelta(days=14)}") == ["d-schmidt"]
    assert await p.db["bookings"].count_documents({"doctor_id": "d-schmidt"}) == 2


async def test_availability_round_trip_and_schedule_changed_payload(platform, directory):
    p, h = platform, directory
    r = await p.client.patch("/api/v1/doctors/d-schmidt", json={"time_zone": "Asia/Kolkata"},
                             headers=p.as_("d-schmidt", "doctor"))
    assert r.status_code == 200, r.text
    holiday = upcoming(1, after=10)
    leave_start = upcoming(2, after=20)
    body = {
        "slot_minutes": 30,
        "weekly": [
            {"location": f"hospital:{h['h1']}", "day": "mon", "start": "09:00",
             "end": "12:00", "breaks": [{"start": "10:00", "end": "10:30"}]},
            {"location": "online", "day": "tue", "start": "18:00", "end": "20:00"},
        ],
        "leave": [
            {"kind": "holiday", "start_date": holiday.isoformat(),
             "end_date": holiday.isoformat(), "hospital_id": h["h1"]},
            {"kind": "leave", "start_date": leave_start.isoformat(),
             "end_date": (leave_start + timedelta(days=2)).isoformat(), "note": "congress"},
        ],
    }
    r = await p.put_availability("d-schmidt", body)
    assert r.status_code == 200, r.text
    view = (await p.client.get("/api/v1/doctors/d-schmidt/availability")).json()
    # the public sees when the doctor is away, never the free-text note; the doctor does
    assert [leave["note"] for leave in view["leave"]] == [None, None]
    own = (await p.client.get("/api/v1/doctors/d-schmidt/availability",
                              headers=p.as_("d-schmidt", "doctor"))).json()
    assert [leave["note"] for leave in own["leave"]] == [None, "congress"]
    assert view["time_zones"] == {"online": "Asia/Kolkata",
                                  f"hospital:{h['h1']}": "Europe/Berlin"}
    assert view["weekly"][0]["breaks"] == [{"start": "10:00", "end": "10:30"}]
    kolkata = ZoneInfo("Asia/Kolkata")
    blocked = {(b["location"], b["start"], b["end"]) for b in view["blocked"]}
    hospital = f"hospital:{h['h1']}"

    def iso(day: date, zone: ZoneInfo) -> str:
        moment = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
        return moment.isoformat().replace("+00:00", "Z")

    assert (hospital, iso(holiday, BERLIN), iso(holiday + timedelta(days=1), BERLIN)) in blocked
    end = leave_start + timedelta(days=3)
    assert ("online", iso(leave_start, kolkata), iso(end, kolkata)) in blocked
    assert (hospital, iso(leave_start, BERLIN), iso(end, BERLIN)) in blocked
    assert len(blocked) == 3

    event = (await p.outbox("doctor.schedule_changed", subject="doctor/d-schmidt"))[-1]
    assert event["doctor_id"] == "d-schmidt" and event["user_id"] == "d-schmidt"
    assert event["verified"] is True and event["bookable"] is True
    assert event["timezone"] == "Asia/Kolkata" and event["slot_minutes"] == 30
    assert event["modes"] == ["in_person", "online"]
    assert event["fee"] == {"amount": 6000, "currency": "EUR", "requires_prepayment": False}
    assert event["weekly"] == [
        {"location": hospital, "hospital_id": h["h1"], "mode": "in_person", "day": 1,
         "start": "09:00", "end": "10:00", "timezone": "Europe/Berlin"},
        {"location": hospital, "hospital_id": h["h1"], "mode": "in_person", "day": 1,
         "start": "10:30", "end": "12:00", "timezone": "Europe/Berlin"},
        {"location": "online", "hospital_id": None, "mode": "online", "day": 2,
         "start": "18:00", "end": "20:00", "timezone": "Asia/Kolkata"},
    ]
    assert event["breaks"] == [{"location": hospital, "day": 1, "start": "10:00",
                                "end": "10:30", "timezone": "Europe/Berlin"}]
    assert {(b["location"], b["kind"]) for b in event["leave"]} == {
        (hospital, "holiday"), (hospital, "leave"), ("online", "leave")}
    assert event["leave_dates"][0] == {"kind": "holiday", "start_date": holiday.isoformat(),
                                       "end_date": holiday.isoformat(),
                                       "hospital_id": h["h1"]}

    # the appointment service's reading of this payload gives the same slots as ours
    from healthflow.appointment.availability import availability_from_event
    from healthflow.appointment.slots import candidate_slots
    from healthflow.contracts.doctor import DoctorScheduleChanged

    doc = await p.db["doctors"].find_one({"_id": "d-schmidt"})
    facts = await store.hospital_facts(p.db, [h["h1"]])
    start = datetime.now(UTC).replace(microsecond=0)
    stop = start + timedelta(days=35)
    ours = domain.expand(schedules.schedule_of(doc), schedules.zones_for(doc, facts), start, stop)
    theirs = candidate_slots(
        availability_from_event(DoctorScheduleChanged.model_validate(event)), start, stop)
    assert [(s.start, s.end, s.mode.value) for s in ours] == [
        (s.start, s.end, s.mode.value) for s in theirs]
    assert len(ours) > 10


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"weekly": [{"day": "mon", "start": "09:00", "end": "12:00", "location": "online"},
                     {"day": "mon", "start": "11:00", "end": "13:00", "location": "online"}]},
         "body.weekly.1"),
        ({"slot_minutes": 40}, "body.weekly.0"),  # 180 minutes are not 40-minute slots
        ({"slot_minutes": 7}, "body.slot_minutes"),
        ({"weekly": [{"day": "mon", "start": "9:00", "end": "12:00", "location": "online"}]},
         "body.weekly.0.start"),
        ({"weekly": [{"day": "mon", "start": "09:07", "end": "12:00", "location": "online"}]},
         "body.weekly.0.start"),
        ({"weekly": [{"day": "monday", "start": "09:00", "end": "12:00",
                      "location": "online"}]}, "body.weekly.0.day"),
        ({"weekly": [{"day": "mon", "start": "09:00", "end": "12:00",
                      "location": "hospital:elsewhere"}]}, "body.weekly.0.location"),
        ({"weekly": [{"day": "mon", "start": "09:00", "end": "12:00", "location": "online",
                      "room": "3"}]}, "body.weekly.0.room"),
        ({"weekly": [{"day": "mon", "start": "12:00", "end": "09:00", "location": "online"}]},
         "body.weekly.0"),
        ({"weekly": [{"day": "mon", "start": "09:00", "end": "12:00", "location": "online",
                      "breaks": [{"start": "10:10", "end": "10:40"}]}]},
         "body.weekly.0.breaks.0"),
        ({"leave": [{"start_date": "2026-12-24", "end_date": "2026-12-20"}]}, "body.leave.0"),
        ({"leave": [{"start_date": "2026-12-24", "end_date": "2026-12-26",
                     "hospital_id": "elsewhere"}]}, "body.leave.0.hospital_id"),
        ({"timezone": "Europe/Berlin"}, "body.timezone"),
    ],
)
async def test_bad_availability_is_precise_and_writes_nothing(platform, change, location):
    p = platform
    await p.add_doctor("doc-a")
    before = await p.db["doctors"].find_one({"_id": "doc-a"})
    events_before = await p.event_count()
    body = {"slot_minutes": 30,
            "weekly": [{"day": "mon", "start": "09:00", "end": "12:00", "location": "online"}],
            **change}
    found = problem(await p.put_availability("doc-a", body), 422)
    assert location in [e["location"] for e in found["errors"]], found
    assert await p.db["doctors"].find_one({"_id": "doc-a"}) == before
    assert await p.event_count() == events_before


async def test_hours_need_the_mode_and_the_affiliation_they_use(platform):
    p = platform
    hid = await p.add_hospital()
    await p.add_doctor("doc-b", modes=["in_person"], affiliations=[{"hospital_id": hid}])
    r = await p.put_availability("doc-b", {"slot_minutes": 30, "weekly": [
        {"day": "mon", "start": "09:00", "end": "10:00", "location": "online"}]})
    assert "does not offer online" in problem(r, 422)["errors"][0]["message"]
    r = await p.put_availability("doc-b", {"slot_minutes": 30, "weekly": [
        {"day": "mon", "start": "09:00", "end": "10:00", "location": f"hospital:{hid}"}]})
    assert r.status_code == 200
    # the hours pin the affiliation: removing it first is a conflict
    r = await p.client.patch("/api/v1/doctors/doc-b", json={"affiliations": []},
                             headers=p.as_("doc-b", "doctor"))
    assert "weekly.0" in problem(r, 409)["detail"]
    assert (await p.db["doctors"].find_one({"_id": "doc-b"}))["affiliations"] == [
        {"hospital_id": hid, "department_id": None}]
