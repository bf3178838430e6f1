"""Per-service RabbitMQ users against the real broker (a vhost of its own per module).

The users come from :func:`healthflow.devkit.bususers.ensure_service_users`, as a
platform start makes them; the broker, not our code, refuses what a user may not do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aio_pika
import aiormq.exceptions
import pytest

from healthflow.common.events.envelope import EXCHANGE, CloudEvent
from healthflow.common.events.rabbit.messages import CONTENT_TYPE
from healthflow.common.events.rabbit.topology import declare_direct_exchange, direct_exchange_name
from healthflow.common.events.rabbit.transport import RabbitTransport
from healthflow.common.events.transport import PublishError, Subscription
from healthflow.devkit import busaccess, bususers
from healthflow.devkit.testing import rabbitmq_vhost

PROBE = "test.probe"  # a queue the admin account binds to see what reaches the exchange


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """(the admin URL of a fresh vhost, service → its own AMQP URL on that vhost)."""
    var = tmp_path_factory.mktemp("var")
    with rabbitmq_vhost() as admin:
        yield admin, bususers.ensure_service_users(
            admin, var, ["patient", "audit", "auth"],
            retry_delays=(*busaccess.RETRY_DELAYS, *RETRIES))


RETRIES = (0.1, 0.2)  # seconds: the retry test's delays, declared by the platform too


def _event(type_: str, source: str) -> CloudEvent:
    return CloudEvent(source=source, type=type_, data={"id": "p-1"})


async def _probe(admin: str, *keys: str) -> int:
    """Declare the probe queue bound to ``keys``; how many messages it holds now."""
    connection = await aio_pika.connect(admin)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        queue = await channel.declare_queue(PROBE, durable=True)
        for key in keys:
            await queue.bind(exchange, routing_key=key)
        result = await channel.declare_queue(PROBE, passive=True)
        return int(result.declaration_result.message_count or 0)


async def test_a_service_may_not_publish_another_services_event_type(
        bus: tuple[str, dict[str, str]]) -> None:
    admin, urls = bus
    assert await _probe(admin, "appointment.booked") == 0
    connection = await aio_pika.connect(urls["patient"])
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EXCHANGE, ensure=False)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match="ACCESS_REFUSED"):
            await exchange.publish(aio_pika.Message(b"{}"), routing_key="appointment.booked")
    transport = RabbitTransport(urls["patient"], publish_timeout=10, platform_topology=True)
    await transport.connect()
    try:
        with pytest.raises(PublishError, match="ACCESS_REFUSED"):
            await transport.publish(_event("appointment.booked", "/healthflow/patient"))
    finally:
        await transport.close()
    assert await _probe(admin) == 0  # nothing reached a consumer's queue


async def test_a_service_publishes_its_own_event_types(bus: tuple[str, dict[str, str]]) -> None:
    admin, urls = bus
    before = await _probe(admin, "patient.registered")
    transport = RabbitTransport(urls["patient"], platform_topology=True)
    await transport.connect()
    try:
        await transport.publish(_event("patient.registered", "/healthflow/patient"))
    finally:
        await transport.close()
    assert await _probe(admin) == before + 1


async def _ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    return None


async def test_a_service_may_not_consume_or_bind_another_services_queue(
        bus: tuple[str, dict[str, str]]) -> None:
    admin, urls = bus
    connection = await aio_pika.connect(admin)
    async with connection:
        await (await connection.channel()).declare_queue("healthflow.audit", durable=True)
    connection = await aio_pika.connect(urls["patient"])
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue("healthflow.audit", ensure=False)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await queue.consume(_ignore)
    connection = await aio_pika.connect(urls["patient"])
    async with connection:  # its own queue, but a binding key it does not subscribe with
        channel = await connection.channel()
        exchange = await channel.declare_exchange(EXCHANGE, passive=True)
        own = await channel.declare_queue("healthflow.patient", passive=True)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await own.bind(exchange, routing_key="prescription.issued")


async def _depth(admin: str, queue: str) -> int:
    connection = await aio_pika.connect(admin)
    async with connection:
        declared = await (await connection.channel()).declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)


async def test_a_service_may_not_put_a_message_into_another_services_queue_by_name(
        bus: tuple[str, dict[str, str]]) -> None:
    """Not through the default exchange, another's direct exchange or a dead-letter route."""
    admin, urls = bus
    connection = await aio_pika.connect(admin)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue("healthflow.audit", durable=True)
        await declare_direct_exchange(channel, "audit")
    before = await _depth(admin, "healthflow.audit")
    connection = await aio_pika.connect(urls["patient"])
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match=r"amq\.default"):
            await channel.default_exchange.publish(aio_pika.Message(b"{}"),
                                                   routing_key="healthflow.audit")
        channel = await connection.channel(publisher_confirms=True)
        theirs = await channel.get_exchange(direct_exchange_name("audit"), ensure=False)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await theirs.publish(aio_pika.Message(b"{}"), routing_key="healthflow.audit")
        channel = await connection.channel()
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match="ACCESS_REFUSED"):
            await channel.declare_queue(  # a retry queue of its own dead-lettering into theirs
                "healthflow.patient.delay.1ms", durable=True,
                arguments={"x-message-ttl": 1, "x-dead-letter-exchange": "",
                           "x-dead-letter-routing-key": "healthflow.audit"})
    assert await _depth(admin, "healthflow.audit") == before  # nothing delivered


