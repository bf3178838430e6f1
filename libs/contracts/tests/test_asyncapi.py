"""The AsyncAPI 3.0 document built from the contracts: structure and references."""

from __future__ import annotations

from typing import Any

from healthflow.contracts import asyncapi, contracts


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in refs(item)]
    return []


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_structure_channels_and_operations() -> None:
    doc = asyncapi.document({"appointment.booked": ["patient", "audit"]})
    assert doc["asyncapi"] == "3.0.0"
    assert {"title", "version"} <= doc["info"].keys()
    assert set(doc["channels"]) == set(contracts())
    channel = doc["channels"]["appointment.booked"]
    assert channel["address"] == "appointment.booked"
    assert channel["bindings"]["amqp"]["exchange"] == {
        "name": "healthflow.events", "type": "topic", "durable": True, "autoDelete": False,
        "vhost": "/"}
    ops = {k: v for k, v in doc["operations"].items() if k.endswith(".appointment.booked")}
    assert {k: v["action"] for k, v in ops.items()} == {
        "appointment.send.appointment.booked": "send",
        "audit.receive.appointment.booked": "receive",
        "patient.receive.appointment.booked": "receive"}
    assert all(op["action"] in ("send", "receive") for op in doc["operations"].values())
    assert sum(op["action"] == "send" for op in doc["operations"].values()) == len(contracts())


def test_every_reference_resolves_and_schemas_are_hoisted() -> None:
    doc = asyncapi.document({})
    for ref in refs(doc):
        assert resolve(doc, ref) is not None
    schemas = doc["components"]["schemas"]
    assert {"AppointmentBooked", "DoctorScheduleChanged", "ScheduleWindow", "Fee"} <= set(schemas)
    assert not any("$defs" in schema for schema in schemas.values())
    message = doc["components"]["messages"]["doctor.schedule_changed"]
    assert message["contentType"] == "application/cloudevents+json"
    assert message["x-healthflow-version"] == 1


def test_the_shipped_document_loads() -> None:
    doc = asyncapi.load()
    assert doc["asyncapi"] == "3.0.0" and set(doc["channels"]) == set(contracts())
