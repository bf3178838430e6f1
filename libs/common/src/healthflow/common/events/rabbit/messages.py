"""The AMQP messages of the RabbitMQ transport: content type, headers, copies.

Message headers written by this package (AMQP field table):

====================  ========================================================
``traceparent``       W3C Trace Context of the publishing (PRODUCER) span, and
                      ``tracestate`` when it has one; the envelope keeps the
                      context the event was recorded in (``tracing.message_headers``)
``x-attempts``        retries used so far: failed handler attempts before the
                      current delivery (int; absent = 0). A message parked after
                      its retries ran out shows ``len(retry_delays)``; one parked
                      at once (unknown type, malformed, contract violation)
                      shows the value it had.
``x-death-reason``    DLQ only: ``handler-failed``, ``unknown-type``, ``malformed``,
                      ``contract-violation`` (``data`` breaks its contract) or
                      ``foreign-source`` (``source`` is not its type's publisher)
``x-error``           DLQ only: ``"<ExceptionClass>: <message>"``, at most 500
                      characters; never the body (validation errors list only
                      locations and error kinds, not the offending values)
``x-parked-at``       DLQ only: ISO 8601 UTC time of parking
``x-service``         DLQ only: the service that parked it
``x-dead-letter-id``  DLQ only: the id :class:`DeadLetter` is known by (the event
                      id; a generated UUID for a malformed body)
``x-replayed-at``     after a replay: ISO 8601 UTC time of the replay
====================  ========================================================
"""

from __future__ import annotations

from typing import Any

import aio_pika
import aio_pika.abc
from aio_pika import DeliveryMode

CONTENT_TYPE = "application/cloudevents+json"
MESSAGING_SYSTEM = "rabbitmq"  # OpenTelemetry's messaging.system of these spans

HEADER_ATTEMPTS = "x-attempts"
HEADER_REASON = "x-death-reason"
HEADER_ERROR = "x-error"
HEADER_PARKED_AT = "x-parked-at"
HEADER_SERVICE = "x-service"
HEADER_DEAD_LETTER_ID = "x-dead-letter-id"
HEADER_REPLAYED_AT = "x-replayed-at"

PARKING_HEADERS = (
    HEADER_REASON,
    HEADER_ERROR,
    HEADER_PARKED_AT,
    HEADER_SERVICE,
    HEADER_DEAD_LETTER_ID,
)
"""Headers describing one parking; dropped when a message is replayed."""


def as_int(value: object, default: int = 0) -> int:
    """A header value as an int (``default`` for a bool, a non-number or nothing)."""
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


def as_text(value: object) -> str:
    """A header value as text (bytes decoded as UTF-8; ``""`` for nothing)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def copy_message(
    message: aio_pika.abc.AbstractIncomingMessage, headers: dict[str, Any], message_id: str
) -> aio_pika.Message:
    """A persistent copy of ``message`` with ``headers`` and ``message_id``."""
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
