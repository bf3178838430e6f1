"""One service's consumer on RabbitMQ: run the handler, then ack, retry or park.

A delivery is parsed into a :class:`CloudEvent` and handed to the
subscription's handler. When the handler fails, the shared rule
:func:`~healthflow.common.events.transport.after_failure` decides: retry (a copy
goes to the retry queue of that delay, ``x-attempts`` + 1) or park (a copy goes
to the service's DLQ with the parking headers of
:mod:`~healthflow.common.events.rabbit.messages`). A body that is no CloudEvent
is parked at once as ``malformed``.

Delivery is at-least-once: a message is acknowledged only after its handler
succeeded or after its copy (retry queue or DLQ) was confirmed by the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aio_pika.abc

from healthflow.common import tracing
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.rabbit.messages import (
    HEADER_ATTEMPTS,
    HEADER_DEAD_LETTER_ID,
    HEADER_ERROR,
    HEADER_PARKED_AT,
    HEADER_REASON,
    HEADER_SERVICE,
    MESSAGING_SYSTEM,
    as_int,
    copy_message,
)
from healthflow.common.events.rabbit.topology import retry_queue_name
from healthflow.common.events.transport import (
    REASON_HANDLER_FAILED,
    REASON_MALFORMED,
    PublishError,
    Subscription,
    after_failure,
    describe_error,
)

log = logging.getLogger(__name__)

Forward = Callable[[aio_pika.Message, str, str], Awaitable[None]]
"""Confirmed, ``mandatory`` publish of a message (first argument) to one of a service's
(second) own queues by name (third), through the service's direct exchange
(:func:`~healthflow.common.events.rabbit.topology.direct_exchange_name`); raises
:class:`PublishError` when the broker does not confirm it."""


class QueueConsumer:
    """Consumes a subscription's queue on the subscription's own channel.

    Args:
        subscription: what the service consumes and how it retries.
        channel: the channel ``queue`` was declared on (QoS set).
        queue: the service's queue.
        forward: how copies reach a retry queue or the DLQ.
        inflight: where each handler's task is registered until it ends (the
            transport drains this set on close; shared by its consumers).
        closing: True once the transport is closing: new deliveries are then
            rejected with requeue instead of handled.
    """

    def __init__(
        self,
        subscription: Subscription,
        channel: aio_pika.abc.AbstractRobustChannel,
        queue: aio_pika.abc.AbstractRobustQueue,
        *,
        forward: Forward,
        inflight: set[asyncio.Task[None]],
        closing: Callable[[], bool],
    ) -> None:
        self.subscription = subscription
        self.channel = channel
        self.queue = queue
        self.tag: str | None = None
        self._forward_copy = forward
        self._inflight = inflight
        self._closing = closing

    async def start(self) -> None:
        """``basic.consume`` (manual acks); each delivery runs in a task of its own."""
        self.tag = await self.queue.consume(self._dispatch, no_ack=False)

    async def cancel(self) -> None:
        """``basic.cancel``: the broker sends no more (a failure is logged and ignored)."""
        if self.tag is None:
            return
        try:
            async with asyncio.timeout(5):
                await self.queue.cancel(self.tag)
        except Exception as exc:  # broker gone: nothing more will arrive anyway
            log.debug("cancel of consumer %s failed: %s", self.tag, exc)

    @property
    def attached(self) -> bool:
        """True when the broker has this consumer registered on an open channel."""
        if self.tag is None or self.channel.is_closed:
            return False
        # aio-pika keeps the live aiormq channel in ``_channel``; the consumer is
        # attached when that channel has the tag registered (a broker-side
        # ``basic.cancel`` removes it; aio-pika re-adds it with the same tag on recovery).
        underlay = getattr(self.channel, "_channel", None)
        amqp_channel = getattr(underlay, "channel", None)
        consumers: Mapping[str, object] = getattr(amqp_channel, "consumers", {})
        return self.tag in consumers

    async def _dispatch(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        # aio-pika runs this in a task that the channel cancels when it closes
        # (e.g. on connection loss). The handler runs in a task of our own so a
        # broker outage does not cut it in half and close() can drain it.
        if self._closing():
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return
        task = asyncio.create_task(self._process(message))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _process(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        try:
            await self._handle(message)
        except PublishError as exc:
            # Its copy could not be confirmed: keep the original (never drop).
            log.warning(
                "could not forward message %s of %s (%s); requeueing it",
                message.message_id,
                self.subscription.queue,
                exc,
            )
            await asyncio.sleep(1.0)  # avoid a hot redelivery loop
            await _settle(message, requeue=True)
        except Exception:
            log.exception(
                "unexpected failure processing message %s of %s; requeueing it",
                message.message_id,
                self.subscription.queue,
            )
            await asyncio.sleep(1.0)
            await _settle(message, requeue=True)

    async def _handle(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        subscription = self.subscription
        headers = dict(message.headers or {})
        attempts = as_int(headers.get(HEADER_ATTEMPTS))
        try:
            event = CloudEvent.from_json_bytes(message.body)
        except Exception as exc:
            await self._park(
                subscription,
                message,
                dead_letter_id=str(uuid.uuid4()),
                reason=REASON_MALFORMED,
                error=exc,
                attempts=attempts,
            )
            await _settle(message)
            return

        try:
            with tracing.consuming(event, headers, MESSAGING_SYSTEM):
                await subscription.handler(event)
        except Exception as exc:
            then = after_failure(exc, attempts, subscription.retry_delays)
            if then.action == "retry" and then.delay is not None:
                target = retry_queue_name(subscription.service, then.delay)
                log.info("handler of %s failed for event %s (attempt %d): %s; retry via %s",
                         subscription.queue, event.id, attempts + 1, type(exc).__name__,
                         target)
                await self._forward(message, target, {**headers, HEADER_ATTEMPTS: attempts + 1},
                                    message_id=event.id)
            else:
                if then.reason == REASON_HANDLER_FAILED:
                    log.warning("handler of %s failed for event %s after %d attempts: %s; "
                                "parking it", subscription.queue, event.id, attempts + 1,
                                type(exc).__name__)
                await self._park(subscription, message, dead_letter_id=event.id,
                                 reason=then.reason or REASON_HANDLER_FAILED, error=exc,
                                 attempts=attempts)
        await _settle(message)

    async def _park(
        self,
        subscription: Subscription,
        message: aio_pika.abc.AbstractIncomingMessage,
        *,
        dead_letter_id: str,
        reason: str,
        error: BaseException,
        attempts: int,
    ) -> None:
        headers = dict(message.headers or {})
        headers.update(
            {
                HEADER_REASON: reason,
                HEADER_ERROR: describe_error(error),
                HEADER_ATTEMPTS: attempts,
                HEADER_PARKED_AT: datetime.now(UTC).isoformat(),
                HEADER_SERVICE: subscription.service,
                HEADER_DEAD_LETTER_ID: dead_letter_id,
            }
        )
        if reason != REASON_HANDLER_FAILED:
            log.warning("parking message %s of %s: %s", dead_letter_id, subscription.queue, reason)
        await self._forward(
            message, subscription.dead_letter_queue, headers, message_id=dead_letter_id
        )

    async def _forward(
        self,
        message: aio_pika.abc.AbstractIncomingMessage,
        queue: str,
        headers: dict[str, Any],
        *,
        message_id: str,
    ) -> None:
        """Confirmed publish of a copy of ``message`` to the service's own ``queue``."""
        await self._forward_copy(copy_message(message, headers, message_id),
                                 self.subscription.service, queue)


async def _settle(
    message: aio_pika.abc.AbstractIncomingMessage, *, requeue: bool | None = None
) -> None:
    """Ack (``requeue`` None) or nack; a closed channel means the broker requeues it anyway."""
    try:
        if requeue is None:
            await message.ack()
        else:
            await message.nack(requeue=requeue)
    except Exception as exc:
        log.warning(
            "could not settle message %s (%s); the broker will redeliver it",
            message.message_id,
            type(exc).__name__,
        )
