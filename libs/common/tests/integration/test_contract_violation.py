"""A payload that breaks its contract is parked at once, with the validation error.

The consumer validates each delivery's ``data`` against the contract of its type
(:mod:`healthflow.contracts`) before the handler runs; a violation is not retried
(retrying cannot fix a payload) and lands in the service's dead-letter queue with
reason ``contract-violation``, listed by ``healthflow-deadletters list <service>``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from healthflow.common import mongo
from healthflow.common.events import cli
from healthflow.common.events.consumer import Received
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.inprocess import InProcessTransport
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import ServiceSettings
from healthflow.contracts.appointment import AppointmentBooked
from healthflow.devkit.testing import eventually


def booked_data(**changes: Any) -> dict[str, Any]:
    start = datetime(2027, 3, 1, 9, tzinfo=UTC)
    valid = AppointmentBooked(
        appointment_id="a1", patient_id="p-secret-1", doctor_id="d1", doctor_user_id="d1",
        location_id="h1", start=start, end=start + timedelta(minutes=30),
        timezone="Europe/Berlin", mode="in_person", status="booked", booked_by="p-secret-1",
        booked_by_role="patient",
    ).model_dump(mode="json")
    return {k: v for k, v in {**valid, **changes}.items() if v is not ...}


def event(**changes: Any) -> CloudEvent:
    return CloudEvent(source="/healthflow/appointment", type="appointment.booked",
                      data=booked_data(**changes))


async def start_consumer(settings: ServiceSettings, **kwargs: Any
                         ) -> tuple[ServiceRuntime, list[Received[AppointmentBooked]]]:
    seen: list[Received[AppointmentBooked]] = []

    async def on_booked(received: Received[AppointmentBooked], uow: UnitOfWork) -> None:
        seen.append(received)

    runtime = ServiceRuntime(settings, handlers={"appointment.booked": on_booked}, **kwargs)
    await runtime.start()
    return runtime, seen


async def test_a_violation_is_parked_at_once_with_its_reason_on_rabbitmq(
    fresh_amqp_url: str, mongodb_url: str, unique_name: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = ServiceSettings(service_name=unique_name, mongodb_url=mongodb_url,
                               amqp_url=fresh_amqp_url, transport="rabbitmq",
                               retry_delays=[0.2, 0.2, 0.2])
    runtime, seen = await start_consumer(settings)
    try:
        good = event(extra_field_from_a_newer_publisher=1)  # tolerated: ignored
        bad = event(patient_id=..., start="not a time")
        await runtime.transport.publish(bad)
        await runtime.transport.publish(good)
        await eventually(lambda: [r.id for r in seen] == [good.id], message="good handled")
        assert isinstance(seen[0].data, AppointmentBooked) and seen[0].data.patient_id

        async def parked() -> bool:
            return (await runtime.transport.queue_depths(unique_name))["dlq"] == 1

        await eventually(parked, message="the violation to be parked")
    finally:
        await runtime.stop()

    monkeypatch.setenv("AMQP_URL", fresh_amqp_url)
    monkeypatch.setenv("TRANSPORT", "rabbitmq")
    capsys.readouterr()
    assert await asyncio.to_thread(cli.main, ["list", unique_name]) == 0
    [letter] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert letter["id"] == bad.id and letter["type"] == "appointment.booked"
    assert letter["reason"] == "contract-violation"
    assert letter["attempts"] == 0  # never retried
    assert letter["error"] == (
        "ContractViolation: appointment.booked v1: 2 error(s): "
        "patient_id: missing; start: datetime_from_date_parsing"
    )
    assert "p-secret-1" not in json.dumps(letter) and "not a time" not in letter["error"]
    assert [r.id for r in seen] == [good.id]


async def test_a_violation_is_parked_at_once_in_process(mongodb_url: str, unique_name: str
                                                        ) -> None:
    transport = InProcessTransport(mongo.get_database(mongodb_url, f"platform_{unique_name}"),
                                   retry_poll_interval=0.05)
    await transport.connect()
    settings = ServiceSettings(service_name=unique_name, mongodb_url=mongodb_url,
                               transport="inprocess", retry_delays=[0.1])
    runtime, seen = await start_consumer(settings, transport=transport)
    try:
        bad = event(doctor_id=42)
        await transport.publish(bad)
        [letter] = await transport.dead_letters(unique_name)
        assert (letter.id, letter.reason, letter.attempts) == (bad.id, "contract-violation", 0)
        assert letter.error.endswith("1 error(s): doctor_id: string_type")
        assert seen == []
    finally:
        await runtime.stop()
        await transport.close()


async def test_an_event_from_another_source_than_its_publisher_is_parked_and_counted(
        mongodb_url: str, unique_name: str) -> None:
    """``appointment.booked`` is the appointment service's: the same valid payload from
    any other ``source`` (another service, or anyone on the bus) is never applied."""
    from healthflow.common import metrics

    transport = InProcessTransport(mongo.get_database(mongodb_url, f"platform_{unique_name}"),
                                   retry_poll_interval=0.05)
    await transport.connect()
    settings = ServiceSettings(service_name=unique_name, mongodb_url=mongodb_url,
                               transport="inprocess", retry_delays=[0.1])
    runtime, seen = await start_consumer(settings, transport=transport)
    counted = metrics.EVENTS_HANDLED.labels(unique_name, "appointment.booked",
                                            "foreign_source")
    try:
        forged = event().model_copy(update={"source": "/healthflow/payment"})
        genuine = event()
        await transport.publish(forged)
        await transport.publish(genuine)
        await eventually(lambda: [r.id for r in seen] == [genuine.id],
                         message="the genuine event to be handled")
        [letter] = await transport.dead_letters(unique_name)
        assert (letter.id, letter.reason, letter.attempts) == (forged.id, "foreign-source", 0)
        assert letter.error == ("ForeignSource: appointment.booked is published by "
                                "appointment, not by '/healthflow/payment'")
        assert counted._value.get() == 1
    finally:
        await runtime.stop()
        await transport.close()
