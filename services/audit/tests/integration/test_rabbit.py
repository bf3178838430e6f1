"""The audit service on the real RabbitMQ transport (its own vhost)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import REGISTRY

from healthflow.audit import store
from healthflow.audit.app import create_app
from healthflow.audit.settings import Settings
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.rabbit.transport import RabbitTransport
from healthflow.devkit.testing import TokenFactory, running_app


def handled(type_: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "healthflow_events_handled_total",
        {"service": "audit", "type": type_, "outcome": outcome})
    return value or 0.0


async def test_events_published_on_rabbitmq_are_chained_once(
    settings: Settings, amqp_url: str, tokens: TokenFactory, unique_name: str,
    make_event: Callable[..., CloudEvent], eventually: Callable[..., Awaitable[None]],
) -> None:
    consuming = RabbitTransport(amqp_url, connection_name="audit-test")
    publisher = RabbitTransport(amqp_url, connection_name="audit-test-publisher")
    app = create_app(settings.model_copy(update={"transport": "rabbitmq", "amqp_url": amqp_url}),
                     transport=consuming)
    app.state.verifier = tokens.verifier()
    events = [make_event(f"{unique_name}.kind{i % 3}.done", n=i) for i in range(20)]
    duplicate = events[4]
    try:
        async with running_app(app) as client:
            await publisher.connect()
            for event in events:
                await publisher.publish(event)
            await publisher.publish(duplicate)  # delivered twice: logged once
            headers = tokens.headers(roles=["compliance_officer"])

            async def all_logged() -> bool:
                head = (await client.get("/api/v1/audit/head", headers=headers)).json()
                return bool(head["length"] >= len(events))

            await eventually(all_logged, what="every event in the log")

            async def duplicate_seen() -> bool:
                return handled(duplicate.type, "duplicate") >= 1

            await eventually(duplicate_seen, what="the duplicate delivery handled")
            runtime = app.state.runtime
            ids = [d["event_id"] async for d in runtime.db[store.ENTRIES].find().sort("_id", 1)]
            assert sorted(ids) == sorted(e.id for e in events)  # each exactly once
            result = (await client.get("/api/v1/audit/verify", headers=headers)).json()
            assert (result["ok"], result["checked"]) == (True, len(events))
            assert await consuming.queue_depths("audit") == {"queue": 0, "dlq": 0}
    finally:
        await publisher.close()
        await consuming.close()
