"""CloudEvents 1.0 envelope and versioned payload models.

The envelope (:class:`CloudEvent`) follows the CloudEvents 1.0 JSON format:
required ``specversion``, ``id``, ``source``, ``type``; optional ``time`` (aware
UTC, RFC 3339), ``subject``, ``datacontenttype``, ``dataschema`` and ``data``;
plus the Distributed Tracing extension attributes ``traceparent`` and
``tracestate`` (W3C Trace Context: the context in which the event was recorded,
never altered afterwards; :mod:`healthflow.common.tracing`) and HealthFlow's
``actor`` (who caused it: a user id, or ``system:<service>``) and ``patientid``
(the patient the event concerns, an opaque id, so compliance can filter by
patient without PHI). The AMQP routing key is the ``type``.

Payloads are the contracts of :mod:`healthflow.contracts` (pydantic models
registered with :func:`~healthflow.contracts.base.event_type`, re-exported here);
the pair (type, version) appears as ``dataschema`` ``urn:healthflow:event:<type>:v<n>``.
Routing keys and envelope attributes never carry PHI: only ids and types.
"""

from __future__ import annotations

import builtins
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from healthflow.contracts.base import (  # re-exported: the base and registry live in contracts
    EventPayload,
    P,
    catalog,
    event_type,
    payload_model,
    schema_uri,
)

__all__ = [
    "EXCHANGE",
    "SPEC_VERSION",
    "CloudEvent",
    "EventPayload",
    "P",
    "catalog",
    "event_type",
    "payload_model",
    "schema_uri",
]

SPEC_VERSION = "1.0"
EXCHANGE = "healthflow.events"

class CloudEvent(BaseModel):
    """A CloudEvents 1.0 envelope (structured JSON mode)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: str = SPEC_VERSION
    id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1, max_length=128)
    source: str = Field(min_length=1, max_length=256)
    type: str = Field(min_length=1, max_length=128, pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = Field(default=None, max_length=256)
    datacontenttype: str = "application/json"
    dataschema: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    traceparent: str | None = None
    tracestate: str | None = None
    actor: str | None = Field(default=None, max_length=256)
    patientid: str | None = Field(default=None, max_length=128)

    @field_validator("specversion")
    @classmethod
    def _spec(cls, value: str) -> str:
        if value != SPEC_VERSION:
            raise ValueError(f"unsupported CloudEvents specversion {value!r}")
        return value

    @field_validator("time")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("time must be timezone-aware")
        return value.astimezone(UTC)

    @classmethod
    def build(
        cls,
        payload: EventPayload,
        *,
        source: str,
        subject: str | None = None,
        actor: str | None = None,
        patientid: str | None = None,
        traceparent: str | None = None,
        tracestate: str | None = None,
    ) -> CloudEvent:
        """Wrap ``payload`` in an envelope with a fresh id and the current time."""
        return cls(
            source=source,
            type=payload.event_type,
            subject=subject,
            dataschema=schema_uri(payload.event_type, payload.event_version),
            data=payload.model_dump(mode="json"),
            actor=actor,
            patientid=patientid,
            traceparent=traceparent,
            tracestate=tracestate,
        )

    def payload(self, model: builtins.type[P]) -> P:
        """Validate ``data`` as ``model``."""
        return model.model_validate(self.data)

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    def to_document(self) -> dict[str, Any]:
        """The envelope as a BSON-friendly dict (``time`` stays a datetime)."""
        return self.model_dump(exclude_none=True)

    @classmethod
    def from_json_bytes(cls, raw: bytes) -> CloudEvent:
        """Parse a structured-mode CloudEvent.

        Raises:
            ValueError: (or pydantic's ``ValidationError``) when it is not one.
        """
        return cls.model_validate(json.loads(raw))
