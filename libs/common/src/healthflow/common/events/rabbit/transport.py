"""RabbitMQ implementation of :class:`~healthflow.common.events.transport.Transport` (aio-pika).

The connection, publishing with publisher confirms, recovery and drain. The
exchange and queues it declares are in :mod:`.topology`, the handling of
deliveries in :mod:`.consumer`, the operator reads (depths, dead letters,
replay) in :mod:`.deadletters`, the message headers in :mod:`.messages`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aio_pika.abc
import aio_pika.exceptions
import aiormq.exceptions
from aio_pika import DeliveryMode

from healthflow.common import tracing
from healthflow.common.events.envelope import EXCHANGE, CloudEvent
from healthflow.common.events.rabbit import deadletters
from healthflow.common.events.rabbit.consumer import QueueConsumer
from healthflow.common.events.rabbit.messages import CONTENT_TYPE, MESSAGING_SYSTEM
from healthflow.common.events.rabbit.topology import (
    declare_exchange,
    declare_service_queues,
    direct_exchange_name,
)
from healthflow.common.events.transport import (
    DeadLetter,
    EventHandler,
    PublishError,
    Subscription,
    Transport,
    describe_error,
)

log = logging.getLogger(__name__)


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
        platform_topology: the platform declared the exchanges, the queues and the
            direct exchange's bindings (a service's own RabbitMQ user may not): only
            check they exist and bind the queues to ``exchange``
            (:mod:`.topology`); a missing one raises ``TopologyMissing``.

    One instance holds one connection: a publisher channel (publisher confirms
    on, returned ``mandatory`` messages raise) and one channel per
    subscription. After a broker restart or a network cut aio-pika reconnects
    by itself and re-declares the exchange, queues, bindings, QoS and
    consumers; :attr:`consuming` is False meanwhile.
    """

    messaging_system = MESSAGING_SYSTEM

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
        platform_topology: bool = False,
    ) -> None:
        self.amqp_url = amqp_url
        self.exchange_name = exchange
        self.publish_timeout = publish_timeout
        self.drain_timeout = drain_timeout
        self.reconnect_interval = reconnect_interval
        self.connect_timeout = connect_timeout
        self.connection_name = connection_name
        self.platform_topology = platform_topology
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._publish_channel: aio_pika.abc.AbstractRobustChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._consumers: dict[str, QueueConsumer] = {}
        self._broadcast_channels: list[aio_pika.abc.AbstractChannel] = []
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
            self._exchange = await declare_exchange(channel, self.exchange_name,
                                                    platform=self.platform_topology)
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
        if cancel:
            for consumer in self._consumers.values():
                await consumer.cancel()
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
        channels, self._broadcast_channels = self._broadcast_channels, []
        for channel in channels:
            with contextlib.suppress(Exception):
                await channel.close()
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
        return all(c.attached for c in self._consumers.values())

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
            PublishError: on ``basic.nack``, when the broker refuses this connection's
                user the routing key (``ACCESS_REFUSED``, 403: RabbitMQ topic
                permissions, see ``healthflow.devkit.busaccess``), when no queue is
                bound for the type (``basic.return`` of the mandatory message), when the broker does
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
        except aiormq.exceptions.ChannelAccessRefused as exc:  # 403: not this user's type
            raise PublishError(
                f"ACCESS_REFUSED: this connection's RabbitMQ user may not publish routing key "
                f"{routing_key!r} on exchange {exchange.name!r} ({exc})"
            ) from exc
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
        """Declare the service's topology (see :mod:`.topology`), then consume.

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
            queue = await declare_service_queues(channel, self.exchange_name, subscription,
                                                 platform=self.platform_topology)
            consumer = QueueConsumer(
                subscription,
                channel,
                queue,
                forward=self._forward,
                inflight=self._inflight,
                closing=lambda: self._closing,
            )
            self._consumers[service] = consumer
            await consumer.start()
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

    async def subscribe_broadcast(self, name: str, patterns: Sequence[str],
                                  handler: EventHandler) -> None:
        """An exclusive, auto-deleted queue of this connection
        (``healthflow.broadcast.<name>.<random>``) bound to ``patterns``; its messages are
        acknowledged on receipt and handed to ``handler`` (a failure is logged).

        aio-pika re-declares the queue, by the same name, after a reconnection; what was
        published meanwhile is lost (the owner re-reads it, see the base class).

        Raises:
            RuntimeError: when not connected.
        """
        connection = self._connection
        if connection is None or self._closing:
            raise RuntimeError("RabbitTransport is not connected")
        channel = await connection.channel(publisher_confirms=False)
        exchange = await declare_exchange(channel, self.exchange_name,
                                          platform=self.platform_topology)
        queue = await channel.declare_queue(
            f"healthflow.broadcast.{name}.{uuid.uuid4().hex[:12]}", exclusive=True,
            auto_delete=True, durable=False)
        for pattern in patterns:
            await queue.bind(exchange, routing_key=pattern)

        async def deliver(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            try:
                await handler(CloudEvent.from_json_bytes(message.body))
            except Exception as exc:
                log.warning("broadcast handler %s failed for message %s: %s", name,
                            message.message_id, describe_error(exc))

        await queue.consume(deliver, no_ack=True)
        self._broadcast_channels.append(channel)

    async def _forward(self, message: aio_pika.Message, service: str, queue: str) -> None:
        """Confirmed publish of ``message`` to ``service``'s own ``queue`` through its direct
        exchange (declared by :meth:`subscribe`); never through the default exchange."""
        channel = self._publish_channel
        if channel is None:
            raise PublishError("RabbitTransport is not connected")
        exchange = await channel.get_exchange(direct_exchange_name(service), ensure=False)
        await self._confirmed_publish(exchange, message, queue)

    # ------------------------------------------------------------------ operations

    async def queue_depths(self, service: str) -> dict[str, int]:
        """``{"queue": n, "dlq": n}``; see :func:`.deadletters.queue_depths`."""
        return await deadletters.queue_depths(self._connection, service)

    async def dead_letters(self, service: str, limit: int = 100) -> list[DeadLetter]:
        """Parked messages, oldest first, left in place; see :func:`.deadletters.dead_letters`."""
        return await deadletters.dead_letters(self._connection, service, limit)

    async def replay(self, service: str, ids: Sequence[str] | None = None) -> int:
        """Send parked messages back to ``service`` only; see :func:`.deadletters.replay`."""
        return await deadletters.replay(self._connection, self._confirmed_publish, service, ids,
                                        platform=self.platform_topology)
