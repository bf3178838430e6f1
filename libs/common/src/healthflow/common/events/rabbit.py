"""RabbitMQ implementation of :class:`~healthflow.common.events.transport.Transport` (aio-pika).

Topology (AMQP 0-9-1 as RabbitMQ implements it), for a service ``svc``:

* ``healthflow.events``: durable **topic** exchange; the routing key is the
  CloudEvents ``type``.
* ``healthflow.svc``: the service's durable queue, bound to each of its patterns.
* ``healthflow.svc.retry.<ms>ms``: one durable queue per entry of
  ``retry_delays``, named by and with ``x-message-ttl`` = that delay in milliseconds,
  ``x-dead-letter-exchange`` = ``""`` (the default exchange) and
  ``x-dead-letter-routing-key`` = ``healthflow.svc``. Nobody consumes it: when
  the TTL expires RabbitMQ dead-letters the message back to ``healthflow.svc``
  alone (RabbitMQ docs "Time-To-Live and Expiration" and "Dead Letter
  Exchanges"), so a retry never reaches another service. All messages of one
  retry queue share one TTL, so they expire in FIFO order at the queue head.
* ``healthflow.svc.dlq``: the parking lot. Nothing consumes it; an operator
  lists and replays it (``healthflow-deadletters``).

Retry queues are named by their delay, so deploying new ``retry_delays``
declares new queues rather than changing the ``x-message-ttl`` of existing ones
(which RabbitMQ refuses with ``PRECONDITION_FAILED``, channel error 406); a queue
of an old delay still returns what it holds and can be deleted once empty.

Message headers written by this module (AMQP field table):

====================  ========================================================
``traceparent``       W3C Trace Context of the publishing (PRODUCER) span, and
                      ``tracestate`` when it has one; the envelope keeps the
                      context the event was recorded in (``tracing.message_headers``)
``x-attempts``        retries used so far: failed handler attempts before the
                      current delivery (int; absent = 0). A message parked after
                      its retries ran out shows ``len(retry_delays)``; one parked
                      at once (unknown type, malformed, contract violation)
                      shows the value it had.
``x-death-reason``    DLQ only: ``handler-failed``, ``unknown-type``, ``malformed``
                      or ``contract-violation`` (``data`` breaks its contract)
``x-error``           DLQ only: ``"<ExceptionClass>: <message>"``, at most 500
                      characters; never the body (validation errors list only
                      locations and error kinds, not the offending values)
``x-parked-at``       DLQ only: ISO 8601 UTC time of parking
``x-service``         DLQ only: the service that parked it
``x-dead-letter-id``  DLQ only: the id :class:`DeadLetter` is known by (the event
                      id; a generated UUID for a malformed body)
``x-replayed-at``     after a replay: ISO 8601 UTC time of the replay
====================  ========================================================

Delivery is at-least-once: a message is acknowledged only after its handler
succeeded or after its copy (retry queue or DLQ) was confirmed by the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aio_pika.abc
import aio_pika.exceptions
from aio_pika import DeliveryMode, ExchangeType

from healthflow.common import tracing
from healthflow.common.events.envelope import EXCHANGE, CloudEvent
from healthflow.common.events.transport import (
    REASON_HANDLER_FAILED,
    REASON_MALFORMED,
    DeadLetter,
    PublishError,
    Subscription,
    Transport,
    after_failure,
    dead_letter_queue_name,
    describe_error,
    queue_name,
)

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/cloudevents+json"

HEADER_TRACEPARENT = "traceparent"
HEADER_ATTEMPTS = "x-attempts"
HEADER_REASON = "x-death-reason"
HEADER_ERROR = "x-error"
HEADER_PARKED_AT = "x-parked-at"
HEADER_SERVICE = "x-service"
HEADER_DEAD_LETTER_ID = "x-dead-letter-id"
HEADER_REPLAYED_AT = "x-replayed-at"



# Headers describing one parking; dropped when a message is replayed.
_PARKING_HEADERS = (
    HEADER_REASON,
    HEADER_ERROR,
    HEADER_PARKED_AT,
    HEADER_SERVICE,
    HEADER_DEAD_LETTER_ID,
)


def retry_queue_name(service: str, delay: float) -> str:
    """``healthflow.<service>.retry.<delay in ms>ms``.

    Named by its delay, not its position, so that changing a service's
    ``retry_delays`` declares new queues instead of redeclaring an existing one
    with another ``x-message-ttl`` (which RabbitMQ refuses with 406
    PRECONDITION_FAILED); an old queue keeps returning what it holds to the
    service's queue and can be deleted once empty.
    """
    return f"{queue_name(service)}.retry.{_delay_ms(delay)}ms"


def _delay_ms(delay: float) -> int:
    return max(0, round(delay * 1000))


@dataclass
class _Consumer:
    subscription: Subscription
    channel: aio_pika.abc.AbstractRobustChannel
    queue: aio_pika.abc.AbstractRobustQueue
    tag: str | None = None


@dataclass
class _IdLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class RabbitTransport(Transport):
    """Publish/subscribe on RabbitMQ through aio-pika's robust connection.

    Args:
        amqp_url: ``amqp://user:password@host:5672/vhost`` (aio-pika URL query
            parameters such as ``heartbeat`` are honoured).
        exchange: the topic exchange (default ``healthflow.events``).
        publish_timeout: seconds :meth:`publish` (and each forward to a retry
            queue or the DLQ) waits for the broker's confirm before raising
            :class:`PublishError`.
        drain_timeout: seconds :meth:`close` waits for in-flight handlers.
        reconnect_interval: seconds between reconnection attempts after the
            connection is lost (aio-pika's default, 5 s, when ``None``).
        connect_timeout: seconds the first connection attempt may take.
        connection_name: shown in the RabbitMQ management UI.

    One instance holds one connection: a publisher channel (publisher confirms
    on, returned ``mandatory`` messages raise) and one channel per
    subscription. After a broker restart or a network cut aio-pika reconnects
    by itself and re-declares the exchange, queues, bindings, QoS and
    consumers; :attr:`consuming` is False meanwhile.
    """

    messaging_system = "rabbitmq"

    def __init__(
        self,
        amqp_url: str,
        *,
        exchange: str = EXCHANGE,
        publish_timeout: float = 10.0,
        drain_timeout: float = 10.0,
        reconnect_interval: float | None = None,
        connect_timeout: float = 10.0,
        connection_name: str | None = None,
    ) -> None:
        self.amqp_url = amqp_url
        self.exchange_name = exchange
        self.publish_timeout = publish_timeout
        self.drain_timeout = drain_timeout
        self.reconnect_interval = reconnect_interval
        self.connect_timeout = connect_timeout
        self.connection_name = connection_name
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._publish_channel: aio_pika.abc.AbstractRobustChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._consumers: dict[str, _Consumer] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self._id_locks: dict[str, _IdLock] = {}
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Open the robust connection and the publisher channel; declare the exchange.

        Raises:
            ConnectionError: (aio-pika's ``AMQPConnectionError`` or an ``OSError``)
                when the broker cannot be reached or refuses the credentials.
            RuntimeError: when already connected.
        """
        if self._connection is not None:
            raise RuntimeError("RabbitTransport is already connected")
        kwargs: dict[str, Any] = {}
        if self.reconnect_interval is not None:
            kwargs["reconnect_interval"] = self.reconnect_interval
        if self.connection_name is not None:
            kwargs["client_properties"] = {"connection_name": self.connection_name}
        connection = await aio_pika.connect_robust(
            self.amqp_url, timeout=self.connect_timeout, **kwargs
        )
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self._exchange = await channel.declare_exchange(
                self.exchange_name, ExchangeType.TOPIC, durable=True
            )
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        self._publish_channel = channel
        self._closing = False

    async def close(self) -> None:
        """Drain, then disconnect; safe to call twice.

        1. Cancel every consumer (``basic.cancel``): the broker sends no more.
           A message already on its way is rejected with requeue.
        2. Wait up to ``drain_timeout`` seconds for in-flight handlers (they
           still ack, retry or park through the open channels); handlers still
           running then are cancelled and their messages, unacknowledged, are
           redelivered by the broker later.
        3. Close the channels and the connection.
        """
        if self._connection is None:
            return
        # While the broker is unreachable there is nothing to cancel (and aio-pika
        # would wait for the reconnection): the broker drops the consumers itself.
        cancel = self.connected
        self._closing = True
        for consumer in self._consumers.values():
            if consumer.tag is None or not cancel:
                continue
            try:
                async with asyncio.timeout(5):
                    await consumer.queue.cancel(consumer.tag)
            except Exception as exc:  # broker gone: nothing more will arrive anyway
                log.debug("cancel of consumer %s failed: %s", consumer.tag, exc)
        if self._inflight:
            _done, pending = await asyncio.wait(set(self._inflight), timeout=self.drain_timeout)
            if pending:
                log.warning(
                    "%d handler(s) still running after %.1f s; cancelling (redelivered later)",
                    len(pending),
                    self.drain_timeout,
                )
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        connection, self._connection = self._connection, None
        consumers, self._consumers = self._consumers, {}
        for consumer in consumers.values():
            with contextlib.suppress(Exception):
                await consumer.channel.close()
        if self._publish_channel is not None:
            with contextlib.suppress(Exception):
                await self._publish_channel.close()
        self._publish_channel = None
        self._exchange = None
        await connection.close()

    @property
    def connected(self) -> bool:
        """True while the AMQP connection is open (False during recovery)."""
        connection = self._connection
        return (
            connection is not None
            and not connection.is_closed
            and connection.connected.is_set()
            and not self._closing
        )

    @property
    def consuming(self) -> bool:
        """True when connected and every subscription's consumer is attached.

        False while the broker is unreachable, while aio-pika restores the
        channels, and after the broker cancelled a consumer (queue deleted).
        """
        if not self.connected:
            return False
        return all(_consumer_attached(c) for c in self._consumers.values())

    # ------------------------------------------------------------------ publish

    async def publish(self, event: CloudEvent) -> None:
        """Publish ``event`` to the exchange with routing key ``event.type``.

        Persistent (``delivery_mode`` 2), ``mandatory``, ``content_type``
        ``application/cloudevents+json``, ``message_id`` = ``event.id``, AMQP
        ``type`` = ``event.type``, ``timestamp`` = ``event.time``, header
        ``traceparent``. Returns after the broker's ``basic.ack`` (RabbitMQ
        publisher confirms: for a persistent message to durable queues, sent once
        the message is on disk). Safe to call from many tasks at once.

        Raises:
            PublishError: on ``basic.nack``, when no queue is bound for the type
                (``basic.return`` of the mandatory message), when the broker does
                not confirm within ``publish_timeout`` seconds, or when the
                connection is down or not yet opened. The outcome is then
                unknown (it may have been delivered); retrying may duplicate.
        """
        # Still allowed while close() drains: a finishing handler may publish.
        if self._exchange is None:
            raise PublishError("RabbitTransport is not connected")
        headers: dict[str, Any] = tracing.message_headers(event)
        message = aio_pika.Message(
            event.to_json_bytes(),
            headers=headers,
            content_type=CONTENT_TYPE,
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=event.id,
            type=event.type,
            timestamp=event.time,
        )
        await self._confirmed_publish(self._exchange, message, event.type)

    async def _confirmed_publish(
        self,
        exchange: aio_pika.abc.AbstractExchange,
        message: aio_pika.Message,
        routing_key: str,
    ) -> None:
        """Publish ``mandatory`` and wait for the confirm, mapping every failure to PublishError."""
        # aiormq matches a basic.return to its publish by message_id: two
        # unconfirmed publishes with one message_id on one channel could swap
        # their outcomes (an unroutable one reported as confirmed). Serialize them.
        key = message.message_id or ""
        entry = self._id_locks.get(key)
        if entry is None:
            entry = self._id_locks[key] = _IdLock()
        entry.users += 1
        try:
            async with entry.lock, asyncio.timeout(self.publish_timeout):
                await exchange.publish(message, routing_key, mandatory=True)
        except aio_pika.exceptions.PublishError as exc:  # basic.return
            raise PublishError(
                f"unroutable: no queue bound for routing key {routing_key!r} "
                f"on exchange {exchange.name!r}"
            ) from exc
        except aio_pika.exceptions.DeliveryError as exc:  # basic.nack
            raise PublishError(f"broker refused the message: {exc}") from exc
        except TimeoutError as exc:
            raise PublishError(
                f"no broker confirm within {self.publish_timeout} s (outcome unknown)"
            ) from exc
        except (aio_pika.exceptions.AMQPError, ConnectionError, OSError, RuntimeError) as exc:
            # RuntimeError covers aiormq's ChannelInvalidStateError (channel closed).
            raise PublishError(f"broker unreachable: {type(exc).__name__}: {exc}") from exc
        finally:
            entry.users -= 1
            if entry.users == 0:
                self._id_locks.pop(key, None)

    # ------------------------------------------------------------------ subscribe

    async def subscribe(self, subscription: Subscription) -> None:
        """Declare the service's topology (see the module docstring), then consume.

        On a channel of its own with ``basic.qos(prefetch_count=subscription.prefetch)``;
        the bindings exist before the consumer starts. Handlers run concurrently
        (up to ``prefetch``), each in a task owned by this transport.

        Raises:
            RuntimeError: when not connected, or ``subscription.service`` is
                already subscribed on this transport.
            aio_pika.exceptions.ChannelPreconditionFailed: when an existing queue
                was declared with other arguments (e.g. changed retry delays).
        """
        connection = self._connection
        if connection is None or self._closing:
            raise RuntimeError("RabbitTransport is not connected")
        service = subscription.service
        if service in self._consumers:
            raise RuntimeError(f"service {service!r} is already subscribed")
        channel = await connection.channel(publisher_confirms=False)
        try:
            await channel.set_qos(prefetch_count=subscription.prefetch)
            exchange = await channel.declare_exchange(
                self.exchange_name, ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(subscription.queue, durable=True)
            for pattern in subscription.patterns:
                await queue.bind(exchange, routing_key=pattern)
            for delay in subscription.retry_delays:
                await channel.declare_queue(
                    retry_queue_name(service, delay),
                    durable=True,
                    arguments={
                        "x-message-ttl": _delay_ms(delay),
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": subscription.queue,
                    },
                )
            await channel.declare_queue(subscription.dead_letter_queue, durable=True)
            consumer = _Consumer(subscription, channel, queue)
            self._consumers[service] = consumer

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                await self._dispatch(consumer, message)

            consumer.tag = await queue.consume(on_message, no_ack=False)
        except BaseException:
            self._consumers.pop(service, None)
            with contextlib.suppress(Exception):
                await channel.close()
            raise
        log.info(
            "consuming %s (patterns %s, retry delays %s s)",
            subscription.queue,
            list(subscription.patterns),
            list(subscription.retry_delays),
        )

    async def _dispatch(
        self, consumer: _Consumer, message: aio_pika.abc.AbstractIncomingMessage
    ) -> None:
        # aio-pika runs this in a task that the channel cancels when it closes
        # (e.g. on connection loss). The handler runs in a task of our own so a
        # broker outage does not cut it in half and close() can drain it.
        if self._closing:
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return
        task = asyncio.create_task(self._process(consumer, message))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _process(
        self, consumer: _Consumer, message: aio_pika.abc.AbstractIncomingMessage
    ) -> None:
        try:
            await self._handle(consumer.subscription, message)
        except PublishError as exc:
            # Its copy could not be confirmed: keep the original (never drop).
            log.warning(
                "could not forward message %s of %s (%s); requeueing it",
                message.message_id,
                consumer.subscription.queue,
                exc,
            )
            await asyncio.sleep(1.0)  # avoid a hot redelivery loop
            await _settle(message, requeue=True)
        except Exception:
            log.exception(
                "unexpected failure processing message %s of %s; requeueing it",
                message.message_id,
                consumer.subscription.queue,
            )
            await asyncio.sleep(1.0)
            await _settle(message, requeue=True)

    async def _handle(
        self, subscription: Subscription, message: aio_pika.abc.AbstractIncomingMessage
    ) -> None:
        headers = dict(message.headers or {})
        attempts = _as_int(headers.get(HEADER_ATTEMPTS))
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
            with tracing.consuming(event, headers, self.messaging_system):
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
        """Confirmed publish of a copy of ``message`` to ``queue`` via the default exchange."""
        channel = self._publish_channel
        if channel is None:
            raise PublishError("RabbitTransport is not connected")
        await self._confirmed_publish(
            channel.default_exchange, _copy(message, headers, message_id), queue
        )

    # ------------------------------------------------------------------ operations

    @contextlib.asynccontextmanager
    async def _scratch_channel(
        self, *, confirms: bool = False
    ) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
        """A plain (non-robust) channel closed on exit: its unacked gets are requeued."""
        connection = self._connection
        if connection is None:
            raise RuntimeError("RabbitTransport is not connected")
        channel = aio_pika.Channel(
            connection, publisher_confirms=confirms, on_return_raises=confirms
        )
        await channel.initialize()
        try:
            yield channel
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def _message_count(self, name: str) -> int | None:
        """Ready messages in ``name`` (passive ``queue.declare``); ``None`` if it does not exist."""
        async with self._scratch_channel() as channel:
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                return None
            return queue.declaration_result.message_count or 0

    async def queue_depths(self, service: str) -> dict[str, int]:
        """``{"queue": n, "dlq": n}``: messages ready in the service's queue and DLQ.

        From ``queue.declare-ok``'s message-count (AMQP 0-9-1): messages delivered
        and not yet acknowledged are not counted. A queue that does not exist
        counts 0.

        Raises:
            RuntimeError: when not connected.
        """
        main = await self._message_count(queue_name(service))
        dlq = await self._message_count(dead_letter_queue_name(service))
        return {"queue": main or 0, "dlq": dlq or 0}

    async def dead_letters(self, service: str, limit: int = 100) -> list[DeadLetter]:
        """Up to ``limit`` parked messages of ``service``, oldest first, left in place.

        Reads with ``basic.get`` (manual ack) on a scratch channel that is then
        closed without acknowledging: RabbitMQ requeues them at their original
        positions, so order and count are preserved. Messages being read are
        briefly invisible to a concurrent reader (e.g. a parallel replay).

        Raises:
            RuntimeError: when not connected.
        """
        if limit <= 0:
            return []
        letters: list[DeadLetter] = []
        async with self._scratch_channel() as channel:
            try:
                queue = await channel.declare_queue(dead_letter_queue_name(service), passive=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                return []
            available = queue.declaration_result.message_count or 0
            for _ in range(min(limit, available)):
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                letters.append(_dead_letter(service, message))
        return letters

    async def replay(self, service: str, ids: Sequence[str] | None = None) -> int:
        """Send parked messages of ``service`` (all, or those whose id is in ``ids``) back.

        Each is published (confirmed, ``mandatory``) through the default
        exchange straight to ``healthflow.<service>`` — other services bound to
        the same type do not get it again — with ``x-attempts`` reset to 0 and
        the parking headers replaced by ``x-replayed-at``; only then is it
        acknowledged (removed) from the DLQ. Only the messages present when the
        replay starts are considered, so one that fails again and is re-parked
        meanwhile is not replayed twice. Returns how many were replayed.

        Raises:
            PublishError: when a copy is not confirmed (for example the service's
                queue no longer exists); those replayed before stay replayed and
                the rest stay parked.
            RuntimeError: when not connected.
        """
        wanted = None if ids is None else set(ids)
        if wanted is not None and not wanted:
            return 0
        target = queue_name(service)
        replayed = 0
        async with self._scratch_channel(confirms=True) as channel:
            try:
                queue = await channel.declare_queue(dead_letter_queue_name(service), passive=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                return 0
            available = queue.declaration_result.message_count or 0
            for _ in range(available):
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                letter_id = _dead_letter_id(message)
                if wanted is not None and letter_id not in wanted:
                    continue  # left unacked: requeued in place when the channel closes
                headers = {
                    k: v for k, v in (message.headers or {}).items() if k not in _PARKING_HEADERS
                }
                headers[HEADER_ATTEMPTS] = 0
                headers[HEADER_REPLAYED_AT] = datetime.now(UTC).isoformat()
                try:
                    await self._confirmed_publish(
                        channel.default_exchange, _copy(message, headers, letter_id), target
                    )
                except PublishError as exc:
                    raise PublishError(f"replay stopped after {replayed}: {exc}") from exc
                await message.ack()
                replayed += 1
        if replayed:
            log.info("replayed %d dead letter(s) to %s", replayed, target)
        return replayed


# ---------------------------------------------------------------------- helpers


def _consumer_attached(consumer: _Consumer) -> bool:
    if consumer.tag is None or consumer.channel.is_closed:
        return False
    # aio-pika keeps the live aiormq channel in ``_channel``; the consumer is
    # attached when that channel has the tag registered (a broker-side
    # ``basic.cancel`` removes it; aio-pika re-adds it with the same tag on recovery).
    underlay = getattr(consumer.channel, "_channel", None)
    amqp_channel = getattr(underlay, "channel", None)
    consumers: Mapping[str, object] = getattr(amqp_channel, "consumers", {})
    return consumer.tag in consumers


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


def _as_int(value: object, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, bytes | str):
        try:
            return int(value)
        except ValueError:
            return default
    return default


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _copy(
    message: aio_pika.abc.AbstractIncomingMessage, headers: dict[str, Any], message_id: str
) -> aio_pika.Message:
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type or CONTENT_TYPE,
        content_encoding=message.content_encoding,
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=message_id,
        type=message.type,
        timestamp=message.timestamp,
        correlation_id=message.correlation_id,
        app_id=message.app_id,
    )


def _dead_letter_id(message: aio_pika.abc.AbstractIncomingMessage) -> str:
    headers = message.headers or {}
    return _as_text(headers.get(HEADER_DEAD_LETTER_ID)) or _as_text(message.message_id)


def _dead_letter(service: str, message: aio_pika.abc.AbstractIncomingMessage) -> DeadLetter:
    headers = dict(message.headers or {})
    parked_at: datetime | None = None
    raw_parked = _as_text(headers.get(HEADER_PARKED_AT))
    if raw_parked:
        with contextlib.suppress(ValueError):
            parked_at = datetime.fromisoformat(raw_parked).astimezone(UTC)
    return DeadLetter(
        id=_dead_letter_id(message),
        service=service,
        body=message.body,
        reason=_as_text(headers.get(HEADER_REASON)) or "unknown",
        error=_as_text(headers.get(HEADER_ERROR)),
        attempts=_as_int(headers.get(HEADER_ATTEMPTS)),
        parked_at=parked_at,
        headers=headers,
    )
