"""The prescription consumer on the real RabbitMQ (a virtual host of this test's own).

Encounter and allergy events are published as the records and patient relays publish
them (CloudEvents, routing key = type, payload per contract); a redelivery is a
no-op and a payload that breaks its contract is parked at once.
"""

from __future__ import annotations

from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.rabbit.transport import RabbitTransport
from healthflow.devkit.testing import TokenFactory, eventually, running_app
from healthflow.prescription.app import create_app

from .conftest import Pharmacy, encounter_started, settings_for


async def test_encounters_and_allergies_arrive_over_rabbitmq(
        mongodb_url: str, unique_name: str, fresh_amqp_url: str, tokens: TokenFactory) -> None:
    consuming = RabbitTransport(fresh_amqp_url, connection_name="prescription-test")
    publisher = RabbitTransport(fresh_amqp_url, connection_name="prescription-test-publisher")
    app = create_app(settings_for(mongodb_url, unique_name, transport="rabbitmq",
                                  amqp_url=fresh_amqp_url), transport=consuming)
    app.state.verifier = tokens.verifier()
    try:
        async with running_app(app) as client:
            await publisher.connect()
            pharmacy = Pharmacy(client, app.state.runtime, tokens, publisher)
            started = encounter_started("enc-r", "pat-r", "doc-r")
            await pharmacy.send(started)
            await pharmacy.send(started)  # redelivered
            await pharmacy.allergies("pat-r", 1, "Sulfa")
            await pharmacy.encounter("pat-r", "doc-r")
            db = app.state.runtime.db
            assert await db["encounters"].count_documents({"_id": "enc-r"}) == 1
            refused = await pharmacy.prescribe("doc-r", "enc-r", medication={
                "text": "Co-trimoxazole"})
            assert refused.status_code == 409, refused.text
            assert refused.json()["conflicts"][0]["kind"] == "allergy-class"

            broken = CloudEvent(source="/healthflow/patient", type="patient.allergies_changed",
                                data={"patient_id": "pat-r", "allergies": "penicillin"})
            await publisher.publish(broken)

            async def parked() -> bool:
                return (await consuming.queue_depths("prescription"))["dlq"] == 1

            await eventually(parked, within=20, message="a broken payload was not parked")
            kept = await db["allergies"].find_one({"_id": "pat-r"})
            assert kept is not None and kept["allergies"][0]["substance"] == "Sulfa"
    finally:
        await publisher.close()
        await consuming.close()