class _FlakyHandler:
    """Fails while ``failing``; records every event it is handed."""

    def __init__(self) -> None:
        self.failing = True
        self.seen: list[str] = []

    async def __call__(self, event: CloudEvent) -> None:
        self.seen.append(event.id)
        if self.failing:
            raise RuntimeError("not yet")


async def _until(check: Callable[[], Awaitable[bool]], what: str, within: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_retries_parking_and_replay_work_under_the_services_own_user(
        bus: tuple[str, dict[str, str]]) -> None:
    _, urls = bus
    handler = _FlakyHandler()
    consumer = RabbitTransport(urls["patient"], platform_topology=True)
    publisher = RabbitTransport(urls["auth"], platform_topology=True)
    await consumer.connect()
    await publisher.connect()
    try:
        await consumer.subscribe(Subscription("patient", ["user.registered"], handler,
                                              retry_delays=RETRIES))
        event = _event("user.registered", "/healthflow/auth")
        await publisher.publish(event)

        async def parked() -> bool:
            return (await consumer.queue_depths("patient"))["dlq"] == 1
        await _until(parked, "the event parked after two retries")
        assert handler.seen == [event.id] * 3
        [letter] = await consumer.dead_letters("patient")
        assert letter.id == event.id and letter.attempts == 2
        handler.failing = False
        assert await consumer.replay("patient") == 1

        async def handled() -> bool:
            return len(handler.seen) == 4
        await _until(handled, "the replayed event handled")
        assert await consumer.queue_depths("patient") == {"queue": 0, "dlq": 0}
    finally:
        await publisher.close()
        await consumer.close()


async def test_a_retry_queue_of_the_earlier_release_still_returns_what_it_holds(
        bus: tuple[str, dict[str, str]]) -> None:
    """Queues declared before the direct exchange dead-letter through the default exchange:
    the broker does that itself, so messages in flight across the upgrade come back."""
    admin, urls = bus
    old = "healthflow.patient.retry.100ms"
    event = _event("user.registered", "/healthflow/auth")
    connection = await aio_pika.connect(admin)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue("healthflow.patient", durable=True)
        await channel.declare_queue(old, durable=True, arguments={
            "x-message-ttl": 100, "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "healthflow.patient"})
        await channel.default_exchange.publish(
            aio_pika.Message(event.to_json_bytes(), message_id=event.id,
                             content_type=CONTENT_TYPE), routing_key=old)
    handler = _FlakyHandler()
    handler.failing = False
    consumer = RabbitTransport(urls["patient"], platform_topology=True)
    await consumer.connect()
    try:
        await consumer.subscribe(Subscription("patient", ["user.registered"], handler))

        async def handled() -> bool:
            return handler.seen == [event.id]
        await _until(handled, "the message of the old retry queue handled")
    finally:
        await consumer.close()


async def test_a_service_user_may_not_open_another_vhost(
        bus: tuple[str, dict[str, str]]) -> None:
    _, urls = bus
    elsewhere = urls["audit"].rsplit("/", 1)[0] + "/"
    with pytest.raises(aiormq.exceptions.AMQPError):  # the broker closes it: NOT_ALLOWED
        await aio_pika.connect(elsewhere)


def test_users_are_reused_with_their_passwords(bus: tuple[str, dict[str, str]],
                                               tmp_path: Path) -> None:
    admin, urls = bus
    again = bususers.ensure_service_users(admin, tmp_path, ["patient"])
    assert again["patient"] != urls["patient"]  # another var dir: a new password …
    stored = json.loads((tmp_path / bususers.CREDENTIALS_FILE).read_text())
    assert bususers.ensure_service_users(admin, tmp_path, ["patient"]) == again  # … then kept
    assert list(stored) == [busaccess.user_name("patient", bususers.vhost_of(admin))]
    assert (tmp_path / bususers.CREDENTIALS_FILE).stat().st_mode & 0o077 == 0


def test_the_committed_policy_is_current() -> None:
    """``bus_access.json`` is what the contracts and consumers give (run `make docs`)."""
    assert busaccess.load() == busaccess.collect()


def test_topic_write_is_exactly_the_contracts_types() -> None:
    access = busaccess.service_access("patient", ["patient.registered"], ["user.*", "#"])
    assert access.topic_write == r"^(patient\.registered)$"
    assert access.topic_read == r"^(\#|user\.\*)$"
    assert busaccess.service_access("audit", [], ["#"]).topic_write == "^$"


def test_without_rabbitmqctl_the_start_stops_with_the_way_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no rabbitmqctl: never a silent guest
    with pytest.raises(bususers.BusUsersError, match=f"{bususers.OPT_OUT}=shared"):
        bususers.ensure_service_users("amqp://guest:guest@127.0.0.1:5672/x", tmp_path)


async def test_the_opt_out_keeps_the_shared_account(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    from healthflow.devkit.console import Console
    from healthflow.devkit.discovery import Component

    monkeypatch.setenv(bususers.OPT_OUT, "shared")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert await bususers.for_platform("amqp://guest:guest@127.0.0.1:5672/", tmp_path,
                                       [Component("patient", 8105)], Console()) == {}
    assert not (tmp_path / bususers.CREDENTIALS_FILE).exists()


def test_service_urls_keep_host_port_and_vhost() -> None:
    url = bususers.service_url("amqp://guest:guest@10.0.0.5:5673/hf%2Dx?heartbeat=30",
                               "healthflow-patient.hf-x", "p/w")
    assert url == "amqp://healthflow-patient.hf-x:p%2Fw@10.0.0.5:5673/hf%2Dx?heartbeat=30"
    assert bususers.vhost_of(url) == "hf-x"
    assert bususers.vhost_of("amqp://u:p@h:5672/") == "/"


def test_a_remote_broker_or_an_unknown_service_is_refused_with_the_way_out(
        tmp_path: Path) -> None:
    with pytest.raises(bususers.BusUsersError, match=r"users\.sh"):
        bususers.ensure_service_users("amqp://u:p@rabbitmq.internal:5672/", tmp_path)
    with pytest.raises(bususers.BusUsersError, match="make docs"):
        bususers.ensure_service_users("amqp://guest:guest@127.0.0.1:5672/", tmp_path,
                                      ["patient", "newservice"])
