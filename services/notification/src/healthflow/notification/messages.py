"""Queuing a message: render it once, then one delivery per usable channel.

Called inside the caller's :class:`UnitOfWork` (an event's, or a reminder's
firing): nothing is sent here (:mod:`healthflow.notification.dispatch` sends).
A delivery's ``_id`` is :func:`~healthflow.notification.domain.delivery_id` of
(source, channel, recipient, template), written with ``$setOnInsert``: the same
source planned twice queues nothing new.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document
from healthflow.notification import domain, store
from healthflow.notification.domain import Channel, MessageKind, Status

if TYPE_CHECKING:
    from healthflow.notification.rendering import Rendered
    from healthflow.notification.service import Context

ADDRESS_FIELDS = {Channel.EMAIL: "email", Channel.SMS: "phone"}
"""Where a contact keeps the address of each addressed channel."""

Target = tuple[str, str | None, dict[str, Any]]
"""(recipient in the delivery id, address to check now, content)."""


@dataclass(frozen=True)
class PushOptions:
    """What a message's Web Push carries beyond the rendered title and body.

    ``data``: fields merged into the JSON payload (identifiers only, never PHI; a
    ``path`` in it also becomes ``url`` under the app's base URL, a ``tag`` replaces the
    template's); ``topic``: the RFC 8030 §5.4 ``Topic`` header
    (:func:`~healthflow.notification.domain.push_topic`), so a newer push of the same
    topic replaces an older one the push service still holds.
    """

    data: Mapping[str, Any] = field(default_factory=dict)
    topic: str | None = None


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
    push: PushOptions | None = None,
    to: str | None = None,
) -> list[str]:
    """Render ``kind`` for ``user_id`` and queue one delivery per usable channel.

    Channels refused by :func:`~healthflow.notification.domain.suppression` are
    recorded as ``suppressed`` deliveries with the reason. Email and SMS deliveries
    are keyed by the user (the address is looked up, and recorded, when sending);
    Web Push ones by subscription. The in-app feed item is written at once.
    ``expires_at`` (aware UTC): after it the delivery is cancelled unsent (and a push's
    ``TTL`` ends there). ``push``: extra payload fields and ``Topic`` of the Web Push.
    ``to``: the address (number) instead of the contact's, kept in the delivery
    (``pinned``: a notice to an address the account left). Returns the ids queued.
    """
    now = ctx.clock.now()
    hospital_ids = await _hospitals_of(uow, appointment_id)
    contact = await store.get(uow.db, store.CONTACTS, user_id, uow.session)
    prefs = prefs or await store.get(uow.db, store.PREFERENCES, user_id, uow.session)
    locale = locale_of(prefs, ctx)
    rendered = ctx.renderer.render(kind.template, locale, {
        "link": ctx.settings.app_base_url, "name": (contact or {}).get("full_name")} | context)
    active, consent = bool((contact or {}).get("active", True)), consents(contact)
    preference = channel_preferences(prefs)
    base: Document = {
        "user_id": user_id, "template": kind.template, "trigger": trigger,
        "source_id": source_id, "appointment_id": appointment_id, "hospital_ids": hospital_ids,
        "locale": locale, "pinned": to is not None, "urgent": kind.urgent,
        "timezone": timezone, "expires_at": expires_at, "attempts": 0, "next_attempt_at": now,
        "lease_owner": None, "lease_until": store.UNLEASED, "provider_id": None,
        "last_error": None, "reason": None, "created_at": now, "updated_at": now,
        "sent_at": None, "delivered_at": None, "failed_at": None}
    deliveries: list[Document] = []
    for channel in kind.channels:
        if channel is Channel.IN_APP:
            if domain.suppression(channel, consent=consent, preferences=preference,
                                  address=None, active=active) is None:
                await _feed_item(uow, user_id, kind, source_id, rendered, appointment_id, now)
            continue
        for recipient, address, content in await _targets(uow, ctx, channel, user_id,
                                                          contact, kind, rendered,
                                                          push or PushOptions(), to):
            reason = domain.suppression(channel, consent=consent, preferences=preference,
                                        address=address, active=active)
            deliveries.append(_delivery(base, channel, source_id, recipient, kind, content,
                                        reason, address))
    inserted = await store.upsert_many_once(uow.db, store.DELIVERIES, deliveries, uow.session)
    return [d["_id"] for d in deliveries if d["_id"] in inserted and d["status"] == "queued"]


async def _hospitals_of(uow: UnitOfWork, appointment_id: str | None) -> list[str]:
    """The hospitals of the appointment a message is about (none for a message about no
    appointment): the delivery log shows a delivery to the staff of these hospitals only
    (issue 16; :func:`store.appointment_hospitals`)."""
    if appointment_id is None:
        return []
    return store.appointment_hospitals(
        await store.get(uow.db, store.APPOINTMENTS, appointment_id, uow.session))


async def _feed_item(uow: UnitOfWork, user_id: str, kind: MessageKind, source_id: str,
                     rendered: Rendered, appointment_id: str | None, now: datetime) -> None:
    await store.upsert_once(uow.db, store.FEED, {
        "_id": domain.delivery_id(source_id, Channel.IN_APP, user_id, kind.template),
        "user_id": user_id, "template": kind.template, "title": rendered.subject,
        "body": rendered.short, "appointment_id": appointment_id,
        "created_at": now, "read_at": None}, uow.session)


async def _targets(uow: UnitOfWork, ctx: Context, channel: Channel, user_id: str,
                   contact: Document | None, kind: MessageKind,
                   rendered: Rendered, push: PushOptions,
                   to: str | None = None) -> list[Target]:
    """Who gets ``channel``: the user's address (email, SMS; ``to`` when pinned) or each
    browser (push)."""
    if channel in (Channel.EMAIL, Channel.SMS):
        # The address is read again when sending (it may change before a reminder
        # fires). A user the contact read model does not know yet (user.registered
        # consumed concurrently with this event) is resolved then, not refused now.
        address = to or ((contact or {}).get(ADDRESS_FIELDS[channel]) if contact is not None
                         else "(at send time)")
        content: dict[str, Any] = (
            {"subject": rendered.subject, "text": rendered.text, "html": rendered.html}
            if channel is Channel.EMAIL else {"body": rendered.sms})
        return [(user_id, address, content)]
    subscriptions = uow.db[store.PUSH_SUBSCRIPTIONS].find({"user_id": user_id},
                                                          session=uow.session)
    base_url = ctx.settings.app_base_url
    payload = {"title": rendered.subject, "body": rendered.short, "url": base_url,
               "tag": kind.template} | dict(push.data)
    if push.data.get("path"):
        payload["url"] = base_url.rstrip("/") + str(push.data["path"])
    content = {"payload": payload, "topic": push.topic}
    return [(s["_id"], s["_id"], content) async for s in subscriptions]


def _delivery(base: Document, channel: Channel, source_id: str, recipient: str,
              kind: MessageKind, content: dict[str, Any], reason: str | None,
              address: str | None = None) -> Document:
    """One delivery document: ``queued`` with its content, or ``suppressed`` with why."""
    doc = base | {"_id": domain.delivery_id(source_id, channel, recipient, kind.template),
                  "channel": channel.value, "to": None}
    if reason is None:
        if channel is Channel.PUSH:
            doc["to"] = recipient  # the subscription id
        elif base.get("pinned"):
            doc["to"] = address  # sent here, whatever the contact's address is then
        return doc | {"content": content, "status": Status.QUEUED.value}
    return doc | {"content": None, "status": Status.SUPPRESSED.value, "reason": reason,
                  "next_attempt_at": None}
