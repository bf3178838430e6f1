"""One contract, two transports: RabbitMQ and in-process run the same tests.

Each test gets a transport from the parametrised ``transport`` fixture and a
``ServiceRuntime``-backed consumer where idempotency is at stake, so the
guarantees are shown end to end against the real broker and the real
MongoDB-protocol server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import aio_pika
import pytest

from healthflow.common import mongo
from healthflow.common.events.consumer import envelope_handler
from healthflow.common.events.envelope import EXCHANGE, CloudEvent
from healthflow.common.events.inprocess import InProcessTransport
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.events.rabbit.transport import RabbitTransport
from healthflow.common.events.transport import (
    PublishError,
    Subscription,
    Transport,
    UnknownEventType,
)
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import ServiceSettings
from healthflow.devkit.testing import eventually

DELAYS = (0.2, 0.4)


@pytest.fixture(params=["rabbitmq", "inprocess"])
async def transport(request, mongodb_url, unique_name):
    if request.param == "rabbitmq":
        amqp_url = request.getfixturevalue("fresh_amqp_url")
        t: Transport = RabbitTransport(amqp_url)
    else:
        t = InProcessTransport(mongo.get_database(mongodb_url, f"platform_{unique_name}"),
                               retry_poll_interval=0.05)
    await t.connect()
    yield t
    await t.close()


async def inject_raw(transport: Transport, service: str, routing_key: str, body: bytes) -> None:
    """Put bytes on the wire as a broken producer would (bypassing envelope validation)."""
    if isinstance(transport, RabbitTransport):
        connection = await aio_pika.connect(transport.amqp_url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(EXCHANGE)
            await exchange.publish(aio_pika.Message(body), routing_key=routing_key)
    else:
        assert isinstance(transport, InProcessTransport)
        await transport._deliver(transport._subscriptions[service], body, attempts=0)


def make_event(type_: str = "contract.happened", n: int = 0) -> CloudEvent:
    return CloudEvent(source="/healthflow/contract", type=type_, subject=str(n))


async def test_published_event_reaches_every_matching_subscription_once(transport, unique_name):
    got: dict[str, list[str]] = {"a": [], "b": [], "c": []}

    def recorder(name: str):
        async def handler(event: CloudEvent) -> None:
            got[name].append(event.id)
        return handler

    await transport.subscribe(Subscription(f"{unique_name}a", ["contract.*"], recorder("a")))
    await transport.subscribe(Subscription(f"{unique_name}b", ["#"], recorder("b")))
    await transport.subscribe(Subscription(f"{unique_name}c", ["other.*"], recorder("c")))
    events = [make_event(n=i) for i in range(20)]
    for e in events:
        await transport.publish(e)
    await eventually(lambda: len(got["a"]) == 20 and len(got["b"]) == 20)
    await asyncio.sleep(0.3)
    assert sorted(got["a"]) == sorted(e.id for e in events)
    assert sorted(got["b"]) == sorted(e.id for e in events)
    assert got["c"] == []
    assert transport.consuming


async def test_unroutable_event_is_refused(transport):
    with pytest.raises(PublishError):
        await transport.publish(make_event("nobody.listens"))


async def test_transient_failure_is_retried_then_handled(transport, unique_name):
    calls: list[str] = []

    async def flaky(event: CloudEvent) -> None:
        calls.append(event.id)
        if len(calls) < 3:
            raise RuntimeError("database hiccup")

    service = f"{unique_name}flaky"
    await transport.subscribe(Subscription(service, ["contract.*"], flaky, retry_delays=DELAYS))
    await transport.publish(make_event())
    await eventually(lambda: len(calls) == 3)
    await asyncio.sleep(0.6)
    assert len(calls) == 3
    assert (await transport.queue_depths(service))["dlq"] == 0


async def test_always_failing_handler_parks_then_replay_reaches_only_that_service(
    transport, unique_name
):
    broken_calls: list[str] = []
    healthy_calls: list[str] = []
    fixed = False

    async def broken(event: CloudEvent) -> None:
        broken_calls.append(event.id)
        if not fixed:
            raise ValueError("bug in handler")

    async def healthy(event: CloudEvent) -> None:
        healthy_calls.append(event.id)

    broken_service, healthy_service = f"{unique_name}broken", f"{unique_name}healthy"
    await transport.subscribe(Subscription(broken_service, ["contract.*"], broken, DELAYS))
    await transport.subscribe(Subscription(healthy_service, ["contract.*"], healthy, DELAYS))
    event = make_event()
    await transport.publish(event)

    async def parked() -> bool:
        return (await transport.queue_depths(broken_service))["dlq"] == 1

    await eventually(parked)
    assert len(broken_calls) == 1 + len(DELAYS)
    [letter] = await transport.dead_letters(broken_service)
    assert letter.id == event.id
    assert letter.reason == "handler-failed"
    assert letter.attempts == len(DELAYS)
    assert "bug in handler" in letter.error
    assert letter.summary()["type"] == "contract.happened"
    assert "data" not in letter.summary()

    fixed = True
    assert await transport.replay(broken_service) == 1
    await eventually(lambda: len(broken_calls) == 2 + len(DELAYS))
    await eventually(parked_empty(transport, broken_service))
    await asyncio.sleep(0.3)
    assert healthy_calls == [event.id], "replay must not reach other services"


def parked_empty(transport: Transport, service: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await transport.queue_depths(service))["dlq"] == 0
    return check


async def test_malformed_and_unknown_messages_are_parked_at_once(transport, unique_name):
    calls: list[str] = []

    async def handler(event: CloudEvent) -> None:
        calls.append(event.type)
        if event.type != "contract.happened":
            raise UnknownEventType(event.type)

    service = f"{unique_name}strict"
    await transport.subscribe(Subscription(service, ["contract.#"], handler, DELAYS))
    await inject_raw(transport, service, "contract.happened", b"{not json")
    await transport.publish(make_event("contract.surprise"))

    async def two_parked() -> bool:
        return (await transport.queue_depths(service))["dlq"] == 2

    await eventually(two_parked)
    reasons = sorted(letter.reason for letter in await transport.dead_letters(service))
    assert reasons == ["malformed", "unknown-type"]
    assert calls == ["contract.surprise"], "unknown types are not retried"


async def test_close_drains_the_handler_in_flight(transport, unique_name):
    started, finished = asyncio.Event(), asyncio.Event()

    async def slow(event: CloudEvent) -> None:
        started.set()
        await asyncio.sleep(0.5)
        finished.set()

    await transport.subscribe(Subscription(f"{unique_name}slow", ["contract.*"], slow))
    publishing = asyncio.create_task(transport.publish(make_event()))
    await asyncio.wait_for(started.wait(), 10)
    await transport.close()
    assert finished.is_set(), "close() returned before the in-flight handler finished"
    if isinstance(transport, InProcessTransport):
        await publishing
    else:
        publishing.cancel()
    await transport.connect()  # the fixture closes it again


async def test_redelivered_event_has_one_effect(transport, mongodb_url, unique_name):
    """The inbox makes consumers idempotent on either transport."""
    settings = ServiceSettings(service_name=unique_name, mongodb_url=mongodb_url,
                               transport="inprocess", retry_delays=list(DELAYS))

    @envelope_handler  # test types have no contract
    async def count_effect(event: CloudEvent, uow: UnitOfWork) -> None:
        await uow.db.effects.update_one({"_id": "counter"}, {"$inc": {"n": 1}},
                                        upsert=True, session=uow.session)

    runtime = ServiceRuntime(settings, handlers={"contract.*": count_effect},
                             transport=transport)
    await runtime.start()
    try:
        event = make_event()
        await transport.publish(event)
        await transport.publish(event)  # the same envelope, as a redelivery would be
        await transport.publish(make_event(n=2))

        async def two_handled() -> bool:
            return await runtime.db.inbox.count_documents({}) == 2

        await eventually(two_handled)
        await asyncio.sleep(0.3)
        assert (await runtime.db.effects.find_one({"_id": "counter"}))["n"] == 2
    finally:
        await runtime.stop()


def test_envelope_survives_the_wire_byte_for_byte():
    event = make_event()
    assert json.loads(event.to_json_bytes())["id"] == event.id


async def test_broadcast_gives_every_process_its_copy_and_a_failure_is_not_retried(
        transport, unique_name):
    """Two broadcast subscribers stand for two replicas' in-memory state: each hears every
    matching event (a service's queue would give it to one); the bound broadcast makes the
    type routable; a failing broadcast handler is logged, never retried nor parked."""
    got: dict[str, list[str]] = {"one": [], "two": []}
    failures: list[str] = []

    def recorder(name: str):
        async def handler(event: CloudEvent) -> None:
            got[name].append(event.id)
        return handler

    async def failing(event: CloudEvent) -> None:
        failures.append(event.id)
        raise RuntimeError("broken")

    kind = f"broadcast{unique_name.replace('-', '').replace('_', '')}"
    await transport.subscribe_broadcast(f"{unique_name}.one", [f"{kind}.*"], recorder("one"))
    await transport.subscribe_broadcast(f"{unique_name}.two", [f"{kind}.*"], recorder("two"))
    await transport.subscribe_broadcast(f"{unique_name}.bad", [f"{kind}.*"], failing)
    events = [make_event(f"{kind}.happened", n=i) for i in range(5)]
    for e in events:
        await transport.publish(e)  # routable: only the broadcasts are bound
    ids = [e.id for e in events]
    await eventually(lambda: got["one"] == ids and got["two"] == ids, within=10)
    await eventually(lambda: failures == ids, within=10)
    await asyncio.sleep(0.5)
    assert failures == ids  # once each: no retry
    assert await transport.dead_letters(f"{unique_name}.bad") == []
