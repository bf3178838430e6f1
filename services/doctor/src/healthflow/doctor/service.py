"""Use cases of the doctor service: who may do what, validation, the writes and the events
they cause, and what the consumed hospital and department events change (its read
models of them). Each takes the :class:`UnitOfWork` of one transaction (the route's
or the consumer's); :mod:`healthflow.doctor.store` holds the collections, indexes and
queries, :mod:`healthflow.doctor.domain` the rules, :mod:`healthflow.doctor.schedules`
what a doctor's schedule derives (open dates and the bookings read model they follow,
the ``doctor.schedule_changed`` payload, the availability view). Times are aware UTC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from healthflow.common.auth import Principal, ensure_owner
from healthflow.common.errors import Conflict, NotFound, UnprocessableContent
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Permission
from healthflow.doctor import domain, events, schedules, store
from healthflow.doctor.domain import (
    DoctorStatus,
    Leave,
    Schedule,
    WeeklyRule,
)
from healthflow.doctor.schemas import (
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


async def _save(uow: UnitOfWork, doc: Document, changes: Mapping[str, Any], *,
                publish_schedule: bool) -> Document:
    """Apply ``changes`` to ``doc``, recompute its derived fields, bump ``version``, write it,
    and (optionally) record ``doctor.schedule_changed``; returns the new document."""
    now = utcnow()
    new = {**doc, **changes}
    facts = await schedules.doc_facts(uow, new)
    new.update(domain.search_fields(new["status"], new["affiliations"], facts))
    schedule = schedules.schedule_of(new)
    new["blocked"] = [
        {"location": b.location, "start": b.start, "end": b.end}
        for b in domain.blocked_intervals(schedule.leave if schedule else (),
                                          schedules.zones_for(new, facts))
    ]
    new.update(await schedules.open_dates(uow.db, new, facts, now, session=uow.session))
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
        uow.publish(schedules.schedule_event(new, facts, now), subject=_subject(new["_id"]))
    return new


def shown_availability(view: dict[str, Any], principal: Principal | None,
                       doctor_id: str) -> dict[str, Any]:
    """``view`` (:func:`schedules.availability_view`) with each leave's free-text ``note``
    removed unless ``principal`` is the doctor or manages any schedule: the public sees
    when a doctor is away, never why."""
    if principal is not None and (principal.subject == doctor_id
                                  or principal.has(Permission.SCHEDULE_MANAGE_ANY)):
        return view
    return {**view, "leave": [{**leave, "note": None} for leave in view.get("leave", [])]}


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
    schedule = schedules.schedule_of(merged)
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
    facts = await schedules.doc_facts(uow, saved)
    uow.publish(schedules.schedule_event(saved, facts, now), subject=_subject(doctor_id))
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
    facts = await schedules.doc_facts(uow, doc)
    domain.validate_schedule(schedule, schedules.zones_for(doc, facts), now=now)
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
