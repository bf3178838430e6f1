"""What the notification service does, called by event handlers, the scheduler and routes.

The event side runs inside one :class:`UnitOfWork` (the consumer's transaction,
whose inbox record commits with the effect): it updates the read models, the
reminder schedule, and *queues* deliveries (:mod:`healthflow.notification.messages`).
Nothing is sent inside a transaction; :mod:`healthflow.notification.dispatch` sends
queued deliveries afterwards. The user side (preferences, the feed, push
subscriptions) is one transaction per call, always on the caller's own documents.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from healthflow.common.errors import Conflict, Forbidden, NotFound
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document
from healthflow.common.outbound import check_url
from healthflow.common.service import ServiceRuntime
from healthflow.notification import domain, store
from healthflow.notification.domain import Clock
from healthflow.notification.messages import locale_of, plan_message
from healthflow.notification.rendering import Renderer
from healthflow.notification.schemas import PreferencesIn, PushSubscriptionIn
from healthflow.notification.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What the planning functions need besides the unit of work."""

    settings: Settings
    clock: Clock
    renderer: Renderer = field(default_factory=Renderer)


# --- tolerant local views of other services' payloads --------------------------------


class AppointmentData(BaseModel):
    """The fields of ``appointment.*`` payloads this service uses (others are ignored).

    ``patient_id`` is the patient's user id (the patient service keys profiles by it).
    """

    model_config = ConfigDict(extra="ignore")

    appointment_id: str
    patient_id: str
    doctor_id: str | None = None
    doctor_user_id: str | None = None
    location_id: str | None = None
    start: datetime
    end: datetime | None = None
    timezone: str | None = None
    mode: str | None = None
    status: str | None = None
    previous_start: datetime | None = None
    hospital_ids: list[str] = []


class ConsentData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    patient_id: str
    channel: str
    granted: bool
    at: datetime


# --- read models ---------------------------------------------------------------------


async def apply_consent(uow: UnitOfWork, raw: dict[str, Any], ctx: Context) -> None:
    """``patient.consent_changed``: the newest decision per channel (by its ``at``) wins."""
    data = ConsentData.model_validate(raw)
    if data.channel not in {c.value for c in domain.CONSENT_CHANNELS}:
        log.info("consent for an unknown channel ignored", extra={"channel": data.channel})
        return
    at = domain.parse_time(data.at)
    current = await store.get(uow.db, store.CONTACTS, data.patient_id, uow.session)
    previous = ((current or {}).get("consent") or {}).get(data.channel)
    if previous is not None and previous["at"] >= at:
        return
    await uow.db[store.CONTACTS].update_one(
        {"_id": data.patient_id},
        {"$set": {f"consent.{data.channel}": {"granted": data.granted, "at": at},
                  "updated_at": ctx.clock.now()}},
        upsert=True, session=uow.session)


async def apply_directory(uow: UnitOfWork, kind: str, raw: dict[str, Any], ctx: Context) -> None:
    """``doctor.registered`` (display name) and ``hospital.*`` (name, city, zone)."""
    if kind == "doctor":
        id_, name, tz = raw.get("doctor_id"), raw.get("display_name"), None
    else:
        id_, tz = raw.get("hospital_id"), raw.get("time_zone")
        name = raw.get("name")
        if name and raw.get("city"):
            name = f"{name}, {raw['city']}"
    if not id_ or not name:
        return
    await uow.db[store.DIRECTORY].update_one(
        {"_id": f"{kind}:{id_}"},
        {"$set": {"name": name, "time_zone": tz, "updated_at": ctx.clock.now()}},
        upsert=True, session=uow.session)


async def apply_prescription_issued(uow: UnitOfWork, raw: dict[str, Any], event_id: str,
                                    ctx: Context) -> None:
    """``prescription.issued``: tell the patient a new prescription is ready (once per
    event; the content names no medication, the app shows it after sign-in)."""
    await plan_message(uow, ctx, user_id=raw["patient_id"], kind=domain.PRESCRIPTION_ISSUED,
                       source_id=event_id, trigger="prescription.issued", context={})


