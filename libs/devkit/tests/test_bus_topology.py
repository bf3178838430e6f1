"""What a service's RabbitMQ user may not do to the topology, against the real broker.

The platform declares ``healthflow.events``, each service's direct exchange, queues and
the direct exchange's bindings (:func:`healthflow.devkit.busaccess.topology`); a service's
own user (:mod:`healthflow.devkit.bususers`) may only check they exist, bind its queue to
``healthflow.events`` with the keys it subscribes with, publish and consume. The broker
refuses the rest with ``ACCESS_REFUSED`` (403).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aio_pika
import aiormq.exceptions
import pytest

from healthflow.common.events.envelope import EXCHANGE, CloudEvent
from healthflow.common.events.rabbit.topology import TopologyMissing, direct_exchange_name
from healthflow.common.events.rabbit.transport import RabbitTransport
from healthflow.common.events.transport import Subscription
from healthflow.devkit import bususers
from healthflow.devkit.testing import rabbitmq_vhost

Refused = aiormq.exceptions.ChannelAccessRefused


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """(the admin URL of a fresh vhost, service → its own AMQP URL on that vhost)."""
    var = tmp_path_factory.mktemp("var")
    with rabbitmq_vhost() as admin:
        yield admin, bususers.ensure_service_users(admin, var, ["patient", "audit", "auth"])


async def _channel(url: str) -> tuple[aio_pika.abc.AbstractConnection,
                                      aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(url)
    return connection, await connection.channel()


async def _refused(url: str, what: str) -> None:
    """Run ``what`` (a method of this module's :class:`_Attempts`) on a fresh channel of
    ``url``; it must be refused with ACCESS_REFUSED."""
    connection, channel = await _channel(url)
    async with connection:
        with pytest.raises(Refused, match="ACCESS_REFUSED"):
            await getattr(_Attempts(channel), what)()


class _Attempts:
    """What a patient-service user tries (each on its own channel: a refusal closes it)."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel) -> None:
        self.channel = channel

    async def delete_the_shared_exchange(self) -> None:
        await self.channel.exchange_delete(EXCHANGE)

    async def redeclare_the_shared_exchange(self) -> None:
        await self.channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                            durable=True)

    async def delete_its_direct_exchange(self) -> None:
        await self.channel.exchange_delete(direct_exchange_name("patient"))

    async def delete_its_queue(self) -> None:
        await self.channel.queue_delete("healthflow.patient")

    async def declare_a_queue_dead_lettering_into_the_shared_exchange(self) -> None:
        await self.channel.declare_queue("healthflow.patient.delay.7ms", durable=True, arguments={
            "x-message-ttl": 7, "x-dead-letter-exchange": EXCHANGE,
            "x-dead-letter-routing-key": "appointment.booked"})

    async def declare_an_exchange_of_its_own(self) -> None:
        await self.channel.declare_exchange("healthflow.patient.mine",
                                            aio_pika.ExchangeType.FANOUT)

    async def forward_its_direct_exchange_into_the_shared_one(self) -> None:
        """Would pass anything published to the direct exchange (no topic permissions
        there) into ``healthflow.events`` under any routing key."""
        events = await self.channel.get_exchange(EXCHANGE, ensure=False)
        direct = await self.channel.get_exchange(direct_exchange_name("patient"), ensure=False)
        await events.bind(direct, routing_key="appointment.booked")

    async def forward_the_shared_exchange_into_anothers_exchange(self) -> None:
        audit = await self.channel.get_exchange(direct_exchange_name("audit"), ensure=False)
        events = await self.channel.get_exchange(EXCHANGE, ensure=False)
        await audit.bind(events, routing_key="patient.registered")

    async def forward_anothers_exchange_into_its_own(self) -> None:
        own = await self.channel.get_exchange(direct_exchange_name("patient"), ensure=False)
        audit = await self.channel.get_exchange(direct_exchange_name("audit"), ensure=False)
        await own.bind(audit, routing_key="healthflow.audit")


@pytest.mark.parametrize("what", [name for name in vars(_Attempts) if not name.startswith("_")])
async def test_a_service_may_not_change_the_topology(bus: tuple[str, dict[str, str]],
                                                     what: str) -> None:
    admin, urls = bus
    await _refused(urls["patient"], what)
    connection, channel = await _channel(admin)
    async with connection:  # all still there
        await channel.declare_exchange(EXCHANGE, passive=True)
        await channel.declare_exchange(direct_exchange_name("patient"), passive=True)
        await channel.declare_queue("healthflow.patient", passive=True)


async def test_the_forged_type_does_not_reach_a_consumer(
        bus: tuple[str, dict[str, str]]) -> None:
    """Publishing another's type into its own direct exchange reaches nobody (no binding
    forwards it to ``healthflow.events``)."""
    admin, urls = bus
    connection, channel = await _channel(admin)
    async with connection:
        probe = await channel.declare_queue("test.forged", exclusive=True)
        await probe.bind(EXCHANGE, routing_key="#")
        connection_, channel_ = await _channel(urls["patient"])
        async with connection_:
            direct = await channel_.get_exchange(direct_exchange_name("patient"), ensure=False)
            await direct.publish(aio_pika.Message(b"{}"), routing_key="appointment.booked")
        await asyncio.sleep(0.2)
        assert (await channel.declare_queue("test.forged", passive=True)
                ).declaration_result.message_count == 0


async def _ignore(event: CloudEvent) -> None:
    return None


async def test_a_service_starts_on_the_platforms_topology_and_stops_without_it(
        bus: tuple[str, dict[str, str]]) -> None:
    _, urls = bus
    transport = RabbitTransport(urls["patient"], platform_topology=True)
    await transport.connect()
    try:
        await transport.subscribe(Subscription("patient", ["user.registered"], _ignore))
        assert transport.consuming
    finally:
        await transport.close()
    transport = RabbitTransport(urls["audit"], platform_topology=True)
    await transport.connect()
    try:  # a retry delay the platform was not told about
        with pytest.raises(TopologyMissing, match=r"healthflow\.audit\.delay\.2500ms"):
            await transport.subscribe(Subscription("audit", ["#"], _ignore,
                                                   retry_delays=(2.5,)))
    finally:
        await transport.close()
