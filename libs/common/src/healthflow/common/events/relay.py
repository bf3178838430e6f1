"""The outbox relay: publishes committed outbox records, at least once.

Where work comes from:

* records committed in this process while the relay runs: they are born leased
  to it (:meth:`OutboxRelay.commit_lease`) and handed over right after the commit
  (:meth:`OutboxRelay.submit`), so they cost no claim at all;
* ids of inserts seen on a change stream of the outbox (writers without a
  running relay, e.g. a CLI command) and ids given to :meth:`OutboxRelay.notify`
  — claimed by id, so finding work costs no scan;
* a polling pass every ``poll_interval`` seconds, the fallback that picks up
  whatever the two above missed (records left by a crashed replica once their
  lease expired, records due for a retry, or change streams being unavailable).

Each claim leases up to ``batch_size`` due records to this relay for ``lease``
seconds (so replicas never publish the same record at the same time, and a
crashed replica's records are taken over once the lease lapses). Claimed
records are published concurrently through the
:class:`~healthflow.common.events.transport.Transport` (publisher confirms awaited
together); those the broker acknowledged are marked sent in place by ONE
``update_many`` per batch — in the background while the next batch is being
published (one such mark in flight at a time). So a relayed record costs one
database write (two when it had to be claimed: the lease, then the mark). No order
is promised, not even per subject: a batch is published concurrently and a
failure is retried later. A crash between the broker's confirm and the mark leaves
the record pending and leased: republished once the lease lapses (a duplicate the
consumers' inboxes absorb). Failures are rescheduled with exponential back-off and
jitter capped at ``max_backoff`` seconds. Sent records are deleted ``retention``
seconds after ``sent_at`` by the TTL index of
:func:`~healthflow.common.events.outbox.outbox_indexes`;
:meth:`OutboxRelay.purge` (once a minute) does the same for databases whose indexes
were not ensured and empties the ``outbox_sent`` archive of earlier versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure, PyMongoError

from healthflow.common import metrics, tracing
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.outbox import (
    DEFAULT_RETENTION,
    OUTBOX,
    OUTBOX_SENT,
    PENDING,
    PENDING_DUE_INDEX,
    UNLEASED,
)
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
        retention: float = DEFAULT_RETENTION,
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
        self._hints: dict[str, None] = {}  # ids to try first, in arrival order
        self._ready: list[Document] = []  # records leased to us at their commit
        self._settling: asyncio.Task[None] | None = None  # the mark as sent in flight
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._running = False

    @property
    def outbox(self) -> AsyncCollection[Document]:
        return self.db[OUTBOX]

    def commit_lease(self) -> tuple[str, datetime] | None:
        """(owner, lease end) for records committed now, or ``None`` when not running."""
        if not self._running:
            return None
        return self.owner, utcnow() + timedelta(seconds=self.lease)

    def submit(self, records: Iterable[Document]) -> None:
        """Records just committed with :meth:`commit_lease`: publish them next."""
        self._ready.extend(records)
        self._wake.set()

    def notify(self, ids: Iterable[str] = ()) -> None:
        """Wake the relay now; ``ids`` are outbox records just committed."""
        for record_id in ids:
            self._hints[record_id] = None
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        self._running = True
        self._tasks = [
            asyncio.create_task(self._run(), name=f"outbox-relay-{self.service}"),
            asyncio.create_task(self._watch(), name=f"outbox-watch-{self.service}"),
        ]

    async def stop(self) -> None:
        """Stop after the pass in progress; unpublished records stay pending."""
        self._running = False
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
        await self._settle()
        self._ready.clear()  # still leased to us: taken over when the lease lapses

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_poll = last_purge = float("-inf")
        backlog = True  # poll at once on start: a previous process may have left work
        while not self._stopping:
            self._wake.clear()
            published = 0
            try:
                if self._ready:
                    batch = self._ready[: self.batch_size]
                    del self._ready[: len(batch)]
                    published = await self._relay(batch)
                elif self._hints:
                    published = await self._relay(await self._claim_hinted())
                elif backlog or loop.time() - last_poll >= self.poll_interval:
                    last_poll = loop.time()
                    published = await self.relay_once()
                    backlog = published >= self.batch_size
                if loop.time() - last_purge > 60:
                    last_purge = loop.time()
                    await self.purge()
            except PyMongoError as exc:
                log.warning("outbox relay pass failed: %s", type(exc).__name__)
                await asyncio.sleep(min(self.poll_interval, 1.0))
            if self._ready or self._hints or backlog:
                continue
            wait = max(0.0, self.poll_interval - (loop.time() - last_poll))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _watch(self) -> None:
        # Inserts this relay was handed at commit (leased to it) need no claim.
        pipeline: list[dict[str, Any]] = [
            {"$match": {"operationType": "insert",
                        "fullDocument.lease_owner": {"$ne": self.owner}}},
            {"$project": {"documentKey": 1}},
        ]
        while not self._stopping:
            try:
                async with await self.outbox.watch(pipeline) as stream:
                    async for change in stream:
                        self.notify([change["documentKey"]["_id"]])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # change streams unavailable: polling covers it
                log.debug("outbox change stream unavailable: %s", type(exc).__name__)
                await asyncio.sleep(max(self.poll_interval, 1.0))

    def _due(self) -> Document:
        now = utcnow()
        return {**PENDING, "next_attempt_at": {"$lte": now}, "lease_until": {"$lte": now}}

    async def _claim_hinted(self) -> list[Document]:
        ids = list(self._hints)[: self.batch_size]
        for record_id in ids:
            self._hints.pop(record_id, None)
        return await self.claim_ids(ids)

    async def claim_ids(self, ids: list[Any]) -> list[Document]:
        """Lease those of ``ids`` that are due and free; returns the leased records.

        The statement filters on ``_id`` alone and tests "due and free" per document
        inside the (atomic) update: SecantusDB's writes and reads use the ``_id``
        index only for a filter on ``_id`` alone, and scan the whole collection —
        sent records kept for the retention included — for anything more.
        """
        if not ids:
            return []
        token = f"{self.owner}:{uuid.uuid4().hex[:8]}"
        now = utcnow()
        due = {"$and": [{"$eq": ["$status", "pending"]}, {"$lte": ["$next_attempt_at", now]},
                        {"$lte": ["$lease_until", now]}]}
        result = await self.outbox.update_many(
            {"_id": {"$in": ids}},
            [_set_where(due, lease_owner=token, lease_until=now + timedelta(seconds=self.lease))],
        )
        if result.modified_count == 0:
            return []
        found = await self.outbox.find({"_id": {"$in": ids}}).to_list()
        return [r for r in found if r.get("lease_owner") == token]

    async def claim(self) -> list[Document]:
        """The polling path: lease up to ``batch_size`` due records, whatever their origin."""
        due = self._due()
        try:  # SecantusDB's planner scans for this shape unless told the partial index
            candidates = await self.outbox.find(due, {"_id": 1}).hint(
                PENDING_DUE_INDEX).limit(self.batch_size).to_list()
        except OperationFailure:  # the index is not there (indexes never ensured)
            candidates = await self.outbox.find(due, {"_id": 1}).limit(
                self.batch_size).to_list()
        return await self.claim_ids([c["_id"] for c in candidates])

    async def relay_once(self) -> int:
        """One polling pass: claim, publish, record outcomes. Returns how many were sent."""
        sent = await self._relay(await self.claim())
        await self._settle()
        return sent

    async def _relay(self, records: list[Document]) -> int:
        if not records:
            return 0
        results = await asyncio.gather(
            *(self._publish(r) for r in records), return_exceptions=True
        )
        sent = [r for r, res in zip(records, results, strict=True) if res is None]
        for record, res in zip(records, results, strict=True):
            if isinstance(res, BaseException):
                await self._reschedule(record, res)
        if sent:
            await self._settle()  # one move in flight at a time
            self._settling = asyncio.create_task(self.mark_sent(sent))
            metrics.OUTBOX_PUBLISHED.labels(self.service).inc(len(sent))
        return len(sent)

    async def _settle(self) -> None:
        """Wait for the mark as sent in flight, if any."""
        task, self._settling = self._settling, None
        if task is not None:
            try:
                await task
            except PyMongoError as exc:
                # The records stay leased and pending: republished once the lease
                # lapses (a duplicate the consumers' inboxes absorb).
                log.warning("marking outbox records sent failed: %s", type(exc).__name__)

    async def _publish(self, record: Document) -> None:
        event = CloudEvent.model_validate(record["envelope"])
        # PRODUCER span, child of the context the envelope recorded in the request.
        with tracing.publishing(event, self.transport.messaging_system):
            await self.transport.publish(event)

    async def mark_sent(self, records: list[Document]) -> None:
        """One write for the whole batch: the broker confirmed every one of ``records``.

        Whoever holds the lease now (ours may have lapsed and another replica's
        publish be under way), the event reached the broker: the record is sent.
        """
        await self.outbox.update_many(  # on _id alone: see claim_ids
            {"_id": {"$in": [r["_id"] for r in records]}},
            {"$set": {"status": "sent", "sent_at": utcnow(),
                      "lease_owner": None, "lease_until": UNLEASED}},
        )

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
        await self.outbox.update_one(  # on _id alone: see claim_ids
            {"_id": record["_id"]},
            [_set_where({"$eq": ["$lease_owner", record.get("lease_owner")]},
                        attempts=attempts,
                        next_attempt_at=utcnow() + timedelta(seconds=delay),
                        lease_owner=None, lease_until=UNLEASED,
                        last_error=f"{type(error).__name__}: {str(error)[:300]}")],
        )

    async def purge(self) -> int:
        """Delete sent records older than the retention, in ``outbox`` (where the TTL
        index normally got there first) and in the legacy ``outbox_sent`` archive.
        Returns how many."""
        old = {"sent_at": {"$lt": utcnow() - timedelta(seconds=self.retention)}}
        kept = await self.outbox.delete_many(old)  # only sent records have a sent_at
        archived = await self.db[OUTBOX_SENT].delete_many(old)
        return kept.deleted_count + archived.deleted_count

    async def lag(self) -> tuple[int, float]:
        """(pending record count, age in seconds of the oldest pending record)."""
        pending = await self.outbox.count_documents(PENDING)
        if not pending:
            return 0, 0.0
        oldest = await self.outbox.find_one(PENDING, {"created_at": 1}, sort=[("created_at", 1)])
        age = (utcnow() - oldest["created_at"]).total_seconds() if oldest else 0.0
        return pending, max(0.0, age)


def _set_where(condition: Document, **values: Any) -> Document:
    """An update pipeline stage setting ``values`` where ``condition`` (an aggregation
    expression) holds for the document, and leaving it unchanged elsewhere."""
    return {"$set": {field: {"$cond": [condition, {"$literal": value}, f"${field}"]}
                     for field, value in values.items()}}
