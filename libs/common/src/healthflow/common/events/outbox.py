"""Transactional outbox: events are stored with the write that caused them.

A :class:`UnitOfWork` is one MongoDB transaction of one service. Domain code
writes through ``uow.session`` and records the events it causes with
:meth:`UnitOfWork.publish`; when the transaction commits, the outbox records
commit with it (or neither does). The :class:`~healthflow.common.events.relay.OutboxRelay`
later publishes them.

Outbox document (collection ``outbox`` of the service's database)::

    {_id: <event id>, type, envelope: {...CloudEvent...}, status: "pending",
     attempts: int, created_at, next_attempt_at, lease_owner, lease_until,
     last_error}

``lease_until`` is the Unix epoch while nobody holds the record. Once the broker
has confirmed it, the relay marks the record in place (``status: "sent"``,
``sent_at``, lease cleared): one write per record, one ``update_many`` per batch.
The TTL index ``sent_ttl`` on ``sent_at`` (sparse: sent records only; its
``expireAfterSeconds`` is the relay's retention) deletes it after the retention;
MongoDB and SecantusDB both run the TTL monitor every 60 s. Pending work is found
through indexes partial on ``status: "pending"`` (``pending_due``, ``pending_age``),
so sent records kept for the retention cost the relay's queries nothing.

``outbox_sent`` is where earlier versions archived sent records (insert there,
then delete here); it is still read by :func:`recorded_events` and purged by the
relay until its last record is past the retention.
All times are aware UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common.events.envelope import CloudEvent, EventPayload
from healthflow.common.mongo import Document, utcnow

if TYPE_CHECKING:
    from healthflow.common.settings import ServiceSettings

OUTBOX = "outbox"
OUTBOX_SENT = "outbox_sent"
INBOX = "inbox"
UNLEASED = datetime(1970, 1, 1, tzinfo=UTC)
PENDING: dict[str, str] = {"status": "pending"}
"""What a pending record matches; the partial filter of the ``pending_*`` indexes."""
PENDING_DUE_INDEX = "pending_due"
"""The index the relay's polling pass reads (pending records by ``next_attempt_at``)."""
DEFAULT_RETENTION = 7 * 24 * 3600.0
"""Seconds a sent record is kept (``outbox_retention`` in the service settings)."""


def outbox_indexes(retention: float = DEFAULT_RETENTION) -> dict[str, list[IndexModel]]:
    """The indexes of ``outbox``, ``outbox_sent`` and ``inbox``; sent records expire
    ``retention`` seconds after ``sent_at`` (a TTL index)."""
    return {
        OUTBOX: [
            IndexModel([("next_attempt_at", ASCENDING)], name=PENDING_DUE_INDEX,
                       partialFilterExpression=PENDING),
            IndexModel([("created_at", ASCENDING)], name="pending_age",
                       partialFilterExpression=PENDING),
            # Sparse, not partial: the purge's {sent_at: {$lt: …}} can use it.
            IndexModel([("sent_at", ASCENDING)], name="sent_ttl",
                       expireAfterSeconds=int(retention), sparse=True),
        ],
        OUTBOX_SENT: [IndexModel([("sent_at", ASCENDING)]), IndexModel([("type", ASCENDING)])],
        # The inbox's unique key is its _id (the event id); received_at serves the purge.
        INBOX: [IndexModel([("received_at", ASCENDING)])],
    }


OUTBOX_INDEXES = outbox_indexes()


def outbox_document(
    event: CloudEvent, *, lease_owner: str | None = None, lease_until: datetime = UNLEASED
) -> Document:
    """The outbox record of ``event``; leased to ``lease_owner`` until ``lease_until`` if given."""
    now = utcnow()
    return {
        "_id": event.id,
        "type": event.type,
        "envelope": event.to_document(),
        "status": "pending",
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
        "lease_owner": lease_owner,
        "lease_until": lease_until,
        "last_error": None,
    }


class UnitOfWork:
    """One transaction of one service: its session, its database, its pending events.

    ``trace_context`` (``traceparent``, ``tracestate``: W3C Trace Context) goes into
    every envelope recorded here (CloudEvents Distributed Tracing extension).
    """

    def __init__(
        self,
        session: AsyncClientSession,
        db: AsyncDatabase[Document],
        *,
        source: str,
        actor: str | None = None,
        trace_context: Mapping[str, str] | None = None,
        lease: tuple[str, datetime] | None = None,
        settings: ServiceSettings | None = None,
    ) -> None:
        self.session = session
        self.db = db
        self.settings = settings
        """The service's settings (rules read inside a transaction, e.g. a care period);
        ``None`` outside a service runtime."""
        self.source = source
        self.actor = actor
        self.trace_context = dict(trace_context or {})
        self.lease = lease
        self.events: list[CloudEvent] = []
        self.records: list[Document] = []

    def publish(
        self,
        payload: EventPayload,
        *,
        subject: str | None = None,
        actor: str | None = None,
        patientid: str | None = None,
    ) -> CloudEvent:
        """Record that ``payload`` happened; it is stored when the transaction commits.

        ``subject`` is the resource id the event is about; ``actor`` defaults to the
        unit of work's actor; ``patientid`` names the patient concerned (an id, never PHI).
        """
        event = CloudEvent.build(
            payload,
            source=self.source,
            subject=subject,
            actor=actor or self.actor,
            patientid=patientid,
            traceparent=self.trace_context.get("traceparent"),
            tracestate=self.trace_context.get("tracestate"),
        )
        self.events.append(event)
        return event

    async def flush(self) -> None:
        """Insert the recorded events into the outbox inside this transaction.

        With a ``lease`` (the running relay's owner and lease end), the records are
        born leased to that relay, which publishes them right after the commit
        without a claim round trip; if this process dies first, the lease lapses
        and any relay's polling pass takes them over.
        """
        owner, until = self.lease if self.lease else (None, UNLEASED)
        self.records = [
            outbox_document(e, lease_owner=owner, lease_until=until) for e in self.events
        ]
        if self.records:
            await self.db[OUTBOX].insert_many(self.records, session=self.session)


async def recorded_events(
    db: AsyncDatabase[Document], query: Document | None = None
) -> list[CloudEvent]:
    """Every event this service recorded (pending or sent, within the retention), oldest first.

    ``query`` filters outbox documents (e.g. ``{"type": "user.registered"}``).
    Meant for tests and operators; services never read their outbox back.
    """
    found: dict[str, Document] = {}  # by id: a legacy archive copy may also be in outbox
    for name in (OUTBOX_SENT, OUTBOX):
        found |= {d["_id"]: d for d in await db[name].find(query or {}).to_list()}
    ordered = sorted(found.values(), key=lambda d: d["created_at"])
    return [CloudEvent.model_validate(d["envelope"]) for d in ordered]
