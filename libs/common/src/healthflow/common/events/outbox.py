"""Transactional outbox: events are stored with the write that caused them.

A :class:`UnitOfWork` is one MongoDB transaction of one service. Domain code
writes through ``uow.session`` and records the events it causes with
:meth:`UnitOfWork.publish`; when the transaction commits, the outbox records
commit with it (or neither does). The :class:`~healthflow.common.events.relay.OutboxRelay`
later publishes them.

Outbox document (collection ``outbox`` of the service's database)::

    {_id: <event id>, type, envelope: {...CloudEvent...}, status: "pending" | "sent",
     attempts: int, created_at, next_attempt_at, lease_owner, lease_until, sent_at,
     last_error}

All times are aware UTC.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common.events.envelope import CloudEvent, EventPayload
from healthflow.common.mongo import Document, utcnow

OUTBOX = "outbox"
INBOX = "inbox"

OUTBOX_INDEXES = {
    OUTBOX: [
        IndexModel([("status", ASCENDING), ("next_attempt_at", ASCENDING)]),
        IndexModel([("lease_owner", ASCENDING)]),
        IndexModel([("status", ASCENDING), ("sent_at", ASCENDING)]),
        IndexModel([("status", ASCENDING), ("created_at", ASCENDING)]),
    ],
    # The inbox's unique key is its _id (the event id); received_at serves the purge.
    INBOX: [IndexModel([("received_at", ASCENDING)])],
}


def outbox_document(event: CloudEvent) -> Document:
    now = utcnow()
    return {
        "_id": event.id,
        "type": event.type,
        "envelope": event.to_document(),
        "status": "pending",
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
        "lease_owner": None,
        "lease_until": None,
        "sent_at": None,
        "last_error": None,
    }


class UnitOfWork:
    """One transaction of one service: its session, its database, its pending events."""

    def __init__(
        self,
        session: AsyncClientSession,
        db: AsyncDatabase[Document],
        *,
        source: str,
        actor: str | None = None,
        traceparent: str | None = None,
    ) -> None:
        self.session = session
        self.db = db
        self.source = source
        self.actor = actor
        self.traceparent = traceparent
        self.events: list[CloudEvent] = []

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
            traceparent=self.traceparent,
        )
        self.events.append(event)
        return event

    async def flush(self) -> None:
        """Insert the recorded events into the outbox inside this transaction."""
        if self.events:
            await self.db[OUTBOX].insert_many(
                [outbox_document(e) for e in self.events], session=self.session
            )

    def collection_kwargs(self) -> dict[str, Any]:
        return {"session": self.session}