async def apply_payment_refunded(uow: UnitOfWork, raw: dict[str, Any], event_id: str,
                                 ctx: Context) -> None:
    """``payment.refunded``: tell the patient what went back (integer minor units and the
    ISO 4217 currency; the template formats them), once per event."""
    await plan_message(uow, ctx, user_id=raw["patient_id"], kind=domain.PAYMENT_REFUNDED,
                       source_id=event_id, trigger="payment.refunded",
                       context={"refund_amount": raw["refund_amount"],
                                "currency": raw["currency"],
                                "full": raw["refund_amount"] >= raw["amount"]},
                       appointment_id=raw["appointment_id"])


async def apply_payment_refund_failed(uow: UnitOfWork, raw: dict[str, Any], event_id: str,
                                      ctx: Context) -> None:
    """``payment.refund_failed``: tell the patient the refund they were told of did not
    reach their card and finance will contact them (integer minor units, ISO 4217)."""
    await plan_message(uow, ctx, user_id=raw["patient_id"], kind=domain.PAYMENT_REFUND_FAILED,
                       source_id=event_id, trigger="payment.refund_failed",
                       context={"refund_amount": raw["refund_amount"],
                                "currency": raw["currency"]},
                       appointment_id=raw["appointment_id"])


async def apply_xray_reported(uow: UnitOfWork, raw: dict[str, Any], event_id: str,
                              ctx: Context) -> None:
    """``xray.reported``: tell the patient their X-ray report is signed and ready (once
    per event; the content names no body part or finding, the app shows the report)."""
    await plan_message(uow, ctx, user_id=raw["patient_id"], kind=domain.XRAY_REPORT_READY,
                       source_id=event_id, trigger="xray.reported", context={})


# --- appointments and reminders --------------------------------------------------------


async def apply_appointment(uow: UnitOfWork, event_type: str, raw: dict[str, Any],
                            event_time: datetime, event_id: str, ctx: Context) -> None:
    """Update the appointment read model and its reminders; queue the messages it causes
    (the patient's, and for a booking, move or cancellation the doctor's feed and push).

    An event older (by CloudEvents ``time``) than the one already applied changes
    nothing: the patient must not be told about a state that has since changed.
    One exception: a booking that arrives after a later change of the same
    appointment (events of one appointment may overtake each other) still owes its
    confirmation — sent with the appointment as it stands now, unless it has ended.
    """
    data = AppointmentData.model_validate(raw)
    appointments = uow.db[store.APPOINTMENTS]
    current = await store.get(uow.db, store.APPOINTMENTS, data.appointment_id, uow.session)
    if current is not None and current["event_time"] > event_time:
        if event_type == "appointment.booked" and current["status"] not in domain.ENDED_STATUSES:
            log.info("late booking confirmed with the current state",
                     extra={"appointment_id": data.appointment_id})
            latest = AppointmentData.model_validate(current["data"])
            await plan_appointment_messages(uow, event_type, latest, event_id, ctx)
        else:
            log.info("stale appointment event ignored",
                     extra={"appointment_id": data.appointment_id, "type": event_type})
        return
    snapshot = data.model_dump()
    await appointments.update_one(
        {"_id": data.appointment_id},
        {"$set": {"patient_id": data.patient_id, "data": snapshot, "event_time": event_time,
                  "status": data.status, "type": event_type}},
        upsert=True, session=uow.session)
    if event_type in domain.SETS_REMINDERS:
        await schedule_reminders(uow, data, ctx)
    elif event_type in domain.ENDS_REMINDERS:
        await cancel_reminders(uow, data.appointment_id, ctx.clock.now(), reason=event_type)
    await plan_appointment_messages(uow, event_type, data, event_id, ctx)


