"""Sending queued deliveries and firing due reminders: once, across replicas, after restarts.

* :class:`Dispatcher` claims each due delivery (``status: queued``,
  ``next_attempt_at <= now``, no live lease) with one conditional update that
  leases it to this replica (:func:`~healthflow.common.jobs.claim`:
  a compare-and-set only one replica wins), re-checks consent and quiet hours at send
  time, sends, and records the outcome with its event (``notification.sent`` /
  ``notification.failed``) in one transaction. A transient error puts it back in
  the queue with ``next_attempt_at = now + backoff(attempts)`` (stored, so a
  restart keeps the schedule); a permanent one, or the last attempt, fails it.
  Just before sending, an SMS or e-mail whose number or address already had its cap of
  messages in the window (``sms_per_number_cap`` / ``email_per_address_cap`` per
  ``destination_cap_window``, counted from the deliveries sent to it, across accounts)
  is suppressed as ``destination_capped`` (:data:`DESTINATION_CAPPED`; the log names
  the delivery, never the address).
* :class:`ReminderScheduler` claims each due reminder the same way and, in one
  transaction that first checks it still holds the lease, queues the reminder's
  deliveries and marks it ``sent``. The deliveries' ids derive from the
  reminder and its due time, so even a reminder processed twice (a lease that
  expired mid-way) queues one message per channel.

Both read the time from an injectable :class:`~healthflow.notification.domain.Clock`
and run as :class:`~healthflow.common.workers.Loop` workers of the service's runtime
(``app.py``); tests that move a settable clock stop those loops and call
:meth:`run_due` themselves, and one test runs them on the real clock.

A crash after the provider accepted a message and before the outcome
committed leaves the lease to expire and the message to be sent again: SMTP and
Twilio offer no idempotency key, so that window (milliseconds) is
at-least-once; everything else is exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import pymongo
from prometheus_client import Counter, Gauge
from pymongo.errors import PyMongoError

from healthflow.common import jobs
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document
from healthflow.common.service import ServiceRuntime
from healthflow.notification import domain, events, messages, service, store, verification
from healthflow.notification.domain import Channel, Status
from healthflow.notification.providers import (
    EmailSender,
    PermanentError,
    PushSender,
    SendError,
    SmsSender,
    TransientError,
)

log = logging.getLogger(__name__)

DESTINATION_CAPPED = Counter(
    "healthflow_notification_destination_capped_total",
    "Messages dropped because their phone number or e-mail address reached its sending cap",
    ["channel"])

RECORD_ATTEMPTS = 5
"""Tries to record that a message was sent (0.5 s, 1 s, 2 s, 4 s apart): well inside the
delivery lease, after which another pass would send the message again."""


class Senders:
    """The channel clients one replica uses."""

    def __init__(self, email: EmailSender, sms: SmsSender, push: PushSender | None) -> None:
        self.email = email
        self.sms = sms
        self.push = push

    async def close(self) -> None:
        await self.sms.close()
        if self.push is not None:
            await self.push.close()


class Dispatcher:
    """Sends due deliveries (see the module docstring for the guarantees)."""

    def __init__(self, runtime: ServiceRuntime, ctx: service.Context, senders: Senders) -> None:
        self.runtime = runtime
        self.ctx = ctx
        self.senders = senders
        self.owner = f"{runtime.name}-{uuid.uuid4().hex[:12]}"
        self.wakeup = asyncio.Event()

    def wake(self) -> None:
        """Ask the loop to look for due deliveries now (after an event queued some)."""
        self.wakeup.set()

    async def run_due(self, limit: int | None = None) -> int:
        """One pass: claim and process the deliveries due now (up to ``limit``, default
        ``dispatch_batch``), ``dispatch_concurrency`` at a time; returns how many this
        replica processed (0 when none was due)."""
        settings = self.ctx.settings
        now = self.ctx.clock.now()
        candidates = await jobs.due(self.runtime.db, store.DELIVERIES,
                                     status=Status.QUEUED.value, due_field="next_attempt_at",
                                     now=now, limit=limit or settings.dispatch_batch)
        if not candidates:
            return 0
        gate = asyncio.Semaphore(settings.dispatch_concurrency)
        users = sorted({doc["user_id"] for doc in candidates})
        contacts = await store.get_many(self.runtime.db, store.CONTACTS, users)
        preferences = await store.get_many(self.runtime.db, store.PREFERENCES, users)

        async def one(doc: Document) -> int:
            async with gate:
                at = self.ctx.clock.now()  # when this claim happens, not when the pass began
                claimed = await jobs.claim(
                    self.runtime.db, store.DELIVERIES, doc, due_field="next_attempt_at", now=at,
                    owner=self.owner,
                    lease_until=at + timedelta(seconds=settings.delivery_lease))
                if claimed is None:
                    return 0  # another replica has it
                await self._process_guarded(claimed, contacts.get(doc["user_id"]),
                                            preferences.get(doc["user_id"]))
                return 1

        return sum(await asyncio.gather(*(one(doc) for doc in candidates)))

    async def _process_guarded(self, doc: Document, contact: Document | None,
                               prefs: Document | None) -> None:
        try:
            await self.process(doc, contact, prefs)
        except Exception:
            # The lease expires and another pass retries it; never lose the loop.
            log.exception("delivery processing failed", extra={"delivery_id": doc["_id"]})

    async def process(self, doc: Document, contact: Document | None,
                      prefs: Document | None) -> None:
        """Send one claimed delivery and record what happened.

        ``contact`` and ``prefs`` are the user's read-model documents as read at the
        start of this pass (consent and address are checked against them).
        """
        now = self.ctx.clock.now()
        channel = Channel(doc["channel"])
        if doc.get("expires_at") is not None and now >= doc["expires_at"]:
            await self._finish(doc, Status.CANCELLED, reason="expired")
            return
        address = doc.get("to")
        if channel in messages.ADDRESS_FIELDS and not doc.get("pinned"):
            if contact is None:  # user.registered not consumed yet: wait for it
                await self._retry_or_fail(doc, "the user's contact details are not known yet",
                                          exhausted="no_address", awaiting_contact=True)
                return
            address = contact.get(messages.ADDRESS_FIELDS[channel])
        reason = domain.suppression(
            channel, consent=messages.consents(contact),
            preferences=messages.channel_preferences(prefs), address=address,
            active=bool((contact or {}).get("active", True)), template=doc["template"])
        if reason is None:  # e-mail to an unverified address, SMS to an unverified number
            reason = verification.unverified_reason(self.ctx.settings, doc["template"],
                                                    contact, channel)
        if reason is not None:  # consent withdrawn (or opted out) since it was queued
            await self._finish(doc, Status.SUPPRESSED, reason=reason)
            return
        if channel in domain.QUIET_HOURS_CHANNELS and not doc.get("urgent"):
            until = self._quiet_until(now, prefs, doc)
            if until is not None:
                expires = doc.get("expires_at")
                if expires is not None and until >= expires:
                    await self._finish(doc, Status.SUPPRESSED, reason="quiet_hours")
                else:
                    await self._defer(doc, until)
                return
        doc = doc | {"to": address}
        if await self._over_cap(channel, doc, now):
            await self._finish(doc, Status.SUPPRESSED, reason="destination_capped")
            return
        try:
            provider_id = await self._send(channel, doc)
        except TransientError as exc:
            await self._retry_or_fail(doc, str(exc))
        except PermanentError as exc:
            await self._finish(doc, Status.FAILED, reason="refused", error=str(exc))
        except SendError as exc:  # pragma: no cover - every SendError is one of the two
            await self._retry_or_fail(doc, str(exc))
        else:
            await self._record_sent(doc, provider_id)

    async def _record_sent(self, doc: Document, provider_id: str) -> None:
        """Record a sent message, retrying the write (never the send) while the database
        hiccups: until it is recorded, the lease's expiry would send it again."""
        for attempt in range(RECORD_ATTEMPTS):
            try:
                await self._finish(doc, Status.SENT, provider_id=provider_id)
                return
            except PyMongoError:
                if attempt == RECORD_ATTEMPTS - 1:
                    raise
                log.warning("recording a sent delivery failed; retrying",
                            extra={"delivery_id": doc["_id"], "attempt": attempt + 1})
                await asyncio.sleep(0.5 * 2 ** attempt)

    async def _over_cap(self, channel: Channel, doc: Document, now: datetime) -> bool:
        """Whether ``doc``'s phone number or e-mail address has had its cap of messages in
        the window (``sms_per_number_cap`` / ``email_per_address_cap``); counted in
        :data:`DESTINATION_CAPPED` and logged without the address. Security e-mails
        (:data:`domain.SECURITY_EMAIL_TEMPLATES`) are never capped here: auth limits them
        per account, and dropping a reset link or a takeover notice is worse than a flood."""
        settings = self.ctx.settings
        cap = {Channel.SMS: settings.sms_per_number_cap,
               Channel.EMAIL: settings.email_per_address_cap}.get(channel)
        if cap is None or not doc.get("to") or (
                channel is Channel.EMAIL and doc["template"] in domain.SECURITY_EMAIL_TEMPLATES):
            return False
        since = now - timedelta(seconds=settings.destination_cap_window)
        if await store.sent_to(self.runtime.db, channel.value, doc["to"], since) < cap:
            return False
        DESTINATION_CAPPED.labels(channel.value).inc()
        log.warning("message dropped: its destination reached the sending cap", extra={
            "delivery_id": doc["_id"], "channel": channel.value, "template": doc["template"],
            "cap": cap, "window_s": settings.destination_cap_window})
        return True

    def _quiet_until(self, now: datetime, prefs: Document | None,
                     doc: Document) -> datetime | None:
        settings = self.ctx.settings
        text = (prefs or {}).get("quiet_hours", settings.default_quiet_hours)
        try:
            window = domain.QuietHours.parse(text)
        except ValueError:
            window = domain.QuietHours.parse(settings.default_quiet_hours)
        tz = domain.zone((prefs or {}).get("timezone") or doc.get("timezone"),
                         settings.default_timezone)
        return domain.quiet_until(now, window, tz)

    async def _send(self, channel: Channel, doc: Document) -> str:
        content = doc["content"]
        if channel is Channel.EMAIL:
            return await self.senders.email.send(
                delivery_id=doc["_id"], to=doc["to"], subject=content["subject"],
                text=content["text"], html=content["html"])
        if channel is Channel.SMS:
            return await self.senders.sms.send(to=doc["to"], body=content["body"])
        if channel is Channel.PUSH:
            if self.senders.push is None:
                raise TransientError("Web Push is not configured on this replica")
            subscription = await store.get(self.runtime.db, store.PUSH_SUBSCRIPTIONS, doc["to"])
            if subscription is None:
                raise PermanentError("the push subscription was removed")
            try:
                return await self.senders.push.send(
                    subscription={"endpoint": subscription["endpoint"],
                                  "keys": subscription["keys"]},
                    payload=content["payload"],
                    ttl=domain.push_ttl(self.ctx.clock.now(), doc.get("expires_at"),
                                        self.ctx.settings.push_ttl),
                    headers=domain.push_headers(urgent=bool(doc.get("urgent")),
                                                topic=content.get("topic")))
            except PermanentError:
                # 404/410: the browser unsubscribed; forget the endpoint (RFC 8030 §7.3).
                await self.runtime.db[store.PUSH_SUBSCRIPTIONS].delete_one({"_id": doc["to"]})
                raise
        raise PermanentError(f"no sender for channel {channel}")

    async def _defer(self, doc: Document, until: datetime) -> None:
        await self.runtime.db[store.DELIVERIES].update_one(
            {"_id": doc["_id"], "lease_owner": self.owner},
            {"$set": {"next_attempt_at": until, "reason": "quiet_hours", "lease_owner": None,
                      "lease_until": store.UNLEASED, "updated_at": self.ctx.clock.now()}})

    async def _retry_or_fail(self, doc: Document, error: str, *,
                             exhausted: str = "retries_exhausted",
                             awaiting_contact: bool = False) -> None:
        """Queue ``doc`` again after the backoff, or fail it as ``exhausted``.

        ``awaiting_contact``: it waits for the user's ``user.registered``, which wakes it
        at once (:func:`~healthflow.notification.contacts.apply_user`), not after the backoff.
        """
        settings = self.ctx.settings
        attempts = int(doc.get("attempts", 0)) + 1
        if attempts >= settings.max_attempts:
            await self._finish(doc, Status.FAILED, reason=exhausted, error=error)
            return
        now = self.ctx.clock.now()
        delay = jobs.backoff(attempts, base=settings.retry_base, cap=settings.retry_max)
        await self.runtime.db[store.DELIVERIES].update_one(
            {"_id": doc["_id"], "lease_owner": self.owner},
            {"$set": {"attempts": attempts, "next_attempt_at": now + delay,
                      "last_error": error[:300], "lease_owner": None, "lease_until": store.UNLEASED,
                      "awaiting_contact": awaiting_contact, "updated_at": now}})
        log.info("delivery will be retried", extra={
            "delivery_id": doc["_id"], "attempts": attempts, "delay_s": delay.total_seconds()})

    async def _finish(self, doc: Document, status: Status, *, reason: str | None = None,
                      error: str | None = None, provider_id: str | None = None) -> None:
        """Record the final (or sent) state and its event in one transaction."""
        now = self.ctx.clock.now()
        attempted = status in (Status.SENT, Status.FAILED) and reason != "expired"
        attempts = int(doc.get("attempts", 0)) + (1 if attempted else 0)
        update: dict[str, Any] = {
            "status": status.value, "attempts": attempts, "lease_owner": None,
            "lease_until": store.UNLEASED, "next_attempt_at": None, "updated_at": now}
        if reason is not None:
            update["reason"] = reason
        if doc["template"] in verification.SECRET_TEMPLATES:
            update["content"] = None  # a one-time code is kept hashed only
        if error is not None:
            update["last_error"] = error[:300]
        if status is Status.SENT:
            update |= {"provider_id": provider_id, "sent_at": now, "reason": None,
                       "to": doc.get("to")}  # the address actually used
        elif status is Status.FAILED:
            update["failed_at"] = now

        async def record(uow: UnitOfWork) -> None:
            result = await uow.db[store.DELIVERIES].update_one(
                {"_id": doc["_id"], "lease_owner": self.owner}, {"$set": update},
                session=uow.session)
            if result.modified_count == 0:
                return  # the lease was lost: whoever holds it now records the outcome
            payload: dict[str, Any] = {
                "delivery_id": doc["_id"], "channel": doc["channel"],
                "template": doc["template"], "trigger": doc.get("trigger"),
                "user_id": doc["user_id"], "provider_id": provider_id,
                "attempts": attempts}
            if status is Status.SENT:
                uow.publish(events.NotificationSent(**payload), subject=doc["_id"])
            elif status is Status.FAILED:
                uow.publish(events.NotificationFailed(**payload, reason=reason or "failed"),
                            subject=doc["_id"])

        await self.runtime.transact(record, actor=f"system:{self.runtime.name}")


