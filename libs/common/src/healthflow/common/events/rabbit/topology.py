"""The exchange and queues of the RabbitMQ transport, and their declaration.

Topology (AMQP 0-9-1 as RabbitMQ implements it), for a service ``svc``:

* ``healthflow.events``: durable **topic** exchange; the routing key is the
  CloudEvents ``type``.
* ``healthflow.svc``: the service's durable queue, bound to each of its patterns.
* ``healthflow.svc.direct``: the service's durable **direct** exchange, through which
  copies reach its own queues by name: each of them is bound to it with its own name
  as the binding key. Retries, parking and replay publish there, never to the default
  exchange: the service's RabbitMQ user may write this exchange and not ``amq.default``
  (``healthflow.devkit.busaccess``), so it cannot put a message into another
  service's queue by name, and nobody else may write or bind to it.
* ``healthflow.svc.delay.<ms>ms``: one durable queue per entry of
  ``retry_delays``, named by and with ``x-message-ttl`` = that delay in milliseconds,
  ``x-dead-letter-exchange`` = ``healthflow.svc.direct`` and
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

Releases before the ``.direct`` exchange named their retry queues
``healthflow.svc.retry.<ms>ms`` with the default exchange as dead-letter exchange.
RabbitMQ refuses to create such a queue for a user without write on ``amq.default``
and would refuse redeclaring it with the new arguments (406), hence the new names.
The old queues are left alone: the broker dead-letters what they hold back to
``healthflow.svc`` (dead-lettering is the broker's own publish, not the user's), and
an operator deletes them once empty (``rabbitmqctl delete_queue --if-empty``).

**Platform-declared topology** (``platform=True``, setting ``AMQP_PLATFORM_TOPOLOGY``):
with its own RabbitMQ user (``healthflow.devkit.busaccess``) a service may not configure
``healthflow.events``, its direct exchange or its durable queues, nor read its direct
exchange: the platform declares all of them and the direct exchange's bindings
(``healthflow.devkit.bususers``, ``deploy/rabbitmq/users.sh``), and the transport only
checks they exist (passive ``exchange.declare``/``queue.declare``, which need no
permission) and binds its queue to ``healthflow.events`` (topic-read-checked). A missing
one (e.g. a ``retry_delays`` entry the platform was not told about) is
:class:`TopologyMissing`. Without read on its direct exchange a service cannot bind that
exchange to ``healthflow.events`` (``exchange.bind`` needs read on the source), which would
forward whatever it publishes there, under any routing key, past the topic permissions.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import aio_pika.abc
import aio_pika.exceptions
from aio_pika import ExchangeType

from healthflow.common.events.transport import Subscription, queue_name

_T = TypeVar("_T")


class TopologyMissing(RuntimeError):
    """An exchange or queue the platform should have declared does not exist."""


async def _passive(declaration: Awaitable[_T], what: str) -> _T:
    """``declaration`` (a passive declare), its 404 turned into :class:`TopologyMissing`."""
    try:
        return await declaration
    except aio_pika.exceptions.ChannelNotFoundEntity as exc:
        raise TopologyMissing(
            f"{what} does not exist: the platform declares it with the services' RabbitMQ "
            "users (make run; deploy/rabbitmq/users.sh with the same retry delays)") from exc


def direct_exchange_name(service: str) -> str:
    """``healthflow.<service>.direct``: the exchange to the service's own queues by name."""
    return f"{queue_name(service)}.direct"


def retry_queue_name(service: str, delay: float) -> str:
    """``healthflow.<service>.delay.<delay in ms>ms``.

    Named by its delay, not its position, so that changing a service's
    ``retry_delays`` declares new queues instead of redeclaring an existing one
    with another ``x-message-ttl`` (which RabbitMQ refuses with 406
    PRECONDITION_FAILED); an old queue keeps returning what it holds to the
    service's queue and can be deleted once empty.
    """
    return f"{queue_name(service)}.delay.{_delay_ms(delay)}ms"