async def plan_appointment_messages(uow: UnitOfWork, event_type: str, data: AppointmentData,
                                    event_id: str, ctx: Context) -> None:
    """Queue what ``event_type`` tells the patient and, where it concerns them, the doctor."""
    kind = domain.APPOINTMENT_TEMPLATES.get(event_type)
    if kind is not None:
        prefs = await store.get(uow.db, store.PREFERENCES, data.patient_id, uow.session)
        context = await appointment_context(uow, data, ctx, locale_of(prefs, ctx))
        await plan_message(uow, ctx, user_id=data.patient_id, kind=kind, source_id=event_id,
                           trigger=event_type, context=context,
                           appointment_id=data.appointment_id, timezone=data.timezone,
                           expires_at=None, prefs=prefs)
    doctor_kind = domain.DOCTOR_TEMPLATES.get(event_type)
    if doctor_kind is not None and data.doctor_user_id:
        prefs = await store.get(uow.db, store.PREFERENCES, data.doctor_user_id, uow.session)
        context = await appointment_context(uow, data, ctx, locale_of(prefs, ctx))
        await plan_message(uow, ctx, user_id=data.doctor_user_id, kind=doctor_kind,
                           source_id=event_id, trigger=event_type, context=context,
                           appointment_id=data.appointment_id, timezone=data.timezone,
                           expires_at=None, prefs=prefs)


async def schedule_reminders(uow: UnitOfWork, data: AppointmentData, ctx: Context) -> None:
    """One reminder document per configured offset still ahead; moved when the start moves.

    A reminder whose time changed goes back to ``pending`` (a reminder already
    sent for the old time is owed again for the new one); offsets whose time has
    passed are cancelled.
    """
    now = ctx.clock.now()
    start = domain.parse_time(data.start)
    offsets = ctx.settings.reminder_offsets_minutes
    wanted = dict(domain.reminder_times(start, offsets, now))
    reminders = uow.db[store.REMINDERS]
    ids = {offset: f"{data.appointment_id}:{offset}" for offset in offsets}
    stored = await store.get_many(uow.db, store.REMINDERS, list(ids.values()), uow.session)
    new: list[Document] = []
    for offset, id_ in ids.items():
        existing = stored.get(id_)
        due = wanted.get(offset)
        if due is None:
            if existing is not None and existing["status"] == "pending":
                await reminders.update_one(
                    {"_id": id_}, {"$set": {"status": "cancelled", "reason": "time_passed",
                                            "updated_at": now}},
                    session=uow.session)
            continue
        if existing is None:
            new.append(
                {"_id": id_, "appointment_id": data.appointment_id, "user_id": data.patient_id,
                 "offset_minutes": offset, "due_at": due, "status": "pending",
                 "reason": None, "delivery_ids": [],
                 "lease_owner": None, "lease_until": store.UNLEASED, "fired_at": None,
                 "created_at": now, "updated_at": now})
        elif existing["due_at"] != due or existing["status"] == "cancelled":
            await reminders.update_one(
                {"_id": id_},
                {"$set": {"due_at": due, "status": "pending", "lease_owner": None,
                          "lease_until": store.UNLEASED, "fired_at": None, "updated_at": now,
                          "reason": None, "delivery_ids": [], "user_id": data.patient_id}},
                session=uow.session)
    if new:
        await reminders.insert_many(new, session=uow.session)


async def cancel_reminders(uow: UnitOfWork, appointment_id: str, now: datetime, *,
                           reason: str) -> int:
    """Cancel the appointment's pending reminders, recording ``reason`` (the event type
    that made them useless, e.g. ``appointment.cancelled``); returns how many."""
    result = await uow.db[store.REMINDERS].update_many(
        {"appointment_id": appointment_id, "status": "pending"},
        {"$set": {"status": "cancelled", "reason": reason, "updated_at": now}},
        session=uow.session)
    return result.modified_count