async def apply_sms_status(runtime: ServiceRuntime, clock: domain.Clock, sid: str,
                           status: str, error_code: str | None) -> str | None:
    """Apply a Twilio status callback to the delivery whose provider id is ``sid``.

    ``delivered`` marks it delivered; ``undelivered`` / ``failed`` mark it failed
    and publish ``notification.failed``; other states (queued, sending, sent) are
    progress and change nothing. Returns the delivery's status after, or ``None``
    when no delivery has that SID. A late callback never moves a delivery back.
    """
    now = clock.now()
    result: dict[str, str | None] = {"status": None}

    async def apply(uow: UnitOfWork) -> None:
        doc = await uow.db[store.DELIVERIES].find_one(
            {"provider_id": sid, "channel": Channel.SMS.value}, session=uow.session)
        if doc is None:
            return
        result["status"] = doc["status"]
        if doc["status"] != Status.SENT.value:
            return
        if status == "delivered":
            await uow.db[store.DELIVERIES].update_one(
                {"_id": doc["_id"]}, {"$set": {"status": Status.DELIVERED.value,
                                               "delivered_at": now, "updated_at": now}},
                session=uow.session)
            result["status"] = Status.DELIVERED.value
        elif status in ("undelivered", "failed"):
            reason = f"twilio_{status}" + (f"_{error_code}" if error_code else "")
            await uow.db[store.DELIVERIES].update_one(
                {"_id": doc["_id"]}, {"$set": {"status": Status.FAILED.value, "failed_at": now,
                                               "reason": reason, "updated_at": now}},
                session=uow.session)
            uow.publish(events.NotificationFailed(
                delivery_id=doc["_id"], channel=doc["channel"], template=doc["template"],
                trigger=doc.get("trigger"), user_id=doc["user_id"], provider_id=sid,
                attempts=int(doc.get("attempts", 0)), reason=reason), subject=doc["_id"])
            result["status"] = Status.FAILED.value

    await runtime.transact(apply, actor="system:twilio")
    return result["status"]


