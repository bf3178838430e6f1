"""The records consumer on the real RabbitMQ (a virtual host of this test's own).

Appointment events are published as the appointment service's relay publishes
them (CloudEvents, routing key = type, payload per contract); delivery is
at-least-once and unordered, so a completion that overtakes its check-in is
retried until the check-in has been applied, and a payload that breaks its
contract is parked at once.
"""

from __future__ import annotations

from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.rabbit.transport import RabbitTransport
from healthflow.contracts import appointment as appt
from healthflow.devkit.testing import TokenFactory, eventually, running_app
from healthflow.records.app import create_app

from .conftest import Records, appointment_event, settings_for


async def test_check_in_and_completion_arrive_out_of_order_over_rabbitmq(
        mongodb_url: str, unique_name: str, fresh_amqp_url: str, tokens: TokenFactory,
        s3_env: dict[str, str]) -> None:
    consuming = RabbitTransport(fresh_amqp_url, connection_name="records-test")
    publisher = RabbitTransport(fresh_amqp_url, connection_name="records-test-publisher")
    app = create_app(settings_for(mongodb_url, unique_name, s3_env, transport="rabbitmq",
                                  amqp_url=fresh_amqp_url), transport=consuming)
    app.state.verifier = tokens.verifier()
    try:
        async with running_app(app) as client:
            await publisher.connect()
            records = Records(client, app.state.runtime, tokens, publisher)
            pid = await records.register()
            completed = appointment_event(appt.AppointmentCompleted, "a-r", pid, "doc-r")
            await records.send(completed)  # overtakes its check-in
            checked_in = appointment_event(appt.AppointmentCheckedIn, "a-r", pid, "doc-r")
            await records.send(checked_in)
            await records.send(checked_in)  # redelivered
            db = app.state.runtime.db

            async def finished() -> bool:
                doc = await db["encounters"].find_one({"appointment_id": "a-r"})
                return doc is not None and doc["status"] == "finished"

            await eventually(finished, within=20, message="the completion was never applied")
            assert await db["encounters"].count_documents({}) == 1
            assert len(await records.outbox("encounter.started")) == 1
            assert len(await records.outbox("encounter.finished")) == 1

            broken = CloudEvent(source="/healthflow/appointment", type="appointment.checked_in",
                                data={"appointment_id": "a-x", "patient_id": pid})
            await publisher.publish(broken)

            async def parked() -> bool:
                return (await consuming.queue_depths("records"))["dlq"] == 1

            await eventually(parked, within=20, message="a broken payload was not parked")
            assert await db["encounters"].count_documents({"appointment_id": "a-x"}) == 0
    finally:
        await publisher.close()
        await consuming.close()
