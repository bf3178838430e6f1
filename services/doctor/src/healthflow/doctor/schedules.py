"""A doctor's schedule as the rest of the platform sees it: the stored availability as the
domain's :class:`~healthflow.doctor.domain.Schedule`, the location zones, the searchable
``open_dates`` (kept current from the bookings read model, which the ``appointment.*``
events fill, and by a daily refresh), the complete ``doctor.schedule_changed`` payload
and the API's availability view. The use cases that change a doctor, its schedule
included, are in :mod:`healthflow.doctor.service`. Times are aware UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pymongo.asynchronous.database import AsyncDatabase

from healthflow import scheduling
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.doctor import domain, events, store
from healthflow.doctor.domain import (
    ONLINE,
    DoctorStatus,
    HospitalFacts,
    Leave,
    Mode,
    Schedule,
    WeeklyRule,
)
from healthflow.doctor.schemas import DAY_NAMES, minutes


async def apply_booking(uow: UnitOfWork, *, appointment_id: str, doctor_id: str,
                        start: datetime, end: datetime, status: str,
                        event_time: datetime) -> None:
    """Fold an ``appointment.*`` event into the bookings read model (newest event wins) and
    refresh that doctor's ``open_dates``."""
    stored = await uow.db[store.BOOKINGS].find_one({"_id": appointment_id}, session=uow.session)
    if stored is not None and stored["event_time"] > event_time:
        return
    await uow.db[store.BOOKINGS].update_one(
        {"_id": appointment_id},
        {"$set": {"doctor_id": doctor_id, "start": start.astimezone(UTC),
                  "end": end.astimezone(UTC), "status": status, "event_time": event_time}},
        upsert=True, session=uow.session)
    doctors = {doctor_id} | ({stored["doctor_id"]} if stored else set())
    for affected in doctors:
        doc = await uow.db[store.DOCTORS].find_one({"_id": affected}, session=uow.session)
        if doc is not None:
            dates = await open_dates(uow.db, doc, await doc_facts(uow, doc), utcnow(),
                                     session=uow.session)
            await uow.db[store.DOCTORS].update_one({"_id": affected}, {"$set": dates},
                                             session=uow.session)


async def doc_facts(uow: UnitOfWork, doc: Document) -> dict[str, HospitalFacts]:
    """What this service knows of the hospitals ``doc`` is affiliated with, by hospital id."""
    return await store.hospital_facts(uow.db, [a["hospital_id"] for a in doc["affiliations"]],
                                session=uow.session)


def zones_for(doc: Mapping[str, Any], facts: Mapping[str, HospitalFacts]) -> dict[str, ZoneInfo]:
    """Location key → zone: ``online`` (doctor's zone) and each known affiliated hospital."""
    zones = {ONLINE: ZoneInfo(doc["time_zone"])}
    for affiliation in doc["affiliations"]:
        known = facts.get(affiliation["hospital_id"])
        if known is not None:
            zones[domain.hospital_location(known.hospital_id)] = ZoneInfo(known.time_zone)
    return zones


def schedule_of(doc: Mapping[str, Any]) -> Schedule | None:
    """The stored schedule as the domain's :class:`Schedule` (``None`` when not set)."""
    raw = doc.get("schedule")
    if not raw:
        return None
    rules = tuple(
        WeeklyRule(r["location"], r["day"], minutes(r["start"]), minutes(r["end"]),
                   tuple((minutes(b["start"]), minutes(b["end"])) for b in r["breaks"]))
        for r in raw["weekly"]
    )
    leave = tuple(
        Leave(date.fromisoformat(x["start_date"]), date.fromisoformat(x["end_date"]),
              x.get("hospital_id"), x.get("kind", "leave"))
        for x in raw["leave"]
    )
    return Schedule(raw["slot_minutes"], rules, leave)


async def open_dates(db: AsyncDatabase[Document], doc: Mapping[str, Any],
                     facts: Mapping[str, HospitalFacts], now: datetime,
                     session: Any = None) -> dict[str, Any]:
    """The search fields ``open_dates`` (keys of the local dates with a free slot, see
    :func:`healthflow.doctor.domain.open_date_keys`), ``open_dates_from`` (``now``) and
    ``open_dates_until`` (the search horizon), the doctor's bookings taken into account."""
    schedule = schedule_of(doc)
    horizon = now + timedelta(days=domain.SEARCH_HORIZON_DAYS)
    keys: list[str] = []
    if schedule is not None and schedule.rules:
        zones = zones_for(doc, facts)
        usable = Schedule(schedule.slot_minutes,
                          tuple(r for r in schedule.rules if r.location in zones),
                          schedule.leave)
        slots = domain.expand(usable, zones, now, horizon)
        booked = await db[store.BOOKINGS].find(
            {"doctor_id": doc["_id"], "start": {"$lt": horizon}, "end": {"$gt": now},
             "status": {"$ne": store.FREED}},
            {"start": 1, "end": 1}, session=session,
        ).to_list()
        free = domain.free_slots(slots, [(b["start"], b["end"]) for b in booked])
        keys = domain.open_date_keys(free, zones)
    return {"open_dates": keys, "open_dates_from": now, "open_dates_until": horizon}


