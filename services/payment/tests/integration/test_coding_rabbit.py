"""``encounter.coded`` on the real RabbitMQ (a virtual host of this test's own): the
records' revisions delivered out of order and again, as at-least-once unordered
delivery may; the payment service keeps the newest."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.rabbit.transport import RabbitTransport
from healthflow.contracts.records import EncounterCoded
from healthflow.devkit.embedded import EmbeddedStripe
from healthflow.devkit.testing import TokenFactory, eventually, running_app
from healthflow.payment.app import create_app
from healthflow.payment.settings import Settings

from .test_invoices import FLU, ICD10, LAB

HYPERTENSION = {"system": ICD10, "code": "I10", "display": "Essential (primary) hypertension"}


def coded(encounter_id: str, revision: int, diagnoses: list[dict[str, str]]) -> CloudEvent:
    return CloudEvent(
        id=str(uuid.uuid4()), source="/healthflow/records", type="encounter.coded",
        subject=f"encounter/{encounter_id}", time=datetime.now(UTC),
        data=EncounterCoded(encounter_id=encounter_id, patient_id="p-mq", appointment_id=None,
                            hospital_id=LAB, revision=revision, diagnoses=diagnoses,
                            procedures=[], coded_at=datetime.now(UTC)).model_dump(mode="json"))


async def test_the_newest_revision_wins_over_rabbitmq(
        mongodb_url: str, unique_name: str, fresh_amqp_url: str, tokens: TokenFactory,
        stripe_server: EmbeddedStripe, s3_env: dict[str, str]) -> None:
    consuming = RabbitTransport(fresh_amqp_url, connection_name="payment-test")
    publisher = RabbitTransport(fresh_amqp_url, connection_name="payment-test-publisher")
    settings = Settings(mongodb_url=mongodb_url, mongodb_database=f"payment_{unique_name}",
                        transport="rabbitmq", amqp_url=fresh_amqp_url,
                        stripe_api_base=stripe_server.url,
                        stripe_webhook_secret=stripe_server.webhook_secret,
                        s3_endpoint_url=s3_env["S3_ENDPOINT_URL"],
                        s3_access_key=s3_env["S3_ACCESS_KEY"],
                        s3_secret_key=s3_env["S3_SECRET_KEY"], s3_region=s3_env["S3_REGION"],
                        s3_bucket=f"pay-mq-{unique_name.replace('_', '-').lower()}")
    app = create_app(settings, transport=consuming)
    app.state.verifier = tokens.verifier()
    try:
        async with running_app(app):
            await publisher.connect()
            db = app.state.runtime.db
            newest = coded("enc-mq", 2, [FLU, HYPERTENSION])
            late = coded("enc-mq", 1, [FLU])
            for event in (newest, late, newest, late):  # out of order, and again
                await publisher.publish(event)

            async def both_handled() -> bool:
                return await db["inbox"].count_documents(
                    {"_id": {"$in": [newest.id, late.id]}}) == 2

            await eventually(both_handled, within=20, message="encounter.coded not consumed")
            kept = await db["encounter_codes"].find_one({"_id": "enc-mq"})
            assert (kept["version"], [d["code"] for d in kept["diagnoses"]]) == (
                2, ["J06.9", "I10"])
            assert await db["encounter_codes"].count_documents({}) == 1
    finally:
        await publisher.close()
        await consuming.close()
