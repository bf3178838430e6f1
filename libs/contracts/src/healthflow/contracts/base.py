"""The base of every event payload and the registry of contracts.

A contract is a pydantic model registered with :func:`event_type`, which
declares beside the class the CloudEvents 1.0 ``type`` it travels as (also the
AMQP routing key), the ``publisher`` (the one service that emits it) and the
schema ``version`` (an int, raised on a change that would break a consumer;
see :mod:`healthflow.contracts.compat`). The pair (type, version) appears in
the envelope as ``dataschema`` ``urn:healthflow:event:<type>:v<version>``.

This module depends on pydantic only, so publishers, consumers and tools can
import the contracts without a web framework, a database driver or a broker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

P = TypeVar("P", bound="EventPayload")


class EventPayload(BaseModel):
    """Base of every event payload; subclasses are registered with :func:`event_type`.

    ``extra="forbid"`` guards publishers against misspelt fields; consumers
    validate with unknown fields ignored (a field added by a newer publisher
    does not break them).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: ClassVar[str]
    event_version: ClassVar[int]
    event_publisher: ClassVar[str | None] = None
    audit_data: ClassVar[Literal["full", "digest"]] = "full"
    """What the audit log keeps of ``data``: all of it, or (``"digest"``, for clinical
    content such as diagnosis codes) only its SHA-256, so the unalterable log proves
    the event without holding what it said."""


_registry: dict[str, type[EventPayload]] = {}


def event_type(
    name: str, version: int = 1, *, publisher: str | None = None
) -> Callable[[type[P]], type[P]]:
    """Class decorator registering a payload model for the CloudEvents ``type`` ``name``.

    ``version`` is the schema version (int ≥ 1); ``publisher`` the service that
    emits it (``None`` only for test and tool types).

    Raises:
        ValueError: when another class already registered ``name``.
    """

    def register(cls: type[P]) -> type[P]:
        cls.event_type = name
        cls.event_version = version
        cls.event_publisher = publisher
        existing = _registry.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"event type {name!r} is already registered by {existing!r}")
        _registry[name] = cls
        return cls

    return register


def payload_model(type_: str) -> type[EventPayload] | None:
    """The registered payload model of ``type_`` (``None`` when unknown in this process)."""
    return _registry.get(type_)


def registered() -> dict[str, type[EventPayload]]:
    """Every registered type → its model, sorted by type."""
    return dict(sorted(_registry.items()))


def schema_uri(type_: str, version: int) -> str:
    """``urn:healthflow:event:<type>:v<version>`` (the envelope's ``dataschema``)."""
    return f"urn:healthflow:event:{type_}:v{version}"


def catalog() -> dict[str, dict[str, Any]]:
    """Every event type registered in this process: version, publisher, JSON Schema of its data."""
    return {
        name: {
            "version": cls.event_version,
            "publisher": cls.event_publisher,
            "dataschema": schema_uri(name, cls.event_version),
            "payload": cls.__module__ + "." + cls.__qualname__,
            "schema": cls.model_json_schema(),
        }
        for name, cls in registered().items()
    }
