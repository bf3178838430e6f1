"""Use cases of the doctor service: who may do what, validation, the writes and the events
they cause, and what the consumed events change (its read models of hospitals,
departments and bookings). Each takes the :class:`UnitOfWork` of one transaction
(the route's or the consumer's); :mod:`healthflow.doctor.store` holds the
collections, indexes and queries, :mod:`healthflow.doctor.domain` the rules.
Times are aware UTC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from healthflow import scheduling
from healthflow.common.auth import Principal, ensure_owner
from healthflow.common.errors import Conflict, NotFound, UnprocessableContent
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Permission
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
from healthflow.doctor.schemas import (
    DAY_NAMES,
    WEEKDAYS,
    AvailabilityIn,
    DoctorCreate,
    DoctorUpdate,
    minutes,
)


def _subject(doctor_id: str) -> str:
    return f"doctor/{doctor_id}"


async def apply_hospital(uow: UnitOfWork, snapshot: Mapping[str, Any]) -> None:
    """Fold a ``hospital.*`` event into the read model; when it changes what doctors at that
    hospital show or offer, refresh them and publish their ``doctor.schedule_changed``.

    Events older than the stored ``version`` are ignored (unordered, at-least-once delivery).
    """
    hospital_id = snapshot["hospital_id"]
    stored = await uow.db[store.HOSPITALS].find_one({"_id": hospital_id}, session=uow.session)
    if stored is not None and stored["version"] >= snapshot["version"]:
        return
    fields = {
        "version": snapshot["version"], "name": snapshot["name"], "city": snapshot["city"],
        "city_norm": domain.normalise(snapshot["city"]), "country": snapshot["country"],
        "time_zone": snapshot["time_zone"], "status": snapshot["status"],
        "verified": snapshot["status"] == "verified",
    }
    await uow.db[store.HOSPITALS].update_one({"_id": hospital_id}, {"$set": fields}, upsert=True,
                                       session=uow.session)
    relevant = ("verified", "name", "city", "time_zone")
    if stored is not None and all(stored.get(k) == fields[k] for k in relevant):
        return
    affected = await uow.db[store.DOCTORS].find({"affiliations.hospital_id": hospital_id},
                                          session=uow.session).to_list()
    for doc in affected:
        await _save(uow, doc, {}, publish_schedule=True)


async def apply_department(uow: UnitOfWork, department_id: str, hospital_id: str,
                           name: str) -> None:
    """Remember that ``department_id`` belongs to ``hospital_id`` (idempotent)."""
    await uow.db[store.DEPARTMENTS].update_one(
        {"_id": department_id}, {"$set": {"hospital_id": hospital_id, "name": name}},
        upsert=True, session=uow.session)


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
            dates = await _open_dates(uow.db, doc, await _doc_facts(uow, doc), utcnow(),
                                      session=uow.session)
            await uow.db[store.DOCTORS].update_one({"_id": affected}, {"$set": dates},
                                             session=uow.session)


async def _doc_facts(uow: UnitOfWork, doc: Document) -> dict[str, HospitalFacts]:
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


async def _open_dates(db: AsyncDatabase[Document], doc: Mapping[str, Any],
                      facts: Mapping[str, HospitalFacts], now: datetime,
                      session: Any = None) -> dict[str, Any]:
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


async def _save(uow: UnitOfWork, doc: Document, changes: Mapping[str, Any], *,
                publish_schedule: bool) -> Document:
    """Apply ``changes`` to ``doc``, recompute its derived fields, bump ``version``, write it,
    and (optionally) record ``doctor.schedule_changed``; returns the new document."""
    now = utcnow()
    new = {**doc, **changes}
    facts = await _doc_facts(uow, new)
    new.update(domain.search_fields(new["status"], new["affiliations"], facts))
    schedule = schedule_of(new)
    new["blocked"] = [
        {"location": b.location, "start": b.start, "end": b.end}
        for b in domain.blocked_intervals(schedule.leave if schedule else (),
                                          zones_for(new, facts))
    ]
    new.update(await _open_dates(uow.db, new, facts, now, session=uow.session))
    new["updated_at"] = now
    new["version"] = doc.get("version", 0) + 1
    if "version" in doc:
        result = await uow.db[store.DOCTORS].replace_one(
            {"_id": doc["_id"], "version": doc["version"]}, new, session=uow.session)
        if result.matched_count != 1:
            raise Conflict(f"doctor {doc['_id']} changed concurrently; retry")
    else:
        try:
            await uow.db[store.DOCTORS].insert_one(new, session=uow.session)
        except DuplicateKeyError:
            raise Conflict("you already have a doctor profile; edit it with PATCH") from None
    if publish_schedule:
        uow.publish(schedule_event(new, facts, now), subject=_subject(new["_id"]))
    return new


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
            kinds[(block.location, block.start, block.end)] = item.kind
    return events.DoctorScheduleChanged(
        doctor_id=doc["_id"], user_id=doc["_id"], version=doc["version"], changed_at=now,
        verified=verified,
        bookable=verified and any(loc.bookable for loc in locations.values()),
        timezone=doc["time_zone"], modes=list(doc["modes"]),
        fee=events.Fee(amount=doc["fee"]["amount"], currency=doc["fee"]["currency"]),
        slot_minutes=schedule.slot_minutes if schedule else None,
        locations=list(locations.values()), weekly=weekly, breaks=breaks,
        leave=[events.ScheduleBlock(location=loc, kind=kind, start=start, end=end)
               for (loc, start, end), kind in kinds.items()],
        leave_dates=[events.ScheduleLeaveDates(kind=x.kind, start_date=x.start,
                                               end_date=x.end, hospital_id=x.hospital_id)
                     for x in (schedule.leave if schedule else ())],
    )


def visible_or_404(doc: Document | None, principal: Principal | None,
                   doctor_id: str) -> Document:
    """Verified doctors are public; others only to themselves and to licence verifiers.

    Raises:
        NotFound: (404) absent or not visible (existence is not revealed).
    """
    if doc is not None and (
        doc["status"] == DoctorStatus.VERIFIED
        or (principal is not None and (principal.subject == doc["_id"]
                                       or principal.has(Permission.DOCTORS_VERIFY)))
    ):
        return doc
    raise NotFound(f"no doctor {doctor_id}")


async def _check_affiliations(uow: UnitOfWork, affiliations: Sequence[Mapping[str, Any]],
                              where: str) -> None:
    """Every affiliation names a hospital this service knows (not rejected) and, when given,
    a department of that hospital.

    Raises:
        UnprocessableContent: (422) listing each unknown hospital or department.
    """
    facts_docs = await uow.db[store.HOSPITALS].find(
        {"_id": {"$in": [a["hospital_id"] for a in affiliations]}}, session=uow.session
    ).to_list()
    known = {d["_id"]: d for d in facts_docs}
    errors = []
    for i, affiliation in enumerate(affiliations):
        hospital = known.get(affiliation["hospital_id"])
        if hospital is None or hospital["status"] == "rejected":
            errors.append({"location": f"{where}.{i}.hospital_id",
                           "message": f"unknown hospital {affiliation['hospital_id']}"})
            continue
        department_id = affiliation.get("department_id")
        if department_id:
            department = await uow.db[store.DEPARTMENTS].find_one(
                {"_id": department_id, "hospital_id": affiliation["hospital_id"]},
                session=uow.session)
            if department is None:
                errors.append({"location": f"{where}.{i}.department_id",
                               "message": f"unknown department {department_id} of hospital "
                                          f"{affiliation['hospital_id']}"})
    if errors:
        raise UnprocessableContent("; ".join(f"{e['location']}: {e['message']}"
                                             for e in errors), errors=errors)


async def register_doctor(uow: UnitOfWork, body: DoctorCreate, *, doctor_id: str) -> Document:
    """Create the caller's profile (``pending`` licence) and record ``doctor.registered``.

    Raises:
        UnprocessableContent: (422) an affiliation to an unknown hospital or department.
        Conflict: (409) the caller already has a profile.
    """
    data = body.model_dump(mode="json")
    await _check_affiliations(uow, data["affiliations"], "body.affiliations")
    now = utcnow()
    doc: Document = {
        "_id": doctor_id, **data, **_name_fields(body.name.text, body.name.model_dump(), doctor_id),
        "language_keys": domain.language_keys(data["languages"]),
        "status": DoctorStatus.PENDING.value, "rejection_reason": None, "decided_at": None,
        "decided_by": None, "schedule": None, "created_at": now,
    }
    saved = await _save(uow, doc, {}, publish_schedule=False)
    uow.publish(events.DoctorRegistered(
        doctor_id=doctor_id, version=saved["version"], display_name=saved["display_name"],
        specialties=saved["specialties"],
        hospital_ids=list(dict.fromkeys(a["hospital_id"] for a in saved["affiliations"]))),
        subject=_subject(doctor_id))
    return saved


def _name_fields(text: str, name: Mapping[str, Any], doctor_id: str) -> dict[str, Any]:
    return {
        "display_name": text,
        "name_keys": domain.name_keys(*name["given"], name["family"]),
        "sort_key": domain.sort_key(f"{name['family']} {' '.join(name['given'])}", doctor_id),
    }


async def _load_owned(uow: UnitOfWork, doctor_id: str, principal: Principal,
                      unless: str | None) -> Document:
    doc = visible_or_404(await store.get_doctor(uow.db, doctor_id, session=uow.session), principal,
                         doctor_id)
    ensure_owner(principal, doc["_id"], unless=unless)
    return doc


async def update_doctor(uow: UnitOfWork, doctor_id: str, body: DoctorUpdate, *,
                        principal: Principal) -> Document:
    """Replace the given profile fields (owner only) and record ``doctor.schedule_changed``.

    A new licence number or issuer returns the licence to ``pending``.

    Raises:
        NotFound: (404), Forbidden: (403) not the owner,
        UnprocessableContent: (422) unknown hospital or department,
        Conflict: (409) the change would strand weekly hours (an hour's hospital or the
            online mode removed while the availability still uses it).
    """
    doc = await _load_owned(uow, doctor_id, principal, unless=None)
    changes: dict[str, Any] = body.model_dump(mode="json", exclude_unset=True)
    if "affiliations" in changes:
        await _check_affiliations(uow, changes["affiliations"], "body.affiliations")
    if "name" in changes:
        assert body.name is not None
        changes.update(_name_fields(body.name.text, changes["name"], doctor_id))
    if "languages" in changes:
        changes["language_keys"] = domain.language_keys(changes["languages"])
    if "licence" in changes:
        changed = (changes["licence"]["number"], changes["licence"]["issuer"]) != (
            doc["licence"]["number"], doc["licence"]["issuer"])
        status = domain.status_after_licence_change(doc["status"], changed)
        if status != doc["status"]:
            changes.update(status=status.value, rejection_reason=None, decided_at=None,
                           decided_by=None)
    merged = {**doc, **changes}
    schedule = schedule_of(merged)
    if schedule is not None:
        hospitals = {a["hospital_id"] for a in merged["affiliations"]}
        for i, rule in enumerate(schedule.rules):
            hospital_id = domain.location_hospital(rule.location)
            mode = domain.location_mode(rule.location)
            if mode.value not in merged["modes"] or (
                hospital_id is not None and hospital_id not in hospitals
            ):
                raise Conflict(
                    f"availability weekly.{i} uses {rule.location}; change the availability "
                    "before removing that mode or affiliation")
    return await _save(uow, doc, changes, publish_schedule=True)


async def decide_licence(uow: UnitOfWork, doctor_id: str, target: DoctorStatus, *, by: str,
                         reason: str | None = None) -> Document:
    """An admin's licence decision: records ``doctor.verified`` or ``doctor.rejected`` and
    ``doctor.schedule_changed`` (so the appointment read model learns the flag).

    Raises:
        NotFound: (404); Conflict: (409) the licence is not pending.
    """
    doc = await store.get_doctor(uow.db, doctor_id, session=uow.session)
    if doc is None:
        raise NotFound(f"no doctor {doctor_id}")
    domain.decide(doc["status"], target)
    now = utcnow()
    saved = await _save(uow, doc, {"status": target.value, "decided_at": now, "decided_by": by,
                                   "rejection_reason": reason}, publish_schedule=False)
    payload: events.DoctorVerified | events.DoctorRejected
    if target is DoctorStatus.VERIFIED:
        payload = events.DoctorVerified(doctor_id=doctor_id, user_id=doctor_id,
                                        version=saved["version"], verified_at=now)
    else:
        payload = events.DoctorRejected(doctor_id=doctor_id, user_id=doctor_id,
                                        version=saved["version"], reason=reason or "",
                                        rejected_at=now)
    uow.publish(payload, subject=_subject(doctor_id))
    facts = await _doc_facts(uow, saved)
    uow.publish(schedule_event(saved, facts, now), subject=_subject(doctor_id))
    return saved


async def set_availability(uow: UnitOfWork, doctor_id: str, body: AvailabilityIn, *,
                           principal: Principal, now: datetime) -> Document:
    """Replace the doctor's availability and record ``doctor.schedule_changed``.

    Raises:
        NotFound: (404); Forbidden: (403) neither the doctor nor ``schedule:manage_any``;
        UnprocessableContent: (422) a location the doctor cannot use (not an affiliated
            hospital, or a mode the profile does not offer), or a rule of
            :func:`healthflow.doctor.domain.validate_schedule`.
    """
    doc = await _load_owned(uow, doctor_id, principal, unless=Permission.SCHEDULE_MANAGE_ANY)
    hospitals = {a["hospital_id"] for a in doc["affiliations"]}
    errors: list[dict[str, str]] = []
    for i, hours in enumerate(body.weekly):
        hospital_id = domain.location_hospital(hours.location)
        mode = domain.location_mode(hours.location)
        if hospital_id is not None and hospital_id not in hospitals:
            errors.append({"location": f"body.weekly.{i}.location",
                           "message": f"{hospital_id} is not one of your hospitals"})
        elif mode.value not in doc["modes"]:
            errors.append({"location": f"body.weekly.{i}.location",
                           "message": f"your profile does not offer {mode.value} consultations"})
    for i, leave in enumerate(body.leave):
        if leave.hospital_id is not None and leave.hospital_id not in hospitals:
            errors.append({"location": f"body.leave.{i}.hospital_id",
                           "message": f"{leave.hospital_id} is not one of your hospitals"})
    if errors:
        raise UnprocessableContent("; ".join(f"{e['location']}: {e['message']}"
                                             for e in errors), errors=errors)
    schedule = Schedule(
        body.slot_minutes,
        tuple(WeeklyRule(h.location, WEEKDAYS[h.day], minutes(h.start), minutes(h.end),
                         tuple((minutes(b.start), minutes(b.end)) for b in h.breaks))
              for h in body.weekly),
        tuple(Leave(x.start_date, x.end_date, x.hospital_id, x.kind) for x in body.leave),
    )
    facts = await _doc_facts(uow, doc)
    domain.validate_schedule(schedule, zones_for(doc, facts), now=now)
    stored = {
        "slot_minutes": body.slot_minutes,
        "weekly": [{"location": h.location, "day": WEEKDAYS[h.day], "start": h.start,
                    "end": h.end, "breaks": [b.model_dump() for b in h.breaks]}
                   for h in body.weekly],
        "leave": [{"kind": x.kind, "start_date": x.start_date.isoformat(),
                   "end_date": x.end_date.isoformat(), "hospital_id": x.hospital_id,
                   "note": x.note} for x in body.leave],
    }
    return await _save(uow, doc, {"schedule": stored}, publish_schedule=True)


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
                dates = await _open_dates(uow.db, doc, await _doc_facts(uow, doc), utcnow(),
                                          session=uow.session)
                await uow.db[store.DOCTORS].update_one({"_id": doctor_id}, {"$set": dates},
                                                 session=uow.session)

            await runtime_transact(fn, actor="system:doctor")
            refreshed += 1