def _delay_ms(delay: float) -> int:
    return max(0, round(delay * 1000))


def retry_queue_arguments(service: str, delay: float) -> dict[str, str | int]:
    """The arguments of a retry queue: TTL ``delay`` in ms, dead-lettered to the service's
    queue through its direct exchange."""
    return {"x-message-ttl": _delay_ms(delay),
            "x-dead-letter-exchange": direct_exchange_name(service),
            "x-dead-letter-routing-key": queue_name(service)}


async def declare_exchange(
    channel: aio_pika.abc.AbstractChannel, name: str, *, platform: bool = False
) -> aio_pika.abc.AbstractExchange:
    """The durable topic exchange ``name`` (declared if absent; only checked when
    ``platform``).

    Raises:
        TopologyMissing: ``platform`` and the exchange does not exist.
    """
    if platform:
        return await _passive(channel.declare_exchange(name, passive=True),
                              f"the exchange {name}")
    return await channel.declare_exchange(name, ExchangeType.TOPIC, durable=True)


async def declare_service_queues(
    channel: aio_pika.abc.AbstractRobustChannel, exchange_name: str, subscription: Subscription,
    *, platform: bool = False,
) -> aio_pika.abc.AbstractRobustQueue:
    """Declare the exchanges, the service's queue and bindings, retry queues and DLQ
    (with ``platform``, check them and bind the queue to ``exchange_name`` only).

    Returns the service's queue, bound to each of ``subscription.patterns``.

    Raises:
        aio_pika.exceptions.ChannelPreconditionFailed: when an existing queue
            was declared with other arguments (e.g. changed retry delays).
        TopologyMissing: ``platform`` and one of them does not exist.
    """
    exchange = await declare_exchange(channel, exchange_name, platform=platform)
    if platform:
        return await _check_service_queues(channel, exchange, subscription)
    direct = await declare_direct_exchange(channel, subscription.service)
    queue = await channel.declare_queue(subscription.queue, durable=True)
    for pattern in subscription.patterns:
        await queue.bind(exchange, routing_key=pattern)
    await queue.bind(direct, routing_key=subscription.queue)
    for delay in subscription.retry_delays:
        name = retry_queue_name(subscription.service, delay)
        retry = await channel.declare_queue(
            name, durable=True, arguments=retry_queue_arguments(subscription.service, delay))
        await retry.bind(direct, routing_key=name)
    dlq = await channel.declare_queue(subscription.dead_letter_queue, durable=True)
    await dlq.bind(direct, routing_key=subscription.dead_letter_queue)
    return queue


async def declare_direct_exchange(
    channel: aio_pika.abc.AbstractChannel, service: str
) -> aio_pika.abc.AbstractExchange:
    """The durable direct exchange ``healthflow.<service>.direct`` (declared if absent)."""
    return await channel.declare_exchange(
        direct_exchange_name(service), ExchangeType.DIRECT, durable=True
    )


async def _check_service_queues(
    channel: aio_pika.abc.AbstractRobustChannel, exchange: aio_pika.abc.AbstractExchange,
    subscription: Subscription,
) -> aio_pika.abc.AbstractRobustQueue:
    """The platform-declared topology of ``subscription``: each exchange and queue must
    exist; the queue is bound to ``exchange`` with the subscription's patterns."""
    await _passive(channel.declare_exchange(
        direct_exchange_name(subscription.service), passive=True),
        f"the exchange {direct_exchange_name(subscription.service)}")
    names = [retry_queue_name(subscription.service, d) for d in subscription.retry_delays]
    for name in [*names, subscription.dead_letter_queue]:
        await _passive(channel.declare_queue(name, passive=True),
                       f"the queue {name}")
    queue = await _passive(channel.declare_queue(subscription.queue, passive=True),
                           f"the queue {subscription.queue}")
    for pattern in subscription.patterns:
        await queue.bind(exchange, routing_key=pattern)
    return queue