REMINDER_FIRED = "fired"
"""What :func:`fire_reminder` answers when it queued the reminder's messages."""


async def fire_reminder(uow: UnitOfWork, reminder: Document, owner: str, ctx: Context) -> str:
    """Queue the reminder's messages and mark it sent, if ``owner`` still holds it.

    Returns :data:`REMINDER_FIRED`, or why nothing was queued: ``"lease_lost"``
    (another replica holds it, or it was moved or cancelled since the claim), or
    the ``reason`` recorded on a reminder cancelled unsent: ``"appointment_unknown"``
    (no appointment event reached this service) or ``"visit_started"`` (the
    service was down past the start). A fired reminder records the deliveries it
    queued (``delivery_ids``); each then shows in the delivery log as sent,
    deferred (``reason: quiet_hours``), suppressed or failed, with its reason.
    """
    now = ctx.clock.now()
    current = await uow.db[store.REMINDERS].find_one(
        {"_id": reminder["_id"], "lease_owner": owner, "status": "pending",
         "due_at": reminder["due_at"]}, session=uow.session)
    if current is None:
        return "lease_lost"
    appointment = await store.get(uow.db, store.APPOINTMENTS, reminder["appointment_id"],
                                  uow.session)
    start = appointment["data"]["start"] if appointment else None
    if appointment is None or start is None or domain.parse_time(start) <= now:
        reason = "appointment_unknown" if start is None else "visit_started"
        await uow.db[store.REMINDERS].update_one(
            {"_id": reminder["_id"]},
            {"$set": {"status": "cancelled", "reason": reason, "lease_owner": None,
                      "lease_until": store.UNLEASED, "updated_at": now}}, session=uow.session)
        return reason
    data = AppointmentData.model_validate(appointment["data"])
    prefs = await store.get(uow.db, store.PREFERENCES, data.patient_id, uow.session)
    context = await appointment_context(uow, data, ctx, locale_of(prefs, ctx))
    source_id = f"reminder:{reminder['_id']}@{reminder['due_at'].isoformat()}"
    queued = await plan_message(uow, ctx, user_id=data.patient_id, kind=domain.REMINDER,
                                source_id=source_id, trigger=None, context=context,
                                appointment_id=data.appointment_id, timezone=data.timezone,
                                expires_at=domain.parse_time(data.start), prefs=prefs)
    await uow.db[store.REMINDERS].update_one(
        {"_id": reminder["_id"]},
        {"$set": {"status": "sent", "fired_at": now, "reason": None, "delivery_ids": queued,
                  "lease_owner": None, "lease_until": store.UNLEASED, "updated_at": now}},
        session=uow.session)
    return REMINDER_FIRED


async def appointment_context(uow: UnitOfWork, data: AppointmentData, ctx: Context,
                              locale: str) -> dict[str, Any]:
    doctor_key, place_key = f"doctor:{data.doctor_id}", f"hospital:{data.location_id}"
    names = await store.get_many(uow.db, store.DIRECTORY, [doctor_key, place_key], uow.session)
    return domain.appointment_context(
        data.model_dump(), locale=locale,
        doctor_name=names[doctor_key]["name"] if doctor_key in names else None,
        place=names[place_key]["name"] if data.location_id and place_key in names else None,
        fallback_tz=ctx.settings.default_timezone)


# --- what users do through the API (one transaction each) ----------------------------------


async def set_preferences(runtime: ServiceRuntime, ctx: Context, user_id: str,
                          body: PreferencesIn) -> Document:
    """Replace the user's preferences; the stored document (``updated_at`` aware UTC).
    Consent is not set here: it is the patient service's (``patient.consent_changed``)."""
    doc: Document = {"channels": body.channels.model_dump(), "locale": body.locale,
                     "timezone": body.timezone, "quiet_hours": body.quiet_hours,
                     "updated_at": ctx.clock.now()}

    async def write(uow: UnitOfWork) -> Document:
        await uow.db[store.PREFERENCES].update_one({"_id": user_id}, {"$set": doc}, upsert=True,
                                                   session=uow.session)
        return doc

    return await runtime.transact(write, actor=user_id)