def schedule_event(doc: Mapping[str, Any], facts: Mapping[str, HospitalFacts],
                   now: datetime) -> events.DoctorScheduleChanged:
    """The complete ``doctor.schedule_changed`` payload of ``doc`` (see its docstring)."""
    verified = doc["status"] == DoctorStatus.VERIFIED
    zones = zones_for(doc, facts)
    locations: dict[str, events.ScheduleLocation] = {}
    if Mode.ONLINE in doc["modes"]:
        locations[ONLINE] = events.ScheduleLocation(
            key=ONLINE, mode=Mode.ONLINE.value, hospital_id=None, name=None, city=None,
            timezone=doc["time_zone"],
            bookable=domain.location_bookable(ONLINE, doctor_verified=True, hospitals=facts))
    if Mode.IN_PERSON in doc["modes"]:
        for hospital_id in dict.fromkeys(a["hospital_id"] for a in doc["affiliations"]):
            known = facts.get(hospital_id)
            if known is None:
                continue
            key = domain.hospital_location(hospital_id)
            locations[key] = events.ScheduleLocation(
                key=key, mode=Mode.IN_PERSON.value, hospital_id=hospital_id, name=known.name,
                city=known.city, timezone=known.time_zone,
                bookable=domain.location_bookable(key, doctor_verified=True, hospitals=facts))
    schedule = schedule_of(doc)
    weekly: list[events.ScheduleWindow] = []
    breaks: list[events.ScheduleBreak] = []
    for rule in schedule.rules if schedule else ():
        location = locations.get(rule.location)
        if location is None or not location.bookable:
            continue
        for start, end in scheduling.windows(rule):
            weekly.append(events.ScheduleWindow(
                location=rule.location, hospital_id=location.hospital_id, mode=location.mode,
                day=rule.day, start=domain.format_minutes(start),
                end=domain.format_minutes(end), timezone=location.timezone))
        breaks += [events.ScheduleBreak(location=rule.location, day=rule.day,
                                        start=domain.format_minutes(b0),
                                        end=domain.format_minutes(b1),
                                        timezone=location.timezone)
                   for b0, b1 in rule.breaks]
    kinds: dict[tuple[str, datetime, datetime], str] = {}
    used_zones = {key: zone for key, zone in zones.items() if key in locations}
    for item in schedule.leave if schedule else ():
        for block in domain.blocked_intervals([item], used_zones):
            assert block.location is not None  # one interval per location of used_zones
            kinds[(block.location, block.start, block.end)] = item.kind
    return events.DoctorScheduleChanged(
        doctor_id=doc["_id"], user_id=doc["_id"], version=doc["version"], changed_at=now,
        verified=verified,
        bookable=verified and any(loc.bookable for loc in locations.values()),
        timezone=doc["time_zone"], modes=list(doc["modes"]),
        fee=events.Fee(amount=doc["fee"]["amount"], currency=doc["fee"]["currency"],
                       requires_prepayment=bool(doc["fee"].get("requires_prepayment"))),
        slot_minutes=schedule.slot_minutes if schedule else None,
        locations=list(locations.values()), weekly=weekly, breaks=breaks,
        leave=[events.ScheduleBlock(location=loc, kind=kind, start=start, end=end)
               for (loc, start, end), kind in kinds.items()],
        leave_dates=[events.ScheduleLeaveDates(kind=x.kind, start_date=x.start,
                                               end_date=x.end, hospital_id=x.hospital_id)
                     for x in (schedule.leave if schedule else ())],
    )


def availability_view(doc: Mapping[str, Any],
                      facts: Mapping[str, HospitalFacts]) -> dict[str, Any]:
    """The availability in the API's shape (days as ``mon``…``sun``)."""
    raw = doc.get("schedule") or {"slot_minutes": 30, "weekly": [], "leave": []}
    return {
        "doctor_id": doc["_id"],
        "slot_minutes": raw["slot_minutes"],
        "weekly": [{**r, "day": DAY_NAMES[r["day"]]} for r in raw["weekly"]],
        "leave": raw["leave"],
        "time_zones": {k: str(v) for k, v in zones_for(doc, facts).items()},
        "blocked": doc.get("blocked", []),
        "updated_at": doc.get("updated_at") if doc.get("schedule") else None,
    }


async def refresh_open_dates(runtime_transact: Any, db: AsyncDatabase[Document], *,
                             older_than: datetime, batch: int = 100) -> int:
    """Recompute ``open_dates`` of doctors last computed before ``older_than`` (a daily job).

    ``runtime_transact`` is :meth:`ServiceRuntime.transact`; returns how many were refreshed.
    """
    refreshed = 0
    while True:
        ids = [d["_id"] for d in await db[store.DOCTORS].find(
            {"open_dates_from": {"$lt": older_than}}, {"_id": 1}).hint(
            "open_dates_from").limit(batch).to_list()]
        if not ids:
            return refreshed
        for doctor_id in ids:

            async def fn(uow: UnitOfWork, doctor_id: str = doctor_id) -> None:
                doc = await store.get_doctor(uow.db, doctor_id, session=uow.session)
                if doc is None:
                    return
                dates = await open_dates(uow.db, doc, await doc_facts(uow, doc), utcnow(),
                                         session=uow.session)
                await uow.db[store.DOCTORS].update_one({"_id": doctor_id}, {"$set": dates},
                                                 session=uow.session)

            await runtime_transact(fn, actor="system:doctor")
            refreshed += 1
