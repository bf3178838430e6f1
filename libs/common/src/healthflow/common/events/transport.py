"""The project's small publish/subscribe interface, implemented twice.

* :class:`~healthflow.common.events.rabbit.transport.RabbitTransport`: RabbitMQ through
  aio-pika (the production shape).
* :class:`~healthflow.common.events.inprocess.InProcessTransport`: every service
  in one process (the single-process ``make run``).

Both keep one contract, proven by one test suite (``tests/test_transport_contract.py``):

* :meth:`Transport.publish` returns only once the event is safely handed over
  (RabbitMQ: broker confirm of a ``mandatory`` publish; in-process: every matching
  subscription has handled it or parked it as a dead letter). The outbox marks a
  record sent only after it returns, so a crash before that loses nothing.
* A subscription's handler failing is retried after each of ``retry_delays``
  seconds, then the message is parked as a dead letter of that service
  (``healthflow.<service>.dlq``); malformed or unknown messages, and payloads
  that break their contract (:class:`ContractViolation`), are dead-lettered at once.
  Nothing is silently dropped.
* Handlers must be idempotent (the :class:`~healthflow.common.events.consumer.Consumer`
  inbox makes them so): delivery is at-least-once.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

from pydantic import ValidationError

from healthflow.common.events.envelope import CloudEvent

EventHandler = Callable[[CloudEvent], Awaitable[None]]

MAX_ERROR_CHARS = 500
"""Longest error text kept with a dead letter."""


class PublishError(RuntimeError):
    """The broker did not accept the event (nack, unroutable, or unreachable)."""


class UnknownEventType(Exception):
    """A subscription received a type it has no handler for: dead-lettered at once."""


class ContractViolation(Exception):
    """A delivery's ``data`` does not validate against the contract of its type.

    Dead-lettered at once (retrying cannot fix a payload), with reason
    ``contract-violation`` and this text as the error: the type, the contract
    version and pydantic's error locations and kinds (never the offending values,
    which may be PHI), e.g. ``appointment.booked v1: 1 error(s): patient_id: missing``.
    """


class ForeignSource(ContractViolation):
    """A delivery whose CloudEvents ``source`` is not ``/healthflow/<publisher>`` of the
    service its type's contract names as publisher: another service (or anyone with
    access to the bus) forging it. Parked at once, with reason ``foreign-source``."""


REASON_HANDLER_FAILED = "handler-failed"
REASON_UNKNOWN_TYPE = "unknown-type"
REASON_MALFORMED = "malformed"
REASON_CONTRACT_VIOLATION = "contract-violation"
REASON_FOREIGN_SOURCE = "foreign-source"


@dataclass(frozen=True)
class AfterFailure:
    """What a transport does with a delivery whose handling failed: ``retry`` after
    ``delay`` seconds, or ``park`` it in the dead-letter queue with ``reason``."""

    action: Literal["retry", "park"]
    reason: str | None = None
    delay: float | None = None


def after_failure(exc: BaseException, attempts: int,
                  retry_delays: Sequence[float]) -> AfterFailure:
    """The one retry-or-park rule of every transport.

    ``attempts``: how many times the delivery was retried before this failure. A
    type without a handler or a payload that breaks its contract is parked at once
    (retrying cannot fix either); any other error is retried after
    ``retry_delays[attempts]`` seconds while delays remain, then parked.
    """
    if isinstance(exc, UnknownEventType):
        return AfterFailure("park", REASON_UNKNOWN_TYPE)
    if isinstance(exc, ForeignSource):
        return AfterFailure("park", REASON_FOREIGN_SOURCE)
    if isinstance(exc, ContractViolation):
        return AfterFailure("park", REASON_CONTRACT_VIOLATION)
    if attempts < len(retry_delays):
        return AfterFailure("retry", delay=retry_delays[attempts])
    return AfterFailure("park", REASON_HANDLER_FAILED)


@dataclass(frozen=True)
class Subscription:
    """What one service consumes.

    ``patterns`` are AMQP topic patterns over the event ``type`` (``*`` one word,
    ``#`` zero or more). ``handler`` raises :class:`UnknownEventType` for types it
    does not handle, :class:`ContractViolation` for a payload that breaks its
    contract (both parked at once) and any other exception for a failure worth
    retrying.
    """

    service: str
    patterns: Sequence[str]
    handler: EventHandler
    retry_delays: Sequence[float] = (1.0, 5.0, 30.0)
    prefetch: int = 32

    @property
    def queue(self) -> str:
        return queue_name(self.service)

    @property
    def dead_letter_queue(self) -> str:
        return dead_letter_queue_name(self.service)

    def matches(self, routing_key: str) -> bool:
        return any(topic_matches(p, routing_key) for p in self.patterns)


@dataclass
class DeadLetter:
    """A parked message: its raw body, why it was parked, and when (aware UTC)."""

    id: str
    service: str
    body: bytes
    reason: str
    error: str
    attempts: int
    parked_at: datetime | None
    headers: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """A view without the body (bodies may hold PHI; see :meth:`envelope_head`)."""
        return {
            "id": self.id,
            "service": self.service,
            "reason": self.reason,
            "error": self.error,
            "attempts": self.attempts,
            "parked_at": self.parked_at.isoformat() if self.parked_at else None,
            **self.envelope_head(),
        }

    def envelope_head(self) -> dict[str, Any]:
        """The envelope attributes of the body, without ``data`` (empty if malformed)."""
        try:
            event = CloudEvent.from_json_bytes(self.body)
        except Exception:
            return {"event_id": None, "type": None}
        return {"event_id": event.id, "type": event.type, "subject": event.subject}


def queue_name(service: str) -> str:
    return f"healthflow.{service}"


def dead_letter_queue_name(service: str) -> str:
    return f"healthflow.{service}.dlq"


def _match_words(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match_words(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match_words(rest, words[1:])


@lru_cache(maxsize=4096)
def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP 0-9-1 topic matching, as RabbitMQ's topic exchange does it.

    ``*`` matches exactly one dot-separated word, ``#`` zero or more.
    """
    return _match_words(tuple(pattern.split(".")), tuple(routing_key.split(".")))


def describe_error(exc: BaseException) -> str:
    """``"<ExceptionClass>: <message>"`` cut to :data:`MAX_ERROR_CHARS` characters.

    A pydantic :class:`~pydantic.ValidationError` is described by its error
    locations and kinds only: its usual message repeats the offending input,
    which may be PHI.
    """
    if isinstance(exc, ValidationError):
        text = f"{type(exc).__name__}: {describe_validation(exc)}"
    else:
        message = str(exc)
        text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:MAX_ERROR_CHARS]


