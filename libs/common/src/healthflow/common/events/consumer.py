"""Idempotent consumers: the inbox and the handler table.

A service declares its handlers as ``{pattern: handler}``; each handler is a
few lines that take the event and the :class:`UnitOfWork` and call the same
service function an HTTP route would. :class:`Consumer` runs each delivery in
one transaction that first inserts the event id into the ``inbox`` collection
(its ``_id`` is unique): the effect and the inbox record commit together, so a
redelivered event finds its id already there and is a no-op.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from pymongo.errors import DuplicateKeyError

from healthflow.common import metrics
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.outbox import INBOX, UnitOfWork
from healthflow.common.events.transport import UnknownEventType, topic_matches
from healthflow.common.mongo import utcnow

if TYPE_CHECKING:
    from healthflow.common.service import ServiceRuntime

log = logging.getLogger(__name__)

Handler = Callable[[CloudEvent, UnitOfWork], Awaitable[None]]
Handlers = Mapping[str, Handler]
"""Topic pattern over the event type → handler. The first matching pattern wins."""


class _AlreadyHandled(Exception):
    """The inbox already holds this event id: the delivery is a duplicate."""


class Consumer:
    """Applies events to one service exactly once (inbox in the same transaction)."""

    def __init__(self, runtime: ServiceRuntime, handlers: Handlers) -> None:
        self.runtime = runtime
        self.handlers = dict(handlers)

    @property
    def patterns(self) -> list[str]:
        return list(self.handlers)

    def handler_for(self, type_: str) -> Handler | None:
        for pattern, handler in self.handlers.items():
            if topic_matches(pattern, type_):
                return handler
        return None

    async def __call__(self, event: CloudEvent) -> None:
        """Handle one delivery; raises for the transport to retry or dead-letter."""
        handler = self.handler_for(event.type)
        if handler is None:
            raise UnknownEventType(event.type)
        service = self.runtime.name
        inbox = self.runtime.db[INBOX]
        if await inbox.find_one({"_id": event.id}, {"_id": 1}) is not None:
            metrics.EVENTS_HANDLED.labels(service, event.type, "duplicate").inc()
            return
        started = time.perf_counter()
        outcome = "ok"

        async def apply(uow: UnitOfWork) -> None:
            try:
                await inbox.insert_one(
                    {"_id": event.id, "type": event.type, "received_at": utcnow()},
                    session=uow.session,
                )
            except DuplicateKeyError:
                raise _AlreadyHandled from None
            await handler(event, uow)

        try:
            await self.runtime.transact(
                apply, actor=f"system:{service}", traceparent=event.traceparent
            )
        except _AlreadyHandled:
            # Another replica (or a concurrent redelivery) committed it first.
            outcome = "duplicate"
        except Exception:
            outcome = "error"
            raise
        finally:
            elapsed = time.perf_counter() - started
            metrics.HANDLER_LATENCY.labels(service, event.type, outcome).observe(elapsed)
            metrics.EVENTS_HANDLED.labels(service, event.type, outcome).inc()
