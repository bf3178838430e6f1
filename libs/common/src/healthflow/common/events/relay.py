"""The outbox relay: publishes committed outbox records, at least once.

Each pass claims up to ``batch_size`` due records with a lease (so several
replicas of a service never publish the same record at the same time, and a
crashed replica's claims are taken over once ``lease`` seconds pass), publishes
them concurrently through the :class:`~healthflow.common.events.transport.Transport`
(confirmed), and marks as ``sent`` only those the broker acknowledged. Failures
are retried with exponential back-off and jitter, capped at ``max_backoff``
seconds. Sent records are purged after ``retention`` seconds.

The relay wakes on a change stream of outbox inserts, on :meth:`OutboxRelay.notify`
(same process, right after a commit) and, as a fallback when change streams
are unavailable, every ``poll_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from datetime import timedelta

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from healthflow.common import metrics
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.outbox import OUTBOX
from healthflow.common.events.transport import Transport
from healthflow.common.mongo import Document, utcnow

log = logging.getLogger(__name__)


class OutboxRelay:
    """Moves a service's outbox records to the transport."""

    def __init__(
        self,
        db: AsyncDatabase[Document],
        transport: Transport,
        *,
        service: str,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        lease: float = 30.0,
        retention: float = 7 * 24 * 3600.0,
        max_backoff: float = 60.0,
    ) -> None:
        self.db = db
        self.transport = transport
        self.service = service
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.lease = lease
        self.retention = retention
        self.max_backoff = max_backoff
        self.owner = f"{service}-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def collection(self):  # type: ignore[no-untyped-def]
        return self.db[OUTBOX]

    def notify(self) -> None:
        """Wake the relay now (called after a local commit wrote outbox records)."""
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._run(), name=f"outbox-relay-{self.service}"),
            asyncio.create_task(self._watch(), name=f"outbox-watch-{self.service}"),
        ]

    async def stop(self) -> None:
        """Stop after the pass in progress; unpublished records stay pending."""
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            if task.get_name().startswith("outbox-watch"):
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    await asyncio.wait_for(task, timeout=15)
                except TimeoutError:
                    task.cancel()
        self._tasks = []

    async def _run(self) -> None:
        last_purge = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                published = await self.relay_once()
                if loop.time() - last_purge > 60:
                    last_purge = loop.time()
                    await self.purge()
            except PyMongoError as exc:
                log.warning("outbox relay pass failed: %s", type(exc).__name__)
                published = 0
                await asyncio.sleep(min(self.poll_interval, 1.0))
            if published >= self.batch_size:
                continue  # more may be waiting
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)

    async def _watch(self) -> None:
        pipeline = [{"$match": {"operationType": "insert"}}]
        while not self._stopping:
            try:
                async with await self.collection.watch(pipeline) as stream:
                    async for _change in stream:
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # change streams unavailable: polling covers it
                log.debug("outbox change stream unavailable: %s", type(exc).__name__)
                await asyncio.sleep(max(self.poll_interval, 1.0))

    async def claim(self) -> list[Document]:
        """Lease up to ``batch_size`` due records to this relay; returns them oldest first."""
        now = utcnow()
        lease_free = {"$or": [{"lease_until": None}, {"lease_until": {"$lt": now}}]}
        due = {"status": "pending", "next_attempt_at": {"$lte": now}, **lease_free}
        candidates = (
            await self.collection.find(due, {"_id": 1})
            .sort("next_attempt_at", 1)
            .limit(self.batch_size)
            .to_list()
        )
        if not candidates:
            return []
        ids = [c["_id"] for c in candidates]
        token = f"{self.owner}:{uuid.uuid4().hex[:8]}"
        await self.collection.update_many(
            {"_id": {"$in": ids}, **due},
            {"$set": {"lease_owner": token, "lease_until": now + timedelta(seconds=self.lease)}},
        )
        return (
            await self.collection.find({"_id": {"$in": ids}, "lease_owner": token})
            .sort("created_at", 1)
            .to_list()
        )

    async def relay_once(self) -> int:
        """One pass: claim, publish, record outcomes. Returns how many were published."""
        records = await self.claim()
        if not records:
            return 0
        results = await asyncio.gather(
            *(self._publish(r) for r in records), return_exceptions=True
        )
        sent_ids = [r["_id"] for r, res in zip(records, results, strict=True) if res is None]
        now = utcnow()
        if sent_ids:
            await self.collection.update_many(
                {"_id": {"$in": sent_ids}},
                {"$set": {"status": "sent", "sent_at": now, "lease_owner": None,
                          "lease_until": None}},
            )
            metrics.OUTBOX_PUBLISHED.labels(self.service).inc(len(sent_ids))
        for record, res in zip(records, results, strict=True):
            if isinstance(res, BaseException):
                await self._reschedule(record, res)
        return len(sent_ids)

    async def _publish(self, record: Document) -> None:
        event = CloudEvent.model_validate(record["envelope"])
        await self.transport.publish(event)

    async def _reschedule(self, record: Document, error: BaseException) -> None:
        attempts = int(record.get("attempts", 0)) + 1
        delay = min(self.max_backoff, 0.5 * 2 ** min(attempts, 16)) * random.uniform(0.5, 1.0)  # noqa: S311
        log.warning(
            "outbox publish failed; will retry",
            extra={"event_id": record["_id"], "event_type": record.get("type"),
                   "attempts": attempts, "retry_in_s": round(delay, 2),
                   "error": type(error).__name__},
        )
        metrics.OUTBOX_PUBLISH_FAILURES.labels(self.service).inc()
        await self.collection.update_one(
            {"_id": record["_id"], "lease_owner": record.get("lease_owner")},
            {"$set": {"attempts": attempts,
                      "next_attempt_at": utcnow() + timedelta(seconds=delay),
                      "lease_owner": None, "lease_until": None,
                      "last_error": f"{type(error).__name__}: {str(error)[:300]}"}},
        )

    async def purge(self) -> int:
        """Delete sent records older than the retention. Returns how many."""
        cutoff = utcnow() - timedelta(seconds=self.retention)
        result = await self.collection.delete_many({"status": "sent", "sent_at": {"$lt": cutoff}})
        return result.deleted_count

    async def lag(self) -> tuple[int, float]:
        """(pending record count, age in seconds of the oldest pending record)."""
        pending = await self.collection.count_documents({"status": "pending"})
        oldest = await self.collection.find_one(
            {"status": "pending"}, {"created_at": 1}, sort=[("created_at", 1)]
        )
        age = (utcnow() - oldest["created_at"]).total_seconds() if oldest else 0.0
        return pending, max(0.0, age)
