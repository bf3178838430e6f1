"""Idempotent consumers: the inbox, the handler table and the contracts.

A service declares its handlers as ``{pattern: handler}``; each handler is a
few lines that take the event and the :class:`UnitOfWork` and call the same
service function an HTTP route would. The event a handler takes is a
:class:`Received` whose ``data`` is the parsed contract model of its type
(:func:`healthflow.contracts.contract_for`): ``async def on_booked(event:
Received[AppointmentBooked], uow: UnitOfWork) -> None``. A payload that does
not validate raises :class:`ContractViolation` before any effect, which both
transports park at once in the service's dead-letter queue. Fields the
contract does not know are ignored (a newer publisher may add optional fields).
A handler marked with :func:`envelope_handler` takes the raw
:class:`CloudEvent` of any type instead (the audit log). :class:`Consumer` runs each delivery in
one transaction that first inserts the event id into the ``inbox`` collection
(its ``_id`` is unique): the effect and the inbox record commit together, so a
redelivered event finds its id already there and is a no-op.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError

from healthflow.common import metrics
from healthflow.common.events.envelope import CloudEvent, EventPayload
from healthflow.common.events.outbox import INBOX, UnitOfWork
from healthflow.common.events.transport import (
    ContractViolation,
    ForeignSource,
    UnknownEventType,
    describe_validation,
    topic_matches,
)
from healthflow.common.mongo import utcnow
from healthflow.contracts import contract_for

if TYPE_CHECKING:
    from healthflow.common.service import ServiceRuntime

log = logging.getLogger(__name__)

M = TypeVar("M", bound=EventPayload)


@dataclass(frozen=True)
class Received(Generic[M]):
    """One delivery as a handler sees it: ``data`` is the validated contract model.

    The envelope's attributes (CloudEvents 1.0) stay reachable: ``id``, ``type``,
    ``time`` (aware UTC), ``subject`` and the whole ``envelope``.
    """

    envelope: CloudEvent
    data: M

    @property
    def id(self) -> str:
        return self.envelope.id

    @property
    def type(self) -> str:
        return self.envelope.type

    @property
    def time(self) -> datetime:
        return self.envelope.time

    @property
    def subject(self) -> str | None:
        return self.envelope.subject


Handler = Callable[[Any, UnitOfWork], Awaitable[None]]
"""``async (Received[Model], UnitOfWork) -> None``; or, marked with
:func:`envelope_handler`, ``async (CloudEvent, UnitOfWork) -> None``."""
Handlers = Mapping[str, Handler]
"""Topic pattern over the event type → handler. The first matching pattern wins."""

H = TypeVar("H", bound=Callable[..., Awaitable[None]])


def envelope_handler(handler: H) -> H:
    """Mark ``handler`` as taking the raw :class:`CloudEvent` of any type, unvalidated."""
    handler.__healthflow_envelope__ = True  # type: ignore[attr-defined]
    return handler


def received(event: CloudEvent) -> Received[EventPayload]:
    """``event`` with its ``data`` validated against the contract of its ``type``, from the
    service the contract names as its publisher.

    Unknown fields are ignored; missing, mistyped or unparsable ones are not.

    Raises:
        ForeignSource: the envelope's ``source`` is not ``/healthflow/<publisher>``.
        ContractViolation: no contract for the type, or ``data`` does not validate.
    """
    model = contract_for(event.type)
    if model is None:
        raise ContractViolation(f"{event.type}: no contract for this type")
    publisher = model.event_publisher
    if publisher is not None and event.source != f"/healthflow/{publisher}":
        raise ForeignSource(f"{event.type} is published by {publisher}, not by "
                            f"{event.source[:80]!r}")
    try:
        data = model.model_validate(event.data, extra="ignore")
    except ValidationError as exc:
        raise ContractViolation(
            f"{event.type} v{model.event_version}: {describe_validation(exc)}"
        ) from exc
    return Received(event, data)


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
        try:
            argument = (event if getattr(handler, "__healthflow_envelope__", False)
                        else received(event))
        except ForeignSource:
            metrics.EVENTS_HANDLED.labels(service, event.type, "foreign_source").inc()
            raise
        except ContractViolation:
            metrics.EVENTS_HANDLED.labels(service, event.type, "invalid").inc()
            raise
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
            await handler(argument, uow)

        try:
            await self.runtime.transact(apply, actor=f"system:{service}")
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