REMINDER_ATTEMPTS = 5
"""Passes that may fail to fire one reminder before it is marked ``failed`` with the error
(a reminder whose data cannot be rendered must not be retried for ever, unseen)."""


class ReminderScheduler:
    """Fires due reminders (see the module docstring)."""

    def __init__(self, runtime: ServiceRuntime, ctx: service.Context,
                 on_fired: Any = None) -> None:
        self.runtime = runtime
        self.ctx = ctx
        self.owner = f"{runtime.name}-{uuid.uuid4().hex[:12]}"
        self.on_fired = on_fired
        self.last_pass = time.monotonic()  # monotonic seconds: created, or a pass completed

    async def _fire(self, uow: UnitOfWork, reminder: Document) -> str:
        return await service.fire_reminder(uow, reminder, self.owner, self.ctx)

    async def run_due(self, limit: int = 500) -> int:
        """Fire every reminder due at the clock's now (up to ``limit``); returns how many fired.

        Each reminder's claim and transaction are bounded by the delivery lease
        (seconds), so a stalled database ends that reminder with an error instead of
        holding the scheduler; a reminder that fails is retried by later passes and,
        after :data:`REMINDER_ATTEMPTS`, marked ``failed`` with the error. One bad
        reminder never stops the others.
        """
        fired = 0
        lease = self.ctx.settings.delivery_lease
        for reminder in await jobs.due(self.runtime.db, store.REMINDERS, status="pending",
                                        due_field="due_at", now=self.ctx.clock.now(),
                                        limit=limit):
            now = self.ctx.clock.now()  # per claim: a long pass must not hand out stale leases
            claimed: Document | None = None
            try:
                with pymongo.timeout(lease):
                    claimed = await jobs.claim(
                        self.runtime.db, store.REMINDERS, reminder, due_field="due_at",
                        now=now, owner=self.owner, lease_until=now + timedelta(seconds=lease))
                    if claimed is None:
                        continue
                    outcome = await self.runtime.transact(
                        functools.partial(self._fire, reminder=claimed),
                        actor=f"system:{self.runtime.name}")
            except Exception as exc:
                if claimed is None:  # the database did not answer: not this reminder's fault
                    log.warning("claiming a reminder failed: %s", type(exc).__name__)
                    continue
                await self._failed(claimed, exc)
                continue
            log.info("reminder %s", outcome, extra={
                "reminder_id": claimed["_id"], "due_at": claimed["due_at"].isoformat()})
            if outcome == service.REMINDER_FIRED:
                fired += 1
        self.last_pass = time.monotonic()
        if fired and self.on_fired is not None:
            self.on_fired()
        return fired

    async def _failed(self, reminder: Document, exc: Exception) -> None:
        """Count a failed attempt (the lease lets later passes retry); the last one marks
        the reminder ``failed`` with the error."""
        attempts = int(reminder.get("attempts", 0)) + 1
        error = f"{type(exc).__name__}: {exc}"[:300]
        log.error("firing a reminder failed", extra={
            "reminder_id": reminder["_id"], "attempts": attempts, "error": error})
        update: dict[str, Any] = {"attempts": attempts, "last_error": error,
                                  "updated_at": self.ctx.clock.now()}
        if attempts >= REMINDER_ATTEMPTS:
            update |= {"status": "failed", "reason": "failed", "lease_owner": None,
                       "lease_until": store.UNLEASED}
        with contextlib.suppress(PyMongoError):  # the database is what failed, perhaps
            await self.runtime.db[store.REMINDERS].update_one(
                {"_id": reminder["_id"], "status": "pending"}, {"$set": update})

    async def health(self) -> dict[str, Any]:
        """The scheduler as ``/readyz`` shows it (informational: it never makes the service
        not ready, since turning replicas away fixes no reminder; the gauge and the watch's
        error log are what alert): ``{"status": "ok" | "overdue" | "stalled", "overdue": n,
        "oldest_overdue_seconds": s, "last_pass_seconds_ago": s}``.

        A pending reminder is *overdue* once it has been due for longer than
        :meth:`grace` and nobody holds it, or for longer than the grace and a lease
        whoever holds it (a firing that keeps failing); the scheduler has *stalled*
        when no pass completed within the grace (monotonic time).
        """
        now = self.ctx.clock.now()
        grace = self.grace()
        count, oldest = await store.overdue(
            self.runtime.db, now=now, before=now - timedelta(seconds=grace),
            held_before=now - timedelta(seconds=grace + self.ctx.settings.delivery_lease))
        since = time.monotonic() - self.last_pass
        age = (now - oldest).total_seconds() if oldest is not None else 0.0
        REMINDERS_OVERDUE.set(count)
        status = "stalled" if since > grace else "overdue" if count else "ok"
        return {"status": status, "overdue": count, "oldest_overdue_seconds": round(age, 3),
                "last_pass_seconds_ago": round(since, 3)}

    async def watch(self) -> bool:
        """Say it loudly when reminders are overdue or the scheduler stalled (a silent
        ``pending`` is what nobody notices); the ``notification-reminder-watch`` loop's
        step. Returns False (one look per interval)."""
        health = await self.health()
        if health["status"] != "ok":
            log.error("reminders are overdue or the scheduler stalled", extra=health)
        return False

    def grace(self) -> float:
        """Seconds a due reminder may wait for its pass: three loop intervals, at least 30."""
        return max(3 * self.ctx.settings.reminder_interval, 30.0)


REMINDERS_OVERDUE = Gauge(
    "healthflow_notification_reminders_overdue",
    "Pending reminders due for longer than the scheduler's grace and held by nobody")