def describe_validation(exc: ValidationError) -> str:
    """``"<n> error(s): <loc>: <kind>; …"``: pydantic's locations and kinds, no input values."""
    details = "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or '<root>'}: {err['type']}"
        for err in exc.errors()
    )
    return f"{exc.error_count()} error(s): {details}"


class Transport(abc.ABC):
    """Publish/subscribe over the ``healthflow.events`` topic exchange."""

    messaging_system: str = "unknown"
    """The OpenTelemetry ``messaging.system`` of the transport's spans."""

    @abc.abstractmethod
    async def connect(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop consuming, let in-flight handlers finish (drain), then disconnect."""

    @abc.abstractmethod
    async def publish(self, event: CloudEvent) -> None:
        """Hand ``event`` over durably; raises :class:`PublishError` when not accepted."""

    @abc.abstractmethod
    async def subscribe(self, subscription: Subscription) -> None:
        """Declare the service's queue, bindings, retry and dead-letter path; start consuming."""

    @abc.abstractmethod
    async def subscribe_broadcast(self, name: str, patterns: Sequence[str],
                                  handler: EventHandler) -> None:
        """Hand every event matching ``patterns`` to ``handler`` in *this process*, besides
        the services' queues: each process (each replica) gets its own copy.

        For in-memory state every replica must hold (token revocations). At most once:
        nothing is kept for a process that is not running, retried or dead-lettered (a
        failing handler is logged); the state's owner re-reads what it may have missed
        (:mod:`healthflow.common.revocation`). ``name`` identifies it in logs and queues.
        """

    @property
    @abc.abstractmethod
    def connected(self) -> bool: ...

    @property
    @abc.abstractmethod
    def consuming(self) -> bool:
        """True when every subscription has its consumer attached."""

    @abc.abstractmethod
    async def queue_depths(self, service: str) -> dict[str, int]:
        """Messages waiting: ``{"queue": n, "dlq": n}`` for ``service``."""

    @abc.abstractmethod
    async def dead_letters(self, service: str, limit: int = 100) -> list[DeadLetter]:
        """List (without removing) parked messages of ``service``, oldest first."""

    @abc.abstractmethod
    async def replay(self, service: str, ids: Sequence[str] | None = None) -> int:
        """Send parked messages (all, or those ``ids``) back to ``service`` only.

        Returns how many were replayed.
        """
