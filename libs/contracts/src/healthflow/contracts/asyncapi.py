"""The AsyncAPI 3.0 document of the platform's events, built from the contracts.

Shape (AsyncAPI 3.0.0, https://www.asyncapi.com/docs/reference/specification/v3.0.0):

* ``channels``: one per event type, keyed and addressed by the type (the AMQP
  routing key) on the durable topic exchange ``healthflow.events`` (AMQP
  channel binding 0.3.0, ``is: routingKey``); its one message is the event.
* ``operations``: ``<publisher>.send.<type>`` (``action: send``) for the service
  that publishes it and ``<consumer>.receive.<type>`` (``action: receive``) for
  each service whose subscription patterns match it.
* ``components.messages``: per type, a CloudEvents 1.0 structured-mode message
  (``application/cloudevents+json``) whose payload is the envelope with ``type``
  fixed and ``data`` the contract; ``components.schemas``: the contracts' JSON
  Schemas (pydantic, draft 2020-12) with nested models hoisted beside them.

:func:`document` is pure; :mod:`healthflow.common.catalog` supplies who
consumes what and writes the result to ``asyncapi.json`` in this package
(``make docs``), which the gateway serves as ``/asyncapi.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from healthflow.contracts import contracts
from healthflow.contracts.base import EventPayload, schema_uri

EXCHANGE = "healthflow.events"
CONTENT_TYPE = "application/cloudevents+json"
ENVELOPE = "CloudEventEnvelope"
_REF = "#/components/schemas/{model}"

_ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "CloudEvents 1.0 envelope (structured JSON mode) with the Distributed "
                   "Tracing extension traceparent and tracestate (W3C Trace Context of "
                   "the span that recorded the event) and HealthFlow's extensions actor "
                   "and patientid.",
    "required": ["specversion", "id", "source", "type", "time", "data"],
    "properties": {
        "specversion": {"const": "1.0"},
        "id": {"type": "string", "minLength": 1, "maxLength": 128},
        "source": {"type": "string", "minLength": 1, "maxLength": 256},
        "type": {"type": "string"},
        "time": {"type": "string", "format": "date-time"},
        "subject": {"type": "string", "maxLength": 256},
        "datacontenttype": {"const": "application/json"},
        "dataschema": {"type": "string"},
        "data": {"type": "object"},
        "traceparent": {"type": "string"},
        "tracestate": {"type": "string"},
        "actor": {"type": "string", "maxLength": 256},
        "patientid": {"type": "string", "maxLength": 128},
    },
}


def _schemas(models: Mapping[str, type[EventPayload]]) -> dict[str, Any]:
    """Each contract's JSON Schema, nested ``$defs`` hoisted; refs point into components."""
    schemas: dict[str, Any] = {ENVELOPE: _ENVELOPE_SCHEMA}
    for model in models.values():
        schema = model.model_json_schema(ref_template=_REF)
        for name, nested in {**schema.pop("$defs", {}), model.__name__: schema}.items():
            if schemas.setdefault(name, nested) != nested:
                raise ValueError(f"two different contract schemas are named {name!r}")
    return schemas


def _message(type_: str, model: type[EventPayload]) -> dict[str, Any]:
    return {
        "name": type_,
        "title": model.__name__,
        "summary": (model.__doc__ or "").strip().splitlines()[0],
        "contentType": CONTENT_TYPE,
        "payload": {"allOf": [
            {"$ref": _REF.format(model=ENVELOPE)},
            {"properties": {
                "type": {"const": type_},
                "dataschema": {"const": schema_uri(type_, model.event_version)},
                "data": {"$ref": _REF.format(model=model.__name__)},
            }},
        ]},
        "x-healthflow-version": model.event_version,
        "x-healthflow-publisher": model.event_publisher,
    }


def _channel(type_: str, model: type[EventPayload]) -> dict[str, Any]:
    return {
        "address": type_,
        "title": type_,
        "messages": {model.__name__: {"$ref": f"#/components/messages/{type_}"}},
        "bindings": {"amqp": {
            "is": "routingKey",
            "exchange": {"name": EXCHANGE, "type": "topic", "durable": True,
                         "autoDelete": False, "vhost": "/"},
            "bindingVersion": "0.3.0",
        }},
    }


def _operation(action: str, service: str, type_: str, model: type[EventPayload]
               ) -> dict[str, Any]:
    verb = "publishes" if action == "send" else "consumes"
    return {
        "action": action,
        "title": f"{service} {verb} {type_}",
        "channel": {"$ref": f"#/channels/{type_}"},
        "messages": [{"$ref": f"#/channels/{type_}/messages/{model.__name__}"}],
        "x-healthflow-service": service,
    }


def document(consumers: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document; ``consumers`` maps an event type to the consuming services."""
    models = contracts()
    operations: dict[str, Any] = {}
    for type_, model in models.items():
        operations[f"{model.event_publisher}.send.{type_}"] = _operation(
            "send", str(model.event_publisher), type_, model)
        for service in sorted(consumers.get(type_, ())):
            operations[f"{service}.receive.{type_}"] = _operation("receive", service, type_, model)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "HealthFlow events",
            "version": "1.0.0",
            "description": "Domain events on the topic exchange `healthflow.events` "
                           "(routing key = CloudEvents type), generated from "
                           "`healthflow.contracts`; do not edit.",
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": {t: _channel(t, m) for t, m in models.items()},
        "operations": operations,
        "components": {
            "schemas": _schemas(models),
            "messages": {t: _message(t, m) for t, m in models.items()},
        },
    }


def render(consumers: Mapping[str, Sequence[str]]) -> str:
    """:func:`document` as the JSON text kept in ``asyncapi.json`` (sorted keys, one line)."""
    return json.dumps(document(consumers), sort_keys=True, separators=(",", ":")) + "\n"


def load() -> dict[str, Any]:
    """The generated document shipped in this package (what the gateway serves)."""
    return json.loads(resources.files(__package__).joinpath("asyncapi.json").read_text())
