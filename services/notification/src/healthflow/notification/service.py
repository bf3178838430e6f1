"""What the notification service does, called by event handlers, the scheduler and routes.

Every function here runs inside one :class:`UnitOfWork` (the consumer's
transaction, whose inbox record commits with the effect): it updates the read
models, the reminder schedule, and *queues* deliveries. Nothing is sent inside a
transaction; :mod:`healthflow.notification.dispatch` sends queued deliveries
afterwards. A delivery's ``_id`` is :func:`~healthflow.notification.domain.delivery_id`
of (source event or reminder firing, channel, recipient, template), written with
``$setOnInsert``: the same event handled twice queues nothing new.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document
from healthflow.notification import domain, store
from healthflow.notification.domain import Channel, Clock, MessageKind, Status
from healthflow.notification.rendering import Renderer
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


class UserData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    user_id: str
    email: str | None = None
    full_name: str | None = None
    phone: str | None = None
    roles: list[str] | None = None


class ConsentData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    patient_id: str
    channel: str
    granted: bool
    at: datetime


# --- read models ---------------------------------------------------------------------


async def apply_user(uow: UnitOfWork, event_type: str, raw: dict[str, Any], ctx: Context,
                     event_id: str) -> None:
    """``user.registered``: contact + welcome email; ``user.role_changed``,
    ``user.deactivated`` / ``user.activated``: roles and the active flag."""
    data = UserData.model_validate(raw)
    now = ctx.clock.now()
    contacts = uow.db[store.CONTACTS]
    update: dict[str, Any] = {"updated_at": now}
    if event_type == "user.registered":
        update |= {"email": data.email, "phone": data.phone, "full_name": data.full_name,
                   "roles": data.roles or [], "active": True}
    elif event_type == "user.role_changed" and data.roles is not None:
        update["roles"] = data.roles
    elif event_type in ("user.deactivated", "user.activated"):
        update["active"] = event_type == "user.activated"
    else:
        return
    await contacts.update_one({"_id": data.user_id}, {"$set": update}, upsert=True,
                              session=uow.session)
    if event_type == "user.registered" and data.email:
        expires = now + timedelta(seconds=ctx.settings.email_verification_ttl)
        token = domain.verification_token(
            ctx.settings.email_verification_secret.get_secret_value().encode(),
            data.user_id, data.email, expires)
        context = {
            "name": data.full_name,
            "verify_link": f"{ctx.settings.app_base_url.rstrip('/')}/verify-email?token={token}",
            "valid_hours": int(ctx.settings.email_verification_ttl // 3600),
        }
        await plan_message(uow, ctx, user_id=data.user_id, kind=domain.WELCOME,
                           source_id=event_id, trigger=event_type, context=context)


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


ADDRESS_FIELDS = {Channel.EMAIL: "email", Channel.SMS: "phone"}
"""Where a contact keeps the address of each addressed channel."""


# --- queuing messages ----------------------------------------------------------------------


def locale_of(prefs: Document | None, ctx: Context) -> str:
    return domain.pick_locale((prefs or {}).get("locale"), ctx.settings.default_locale)


def channel_preferences(prefs: Document | None) -> dict[str, bool]:
    return dict((prefs or {}).get("channels") or {})


def consents(contact: Document | None) -> dict[str, bool]:
    return {channel: bool(value.get("granted", True))
            for channel, value in ((contact or {}).get("consent") or {}).items()}


async def plan_message(
    uow: UnitOfWork,
    ctx: Context,
    *,
    user_id: str,
    kind: MessageKind,
    source_id: str,
    trigger: str | None,
    context: dict[str, Any],
    appointment_id: str | None = None,
    timezone: str | None = None,
    expires_at: datetime | None = None,
    prefs: Document | None = None,
) -> list[str]:
    """Render ``kind`` for ``user_id`` and queue one delivery per usable channel.

    Channels refused by :func:`~healthflow.notification.domain.suppression` are
    recorded as ``suppressed`` deliveries with the reason. Email and SMS deliveries
    are keyed by the user (the address is looked up, and recorded, when sending);
    Web Push ones by subscription.
    The in-app feed item is written at once. Returns the delivery ids queued.
    """
    now = ctx.clock.now()
    contact = await store.get(uow.db, store.CONTACTS, user_id, uow.session)
    if prefs is None:
        prefs = await store.get(uow.db, store.PREFERENCES, user_id, uow.session)
    locale = domain.pick_locale((prefs or {}).get("locale"), ctx.settings.default_locale)
    context = {"link": ctx.settings.app_base_url,
               "name": (contact or {}).get("full_name")} | context
    rendered = ctx.renderer.render(kind.template, locale, context)
    deliveries: list[Document] = []
    active = bool((contact or {}).get("active", True))
    consent, preference = consents(contact), channel_preferences(prefs)
    base: Document = {"user_id": user_id, "template": kind.template, "trigger": trigger,
            "source_id": source_id, "appointment_id": appointment_id, "locale": locale,
            "urgent": kind.urgent, "timezone": timezone, "expires_at": expires_at,
            "attempts": 0, "next_attempt_at": now, "lease_owner": None,
            "lease_until": store.UNLEASED, "provider_id": None, "last_error": None,
            "reason": None, "created_at": now, "updated_at": now, "sent_at": None,
            "delivered_at": None, "failed_at": None}
    for channel in kind.channels:
        if channel is Channel.IN_APP:
            reason = domain.suppression(channel, consent=consent, preferences=preference,
                                        address=None, active=active)
            if reason is None:
                await store.upsert_once(uow.db, store.FEED, {
                    "_id": domain.delivery_id(source_id, channel, user_id, kind.template),
                    "user_id": user_id, "template": kind.template, "title": rendered.subject,
                    "body": rendered.short, "appointment_id": appointment_id,
                    "created_at": now, "read_at": None}, uow.session)
            continue
        # (recipient in the delivery id, address to check now, content)
        targets: list[tuple[str, str | None, dict[str, Any]]]
        if channel in (Channel.EMAIL, Channel.SMS):
            # The address is read again when sending (it may change before a reminder
            # fires). A user the contact read model does not know yet (user.registered
            # consumed concurrently with this event) is resolved then, not refused now.
            field_ = ADDRESS_FIELDS[channel]
            address = (contact or {}).get(field_) if contact is not None else "(at send time)"
            content: dict[str, Any] = (
                {"subject": rendered.subject, "text": rendered.text, "html": rendered.html}
                if channel is Channel.EMAIL else {"body": rendered.sms})
            targets = [(user_id, address, content)]
        else:
            subscriptions = uow.db[store.PUSH_SUBSCRIPTIONS].find(
                {"user_id": user_id}, session=uow.session)
            payload = {"title": rendered.subject, "body": rendered.short,
                       "url": ctx.settings.app_base_url, "tag": kind.template}
            targets = [(s["_id"], s["_id"], {"payload": payload}) async for s in subscriptions]
            if not targets:
                continue  # no browser subscribed: nothing to record
        for recipient, address, content in targets:
            reason = domain.suppression(channel, consent=consent, preferences=preference,
                                        address=address, active=active)
            id_ = domain.delivery_id(source_id, channel, recipient, kind.template)
            doc = base | {"_id": id_, "channel": channel.value, "to": None}
            if reason is None:
                if channel is Channel.PUSH:
                    doc["to"] = recipient  # the subscription id
                doc |= {"content": content, "status": Status.QUEUED.value}
            else:
                doc |= {"content": None, "status": Status.SUPPRESSED.value,
                        "reason": reason, "next_attempt_at": None}
            deliveries.append(doc)
    inserted = await store.upsert_many_once(uow.db, store.DELIVERIES, deliveries, uow.session)
    return [d["_id"] for d in deliveries if d["_id"] in inserted and d["status"] == "queued"]
