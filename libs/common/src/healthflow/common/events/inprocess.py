"""In-process transport: every service in one process, same contract as RabbitMQ.

:meth:`InProcessTransport.publish` delivers to every matching subscription and
returns only when each has either handled the event or durably stored it for a
retry or as a dead letter (collection ``deadletters`` of the platform database
given to the constructor). Until then the publishing service's outbox record
stays pending, so a crash loses nothing; redelivery after a restart is made
harmless by the consumers' inboxes.

Retries wait ``retry_delays[n]`` seconds (stored ``next_attempt_at``, so they
survive a restart); after the last one the message is parked (``status:
"parked"``), listed by :meth:`dead_letters` and replayed by :meth:`replay`,
exactly like ``healthflow.<service>.dlq`` on RabbitMQ.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common import tracing
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.transport import (
    REASON_HANDLER_FAILED,
    REASON_MALFORMED,
    DeadLetter,
    EventHandler,
    PublishError,
    Subscription,
    Transport,
    after_failure,
    describe_error,
    topic_matches,
)
from healthflow.common.mongo import Document, utcnow
from healthflow.common.workers import cancel_and_wait

log = logging.getLogger(__name__)

DEAD_LETTERS = "deadletters"


class InProcessTransport(Transport):
    """Topic routing inside one process, with durable retries and dead letters."""

    messaging_system = "healthflow.inprocess"

    def __init__(self, store: AsyncDatabase[Document], *, retry_poll_interval: float = 0.2):
        self.store = store[DEAD_LETTERS]
        self.retry_poll_interval = retry_poll_interval
        self._subscriptions: dict[str, Subscription] = {}
        self._broadcasts: dict[str, tuple[Sequence[str], EventHandler]] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self._connected = False
        self._closing = False
        self._retry_task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        await self.store.create_indexes(
            [
                IndexModel([("status", ASCENDING), ("next_attempt_at", ASCENDING)]),
                IndexModel(
                    [("service", ASCENDING), ("status", ASCENDING), ("parked_at", ASCENDING)]
                ),
            ]
        )
        self._connected = True
        self._closing = False
        self._retry_task = asyncio.create_task(self._retry_loop(), name="inprocess-retries")

    async def close(self) -> None:
        self._closing = True
        if self._retry_task is not None:
            await cancel_and_wait(self._retry_task)
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=10)
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def consuming(self) -> bool:
        return self._connected and not self._closing

    async def subscribe(self, subscription: Subscription) -> None:
        self._subscriptions[subscription.service] = subscription
        self._limits[subscription.service] = asyncio.Semaphore(subscription.prefetch)

    async def subscribe_broadcast(self, name: str, patterns: Sequence[str],
                                  handler: EventHandler) -> None:
        self._broadcasts[name] = (tuple(patterns), handler)

    async def unsubscribe(self, service: str) -> None:
        """Detach ``service`` (its process part stopping while others go on)."""
        self._subscriptions.pop(service, None)

    async def publish(self, event: CloudEvent) -> None:
        if not self._connected or self._closing:
            raise PublishError("in-process transport is not connected")
        targets = [s for s in self._subscriptions.values() if s.matches(event.type)]
        broadcast = await self._broadcast(event)
        if not targets and not broadcast:
            raise PublishError(f"no subscription is bound to {event.type!r} (unroutable)")
        body = event.to_json_bytes()
        headers = tracing.message_headers(event)  # the hop context RabbitMQ would carry
        await asyncio.gather(
            *(self._deliver(s, body, attempts=0, headers=headers) for s in targets)
        )

    async def _broadcast(self, event: CloudEvent) -> int:
        """Hand ``event`` to every matching broadcast handler; how many matched (as
        RabbitMQ routes to a bound broadcast queue, they make the event routable)."""
        matched = 0
        for name, (patterns, handler) in list(self._broadcasts.items()):
            if any(topic_matches(p, event.type) for p in patterns):
                matched += 1
                try:
                    await handler(event)
                except Exception as exc:
                    log.warning("broadcast handler %s failed for %s: %s", name, event.type,
                                describe_error(exc))
        return matched

    async def _deliver(self, sub: Subscription, body: bytes, *, attempts: int,
                       record_id: str | None = None,
                       headers: dict[str, str] | None = None) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            async with self._limits.setdefault(sub.service, asyncio.Semaphore(sub.prefetch)):
                await self._attempt(sub, body, attempts, record_id, headers)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _attempt(self, sub: Subscription, body: bytes, attempts: int,
                       record_id: str | None, headers: dict[str, str] | None) -> None:
        try:
            event = CloudEvent.from_json_bytes(body)
        except Exception as exc:
            await self._park(sub, body, REASON_MALFORMED, exc, attempts, record_id)
            return
        try:
            with tracing.consuming(event, headers, self.messaging_system):
                await sub.handler(event)
        except Exception as exc:
            then = after_failure(exc, attempts, sub.retry_delays)
            if then.action == "retry":
                await self._schedule_retry(sub, body, exc, attempts, record_id)
            else:
                await self._park(sub, body, then.reason or REASON_HANDLER_FAILED, exc,
                                 attempts, record_id)
            return
        if record_id is not None:
            await self.store.delete_one({"_id": record_id})

    async def _schedule_retry(self, sub: Subscription, body: bytes, exc: BaseException,
                              attempts: int, record_id: str | None) -> None:
        fields = {
            "service": sub.service,
            "body": body,
            "status": "retry",
            "attempts": attempts + 1,
            "next_attempt_at": utcnow() + timedelta(seconds=sub.retry_delays[attempts]),
            "error": describe_error(exc),
        }
        await self.store.update_one(
            {"_id": record_id or str(uuid.uuid4())}, {"$set": fields}, upsert=True
        )

    async def _park(self, sub: Subscription, body: bytes, reason: str, exc: BaseException,
                    attempts: int, record_id: str | None) -> None:
        log.warning("message dead-lettered", extra={"service": sub.service, "reason": reason})
        fields = {
            "service": sub.service,
            "body": body,
            "status": "parked",
            "reason": reason,
            "error": describe_error(exc),
            "attempts": attempts,
            "parked_at": utcnow(),
            "next_attempt_at": None,
        }
        await self.store.update_one(
            {"_id": record_id or str(uuid.uuid4())}, {"$set": fields}, upsert=True
        )

    async def _retry_loop(self) -> None:
        while not self._closing:
            try:
                due = await self.store.find(
                    {"status": "retry", "next_attempt_at": {"$lte": utcnow()}}
                ).sort("next_attempt_at", 1).limit(100).to_list()
                for doc in due:
                    sub = self._subscriptions.get(doc["service"])
                    if sub is None:
                        continue
                    # Claim it so a second pass cannot run it twice.
                    claimed = await self.store.find_one_and_update(
                        {"_id": doc["_id"], "status": "retry"}, {"$set": {"status": "running"}}
                    )
                    if claimed is not None:
                        asyncio.create_task(  # noqa: RUF006 - tracked in _inflight
                            self._deliver(sub, bytes(doc["body"]), attempts=doc["attempts"],
                                          record_id=doc["_id"])
                        )
                # A crash while "running" leaves it for the next start to retry.
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("in-process retry pass failed: %s", type(exc).__name__)
            await asyncio.sleep(self.retry_poll_interval)

    async def recover(self) -> None:
        """Return records left ``running`` by a crashed process to the retry schedule."""
        await self.store.update_many(
            {"status": "running"}, {"$set": {"status": "retry", "next_attempt_at": utcnow()}}
        )

    async def queue_depths(self, service: str) -> dict[str, int]:
        waiting = await self.store.count_documents(
            {"service": service, "status": {"$in": ["retry", "running"]}}
        )
        parked = await self.store.count_documents({"service": service, "status": "parked"})
        return {"queue": waiting, "dlq": parked}

    async def dead_letters(self, service: str, limit: int = 100) -> list[DeadLetter]:
        docs = await self.store.find({"service": service, "status": "parked"}).sort(
            "parked_at", 1
        ).limit(limit).to_list()
        return [
            DeadLetter(
                id=_dead_letter_id(d),
                service=service,
                body=bytes(d["body"]),
                reason=d.get("reason", ""),
                error=d.get("error", ""),
                attempts=d.get("attempts", 0),
                parked_at=d.get("parked_at"),
                headers={"record_id": d["_id"]},
            )
            for d in docs
        ]

    async def replay(self, service: str, ids: Sequence[str] | None = None) -> int:
        sub = self._subscriptions.get(service)
        if sub is None:
            raise PublishError(f"{service} has no subscription in this process")
        replayed = 0
        for letter in await self.dead_letters(service, limit=10_000):
            if ids is not None and letter.id not in ids:
                continue
            record_id = letter.headers["record_id"]
            claimed = await self.store.find_one_and_update(
                {"_id": record_id, "status": "parked"}, {"$set": {"status": "running"}}
            )
            if claimed is None:
                continue
            await self._deliver(sub, letter.body, attempts=0, record_id=record_id)
            replayed += 1
        return replayed


def _dead_letter_id(doc: Document) -> str:
    try:
        return CloudEvent.from_json_bytes(bytes(doc["body"])).id
    except Exception:
        return str(doc["_id"])