async def mark_read(runtime: ServiceRuntime, ctx: Context, user_id: str,
                    item_id: str) -> Document:
    """Mark the user's feed item read (idempotent: the first ``read_at`` stays).

    Raises:
        NotFound: (404) the user has no such item (another user's is not found either).
    """

    async def write(uow: UnitOfWork) -> Document:
        feed = uow.db[store.FEED]
        await feed.update_one({"_id": item_id, "user_id": user_id, "read_at": None},
                              {"$set": {"read_at": ctx.clock.now()}}, session=uow.session)
        doc = await feed.find_one({"_id": item_id, "user_id": user_id}, session=uow.session)
        if doc is None:
            raise NotFound(f"no feed item {item_id}")
        return doc

    return await runtime.transact(write, actor=user_id)


async def mark_all_read(runtime: ServiceRuntime, ctx: Context, user_id: str) -> int:
    """Mark every unread feed item of the user read; how many."""

    async def write(uow: UnitOfWork) -> int:
        result = await uow.db[store.FEED].update_many(
            {"user_id": user_id, "read_at": None}, {"$set": {"read_at": ctx.clock.now()}},
            session=uow.session)
        return result.modified_count

    return await runtime.transact(write, actor=user_id)


async def subscribe_push(runtime: ServiceRuntime, ctx: Context, user_id: str,
                         body: PushSubscriptionIn) -> Document:
    """Register a browser for Web Push (idempotent per endpoint); the stored subscription,
    whose ``_id`` is the first 32 hex digits of the endpoint's SHA-256. The endpoint must
    pass ``settings.push_policy`` (HTTPS, an allowed push service, public addresses).

    Raises:
        UnsafeURL: (422) the endpoint is not one the service may call.
        Forbidden: (403) another user holds the endpoint.
        Conflict: (409) the user already has ``push_max_subscriptions`` other browsers.
    """
    endpoint = await check_url(str(body.endpoint), ctx.settings.push_policy)
    id_ = hashlib.sha256(endpoint.encode()).hexdigest()[:32]
    most = ctx.settings.push_max_subscriptions

    async def write(uow: UnitOfWork) -> Document:
        subscriptions = uow.db[store.PUSH_SUBSCRIPTIONS]
        existing = await subscriptions.find_one({"_id": id_}, session=uow.session)
        if existing is not None and existing["user_id"] != user_id:
            raise Forbidden("this push endpoint is registered to another account")
        others = await subscriptions.count_documents(
            {"user_id": user_id, "_id": {"$ne": id_}}, session=uow.session)
        if others >= most:
            raise Conflict(f"an account holds at most {most} push subscriptions; "
                           "remove one (DELETE …/push/subscriptions/{id}) first")
        await subscriptions.update_one(
            {"_id": id_},
            {"$set": {"user_id": user_id, "endpoint": endpoint, "keys": body.keys.model_dump()},
             "$setOnInsert": {"created_at": ctx.clock.now()}}, upsert=True, session=uow.session)
        doc = await subscriptions.find_one({"_id": id_}, session=uow.session)
        assert doc is not None
        return doc

    return await runtime.transact(write, actor=user_id)


async def unsubscribe_push(runtime: ServiceRuntime, user_id: str, subscription_id: str) -> None:
    """Forget one of the user's browsers.

    Raises:
        NotFound: (404) the user has no such subscription.
    """

    async def write(uow: UnitOfWork) -> None:
        result = await uow.db[store.PUSH_SUBSCRIPTIONS].delete_one(
            {"_id": subscription_id, "user_id": user_id}, session=uow.session)
        if result.deleted_count == 0:
            raise NotFound(f"no push subscription {subscription_id}")

    await runtime.transact(write, actor=user_id)
