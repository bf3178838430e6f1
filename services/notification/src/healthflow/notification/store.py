"""Collections, indexes and queries of the notification service.

Collections (database ``healthflow_notification``), times aware UTC::

    contacts        {_id: user_id, email, phone, full_name, roles[], active,
                     consent: {email|sms|push: {granted: bool, at}}, updated_at,
                     email_verified, email_verified_for, email_verified_at,
                     phone_verified_for (SHA-256 of the number), phone_verified_at,
                     contact_changed_at (time of the newest user.contact_changed applied),
                     erased_at (user.erased: email, phone, full_name removed)}
                    — the read model built from user.* and patient.consent_changed
    phone_codes     {_id: user_id, number_hash (SHA-256), code_hash (HMAC-SHA256),
                     attempts, sent_at, expires_at, purge_at (TTL index)} — the live
                     one-time code of each user (healthflow.notification.verification)
    phone_code_budgets {_id: "user:<id>" | "number:<SHA-256>", count, window_end,
                     purge_at (TTL index)} — codes texted in the current 24 h window
    preferences     {_id: user_id, channels: {email, sms, push, in_app: bool}, locale,
                     timezone (IANA) | None, quiet_hours: "HH:MM-HH:MM" | "" , updated_at}
    directory       {_id: "doctor:<id>" | "hospital:<id>", name, time_zone, updated_at}
    appointments    {_id: appointment_id, patient_id, data{...last event payload},
                     event_time, status} — newest event (by CloudEvents ``time``) wins
    reminders       {_id: "<appointment_id>:<offset minutes>", appointment_id, user_id,
                     offset_minutes, due_at, status: pending|sent|cancelled|failed,
                     attempts, last_error (failed firings),
                     reason (why cancelled unsent: the ending event type, time_passed,
                     visit_started, appointment_unknown),
                     delivery_ids[] (queued when fired), lease_owner, lease_until,
                     fired_at, updated_at}
    deliveries      {_id: delivery id, user_id, channel: email|sms|push, template, trigger
                     (event type | None), source_id (event id | "reminder:<id>@<due>"),
                     appointment_id, hospital_ids[] (the appointment's: whose staff find
                     it in the log, issue 16), locale, to (email/SMS: the address used,
                     set when sent; push: the subscription id), content{subject, text, html} |
                     {body} | {payload}, urgent, timezone (IANA, for quiet hours),
                     expires_at, status: queued|sent|delivered|failed|suppressed|cancelled,
                     reason, attempts, next_attempt_at, lease_owner, lease_until,
                     provider_id, last_error, created_at, updated_at, sent_at,
                     delivered_at, failed_at}
    feed            {_id, user_id, template, title, body, appointment_id, created_at, read_at}
    staff_memberships  who works where (healthflow.common.tenancy, from staff.assigned/removed)
    push_subscriptions {_id: sha256(endpoint), user_id, endpoint, keys{p256dh, auth},
                     created_at}
    service_keys    {_id: "vapid", private_key (envelope of the PKCS#8 DER,
                     healthflow.common.keywrap), created_at}
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common import jobs, tenancy
from healthflow.common.mongo import Document, Indexes

CONTACTS = "contacts"
PREFERENCES = "preferences"
DIRECTORY = "directory"
APPOINTMENTS = "appointments"
REMINDERS = "reminders"
DELIVERIES = "deliveries"
FEED = "feed"
PUSH_SUBSCRIPTIONS = "push_subscriptions"
SERVICE_KEYS = "service_keys"
PHONE_CODES = "phone_codes"
PHONE_CODE_BUDGETS = "phone_code_budgets"

INDEXES: Indexes = {
    DELIVERIES: [
        IndexModel([("status", ASCENDING), ("next_attempt_at", ASCENDING)], name="due"),
        IndexModel([("user_id", ASCENDING), ("created_at", DESCENDING)], name="by_user"),
        IndexModel([("channel", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING)],
                   name="by_channel_status"),
        IndexModel([("status", ASCENDING), ("created_at", DESCENDING)], name="by_status"),
        IndexModel([("created_at", DESCENDING)], name="by_time"),
        IndexModel([("provider_id", ASCENDING)], name="provider_id", sparse=True),
        IndexModel([("appointment_id", ASCENDING)], name="by_appointment", sparse=True),
        IndexModel([("hospital_ids", ASCENDING), ("created_at", DESCENDING)],
                   name="by_hospital"),
        IndexModel([("to", ASCENDING), ("channel", ASCENDING), ("sent_at", DESCENDING)],
                   name="by_destination", sparse=True),
    ],
    REMINDERS: [
        IndexModel([("status", ASCENDING), ("due_at", ASCENDING)], name="due"),
        IndexModel([("appointment_id", ASCENDING)], name="by_appointment"),
    ],
    FEED: [IndexModel([("user_id", ASCENDING), ("created_at", DESCENDING)], name="by_user")],
    PUSH_SUBSCRIPTIONS: [IndexModel([("user_id", ASCENDING)], name="by_user")],
    PHONE_CODES: [IndexModel([("purge_at", ASCENDING)], expireAfterSeconds=0, name="purge")],
    PHONE_CODE_BUDGETS: [IndexModel([("purge_at", ASCENDING)], expireAfterSeconds=0,
                                    name="purge")],
    **tenancy.INDEXES,
}

Session = AsyncClientSession | None

UNLEASED = jobs.UNLEASED
"""``lease_until`` of a document nobody holds (deliveries and reminders are leased with
:func:`healthflow.common.jobs.due` and :func:`~healthflow.common.jobs.claim`)."""


async def upsert_once(db: AsyncDatabase[Document], collection: str, doc: Document,
                      session: Session) -> bool:
    """Insert ``doc`` unless its ``_id`` exists (no error inside a transaction).

    Returns True when it was inserted. ``$setOnInsert`` with upsert: an existing
    document is left exactly as it is.
    """
    fields = {k: v for k, v in doc.items() if k != "_id"}
    result = await db[collection].update_one(
        {"_id": doc["_id"]}, {"$setOnInsert": fields}, upsert=True, session=session
    )
    return result.upserted_id is not None


async def overdue(db: AsyncDatabase[Document], *, now: datetime, before: datetime,
                  held_before: datetime) -> tuple[int, datetime | None]:
    """(How many, earliest due time) of pending reminders the scheduler should have fired:
    due before ``before`` and held by nobody at ``now``, or due before ``held_before``
    whoever holds them (a firing that keeps failing keeps renewing its lease)."""
    query = {"status": "pending", "$or": [
        {"due_at": {"$lt": before}, "lease_until": {"$lte": now}},
        {"due_at": {"$lt": held_before}}]}
    count = await db[REMINDERS].count_documents(query)
    if count == 0:
        return 0, None
    oldest = await db[REMINDERS].find_one(query, {"due_at": 1}, sort=[("due_at", ASCENDING)])
    return count, oldest["due_at"] if oldest else None


async def get(db: AsyncDatabase[Document], collection: str, id_: str,
              session: Session = None) -> Document | None:
    return await db[collection].find_one({"_id": id_}, session=session)


async def get_many(db: AsyncDatabase[Document], collection: str, ids: list[str],
                   session: Session = None) -> dict[str, Document]:
    """The documents of ``ids`` that exist, by id (one round trip)."""
    cursor = db[collection].find({"_id": {"$in": ids}}, session=session)
    return {doc["_id"]: doc async for doc in cursor}


async def upsert_many_once(db: AsyncDatabase[Document], collection: str,
                           docs: list[Document], session: Session) -> set[str]:
    """:func:`upsert_once` for several documents in one round trip; returns the ids inserted."""
    if not docs:
        return set()
    result = await db[collection].bulk_write(
        [UpdateOne({"_id": d["_id"]}, {"$setOnInsert": {k: v for k, v in d.items() if k != "_id"}},
                   upsert=True) for d in docs],
        ordered=False, session=session)
    return {str(v) for v in (result.upserted_ids or {}).values()}


async def find_deliveries(db: AsyncDatabase[Document], where: dict[str, Any], *,
                          before: tuple[datetime, str] | None, limit: int) -> list[Document]:
    """Deliveries matching ``where``, newest first, after the cursor position ``before``."""
    query = dict(where)
    if before is not None:
        at, id_ = before
        query["$or"] = [{"created_at": {"$lt": at}},
                        {"created_at": at, "_id": {"$lt": id_}}]
    cursor = db[DELIVERIES].find(query, {"content": 0}).sort(
        [("created_at", DESCENDING), ("_id", DESCENDING)]).limit(limit)
    return [doc async for doc in cursor]


async def find_feed(db: AsyncDatabase[Document], user_id: str, *, unread_only: bool,
                    before: tuple[datetime, str] | None, limit: int) -> list[Document]:
    query: dict[str, Any] = {"user_id": user_id}
    if unread_only:
        query["read_at"] = None
    if before is not None:
        at, id_ = before
        query["$or"] = [{"created_at": {"$lt": at}},
                        {"created_at": at, "_id": {"$lt": id_}}]
    cursor = db[FEED].find(query).sort([("created_at", DESCENDING), ("_id", DESCENDING)])
    return [doc async for doc in cursor.limit(limit)]


async def feed_since(db: AsyncDatabase[Document], user_id: str, since: datetime) -> list[Document]:
    """Feed items created at or after ``since``, oldest first (the stream's poll)."""
    cursor = db[FEED].find({"user_id": user_id, "created_at": {"$gte": since}}).sort(
        [("created_at", ASCENDING), ("_id", ASCENDING)]).limit(500)
    return [doc async for doc in cursor]


async def sent_to(db: AsyncDatabase[Document], channel: str, address: str,
                  since: datetime) -> int:
    """Messages of ``channel`` sent to ``address`` (a number or an e-mail address) since
    ``since``: what a destination's sending cap counts."""
    return await db[DELIVERIES].count_documents(
        {"to": address, "channel": channel, "sent_at": {"$gte": since}})


def appointment_hospitals(appointment: Document | None) -> list[str]:
    """The hospitals of an ``appointments`` read-model document: its last event's
    ``hospital_ids``, else (an event from before issue 16) its in-person ``location_id``."""
    data = (appointment or {}).get("data") or {}
    if data.get("hospital_ids"):
        return list(data["hospital_ids"])
    return [data["location_id"]] if data.get("location_id") else []


async def wake_awaiting_contact(db: AsyncDatabase[Document], session: AsyncClientSession,
                                user_id: str,
                                now: datetime) -> None:
    """Make ``user_id``'s queued deliveries that waited for their contact (an event about
    them consumed before their ``user.registered``) due at ``now`` (aware UTC)."""
    await db[DELIVERIES].update_many(
        {"user_id": user_id, "status": "queued", "awaiting_contact": True},
        {"$set": {"next_attempt_at": now, "awaiting_contact": False}}, session=session)


async def adopt_delivery_hospitals(db: AsyncDatabase[Document]) -> int:
    """Give deliveries queued before issue 16 the hospitals of their appointment, so their
    hospitals' staff still find them in the log; run at start (a no-op once done). Returns
    how many it changed."""
    changed = 0
    found: dict[str, list[str]] = {}
    async for doc in db[DELIVERIES].find(
            {"hospital_ids": {"$exists": False}, "appointment_id": {"$ne": None}},
            {"appointment_id": 1}):
        appointment_id = doc["appointment_id"]
        if appointment_id not in found:
            found[appointment_id] = appointment_hospitals(
                await get(db, APPOINTMENTS, appointment_id))
        result = await db[DELIVERIES].update_one(
            {"_id": doc["_id"], "hospital_ids": {"$exists": False}},
            {"$set": {"hospital_ids": found[appointment_id]}})
        changed += result.modified_count
    return changed


async def current_staff(db: AsyncDatabase[Document], session: AsyncClientSession | None,
                        hospital_id: str, user_ids: list[str]) -> set[str]:
    """Which of ``user_ids`` have a membership at ``hospital_id`` that has not ended
    (``removed_at`` None in :data:`tenancy.MEMBERSHIPS`)."""
    return {d["user_id"] async for d in db[tenancy.MEMBERSHIPS].find(
        {"hospital_id": hospital_id, "user_id": {"$in": user_ids}, "removed_at": None},
        {"user_id": 1}, session=session)}
