"""The audit service consumes every event (pattern ``#``) into the chain.

:data:`HANDLERS` is the usual one-event handler (the common
:class:`~healthflow.common.events.consumer.Consumer` runs it with its inbox,
one transaction per event). The app installs :class:`GroupCommitConsumer`
instead: a delivery is acknowledged only after the transaction holding its
entry committed, and the events delivered concurrently (up to
``append_batch_max``) are appended in one transaction, so the chain's few
round trips are paid once per group rather than once per event. Both call
:func:`healthflow.audit.service.append`.

The group path writes no ``inbox`` record: the log is its own inbox. An event
is a no-op when an entry already has its id (the duplicate check of
:func:`~healthflow.audit.service.append`, repeated when a transaction is
retried) or repeats one earlier in its group; two replicas appending it at once
conflict on the head document (the loser is retried and then finds the entry),
and the unique ``event_id`` index refuses a second entry should both get past
that. An inbox record would be a third document per entry for the same rule.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from healthflow.audit import domain, service
from healthflow.common import metrics
from healthflow.common.events.consumer import Consumer, Handlers, envelope_handler
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.events.transport import UnknownEventType
from healthflow.common.mongo import utcnow
from healthflow.common.service import ServiceRuntime


@envelope_handler  # every type, known or not, as it came: no contract is applied
async def record_event(event: CloudEvent, uow: UnitOfWork) -> None:
    """Append ``event`` to the chain (a no-op when it is already there)."""
    await service.append(uow, [event], utcnow())


HANDLERS: Handlers = {"#": record_event}

CHAIN_MOVED_RETRIES = 3


class GroupCommitConsumer(Consumer):
    """Appends concurrently delivered events together, one transaction per group.

    Each delivery waits until the transaction holding its event committed (or
    failed: then every delivery of that group raises, and the transport retries
    each). One group is in flight per replica; deliveries that arrive meanwhile
    form the next group, so an idle service appends at once and a busy one in
    groups of up to ``max_batch``. An event RFC 8785 cannot canonicalize fails
    alone, before joining a group (it is retried and then dead-lettered).
    """

    def __init__(self, runtime: ServiceRuntime, handlers: Handlers, *, max_batch: int) -> None:
        super().__init__(runtime, handlers)
        self.max_batch = max_batch
        self._waiting: list[tuple[domain.PreparedEvent, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def __call__(self, event: CloudEvent) -> None:
        """Handle one delivery; returns once its event is in the committed chain."""
        if self.handler_for(event.type) is None:
            raise UnknownEventType(event.type)
        try:  # canonicalized once, here, outside the group's transaction
            prepared = domain.prepare(event)
        except domain.UnhashableEvent:
            metrics.EVENTS_HANDLED.labels(self.runtime.name, event.type, "error").inc()
            raise
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((prepared, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="audit-group-commit")
        await done

    async def _flush(self) -> None:
        while self._waiting:
            group = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
            started = time.perf_counter()
            appended: set[str] = set()
            try:
                entries = await self._commit([prepared for prepared, _ in group])
            except asyncio.CancelledError:
                for _, done in group + self._waiting:
                    done.cancel()
                self._waiting.clear()
                raise
            except Exception as exc:
                failed = True
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
            else:
                failed = False
                appended = {entry.event_id for entry in entries}
                for _, done in group:
                    if not done.done():
                        done.set_result(None)
            elapsed = time.perf_counter() - started
            for prepared, _ in group:
                event = prepared.event
                outcome = "error" if failed else "ok" if event.id in appended else "duplicate"
                appended.discard(event.id)  # a second copy in the same group is a duplicate
                metrics.HANDLER_LATENCY.labels(self.runtime.name, event.type, outcome).observe(
                    elapsed
                )
                metrics.EVENTS_HANDLED.labels(self.runtime.name, event.type, outcome).inc()

    async def _commit(self, events: Sequence[CloudEvent | domain.PreparedEvent]
                      ) -> list[domain.Entry]:
        async def apply(uow: UnitOfWork) -> list[domain.Entry]:
            # No inbox record: the entries' event_id is the dedupe key (module docstring).
            return await service.append(uow, events, utcnow())

        for _attempt in range(CHAIN_MOVED_RETRIES):
            try:
                return await self.runtime.transact(apply, actor=f"system:{self.runtime.name}")
            except service.ChainMoved:
                continue  # only without snapshot isolation; write conflicts retry in transact
        return await self.runtime.transact(apply, actor=f"system:{self.runtime.name}")
