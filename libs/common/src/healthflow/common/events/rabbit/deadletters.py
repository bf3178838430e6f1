"""Operator reads of a service's queues on RabbitMQ: depths, dead letters, replay.

What :class:`~healthflow.common.events.rabbit.transport.RabbitTransport`'s
``queue_depths``, ``dead_letters`` and ``replay`` do (the ``healthflow-deadletters``
command and the readiness probes call those). Each runs on a scratch channel of
its own, so nothing here disturbs the consumers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime

import aio_pika
import aio_pika.abc
import aio_pika.exceptions

from healthflow.common.events.rabbit.messages import (
    HEADER_ATTEMPTS,
    HEADER_DEAD_LETTER_ID,
    HEADER_ERROR,
    HEADER_PARKED_AT,
    HEADER_REASON,
    HEADER_REPLAYED_AT,
    PARKING_HEADERS,
    as_int,
    as_text,
    copy_message,
)
from healthflow.common.events.rabbit.topology import declare_direct_exchange, direct_exchange_name
from healthflow.common.events.transport import (
    DeadLetter,
    PublishError,
    dead_letter_queue_name,
    queue_name,
)

log = logging.getLogger(__name__)

ConfirmedPublish = Callable[[aio_pika.abc.AbstractExchange, aio_pika.Message, str], Awaitable[None]]
"""Publish ``mandatory`` to an exchange with a routing key and wait for the broker's
confirm; raises :class:`PublishError` otherwise."""


@contextlib.asynccontextmanager
async def scratch_channel(
    connection: aio_pika.abc.AbstractConnection | None, *, confirms: bool = False
) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A plain (non-robust) channel closed on exit: its unacked gets are requeued.

    Raises:
        RuntimeError: when ``connection`` is None (not connected).
    """
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


async def message_count(
    connection: aio_pika.abc.AbstractConnection | None, name: str
) -> int | None:
    """Ready messages in ``name`` (passive ``queue.declare``); ``None`` if it does not exist."""
    async with scratch_channel(connection) as channel:
        try:
            queue = await channel.declare_queue(name, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return None
        return queue.declaration_result.message_count or 0


async def queue_depths(
    connection: aio_pika.abc.AbstractConnection | None, service: str
) -> dict[str, int]:
    """``{"queue": n, "dlq": n}``: messages ready in the service's queue and DLQ.

    From ``queue.declare-ok``'s message-count (AMQP 0-9-1): messages delivered
    and not yet acknowledged are not counted. A queue that does not exist
    counts 0.

    Raises:
        RuntimeError: when not connected.
    """
    main = await message_count(connection, queue_name(service))
    dlq = await message_count(connection, dead_letter_queue_name(service))
    return {"queue": main or 0, "dlq": dlq or 0}


async def dead_letters(
    connection: aio_pika.abc.AbstractConnection | None, service: str, limit: int = 100
) -> list[DeadLetter]:
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
    async with scratch_channel(connection) as channel:
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


async def replay(
    connection: aio_pika.abc.AbstractConnection | None,
    publish: ConfirmedPublish,
    service: str,
    ids: Sequence[str] | None = None, *, platform: bool = False,
) -> int:
    """Send parked messages of ``service`` (all, or those whose id is in ``ids``) back.

    Each is published (confirmed, ``mandatory``, through ``publish``) via the
    service's direct exchange ``healthflow.<service>.direct`` straight to
    ``healthflow.<service>`` — other services bound to the same type do not get it
    again; the exchange and that binding are declared first, as the consumer does —
    with ``x-attempts`` reset to 0 and the parking headers replaced by ``x-replayed-at``
    (``platform``: see :mod:`.topology`); only then is it
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
    async with scratch_channel(connection, confirms=True) as channel:
        try:
            queue = await channel.declare_queue(dead_letter_queue_name(service), passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return 0
        available = queue.declaration_result.message_count or 0
        if not available:
            return 0
        exchange = await _route_to_queue(channel, service, platform=platform)
        for _ in range(available):
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            letter_id = _dead_letter_id(message)
            if wanted is not None and letter_id not in wanted:
                continue  # left unacked: requeued in place when the channel closes
            headers = {
                k: v for k, v in (message.headers or {}).items() if k not in PARKING_HEADERS
            }
            headers[HEADER_ATTEMPTS] = 0
            headers[HEADER_REPLAYED_AT] = datetime.now(UTC).isoformat()
            try:
                await publish(exchange, copy_message(message, headers, letter_id), target)
            except PublishError as exc:
                raise PublishError(f"replay stopped after {replayed}: {exc}") from exc
            await message.ack()
            replayed += 1
    if replayed:
        log.info("replayed %d dead letter(s) to %s", replayed, target)
    return replayed


async def _route_to_queue(
    channel: aio_pika.abc.AbstractChannel, service: str, *, platform: bool = False
) -> aio_pika.abc.AbstractExchange:
    """The service's direct exchange, with its queue bound by name (idempotent; with
    ``platform`` the platform declared both and the binding, :mod:`.topology`).

    Raises:
        PublishError: when the service's queue does not exist.
    """
    try:
        if platform:
            exchange = await channel.declare_exchange(direct_exchange_name(service),
                                                      passive=True)
        else:
            exchange = await declare_direct_exchange(channel, service)
        target = await channel.declare_queue(queue_name(service), passive=True)
    except aio_pika.exceptions.ChannelNotFoundEntity as exc:
        raise PublishError(f"replay stopped after 0: no queue {queue_name(service)}") from exc
    if not platform:
        await target.bind(exchange, routing_key=queue_name(service))
    return exchange


def _dead_letter_id(message: aio_pika.abc.AbstractIncomingMessage) -> str:
    headers = message.headers or {}
    return as_text(headers.get(HEADER_DEAD_LETTER_ID)) or as_text(message.message_id)


def _dead_letter(service: str, message: aio_pika.abc.AbstractIncomingMessage) -> DeadLetter:
    headers = dict(message.headers or {})
    parked_at: datetime | None = None
    raw_parked = as_text(headers.get(HEADER_PARKED_AT))
    if raw_parked:
        with contextlib.suppress(ValueError):
            parked_at = datetime.fromisoformat(raw_parked).astimezone(UTC)
    return DeadLetter(
        id=_dead_letter_id(message),
        service=service,
        body=message.body,
        reason=as_text(headers.get(HEADER_REASON)) or "unknown",
        error=as_text(headers.get(HEADER_ERROR)),
        attempts=as_int(headers.get(HEADER_ATTEMPTS)),
        parked_at=parked_at,
        headers=headers,
    )
