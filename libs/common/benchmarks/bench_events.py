"""Raw confirmed publish rate of aio-pika vs the outbox relay's publish rate, and vs
the raw rate of the database operations one relayed record needs.

Both publishers send the same CloudEvents to the same broker with publisher
confirms and ``mandatory``; both keep up to 100 publishes in flight (the relay's
batch). The database ceiling is timed on the same server with the same indexes
and the same records: exactly the relay's statements, one batch after another,
without a broker (records committed here: one ``update_many`` marking a batch
sent; records claimed: the lease ``update_many``, the ``find`` of the leased
records, then the mark). Run by ``make bench``; alone: ``uv run python
libs/common/benchmarks/bench_events.py``.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta

import aio_pika

from healthflow.common import mongo
from healthflow.common.events.envelope import EXCHANGE, CloudEvent
from healthflow.common.events.outbox import (
    OUTBOX,
    OUTBOX_INDEXES,
    PENDING,
    UNLEASED,
    outbox_document,
)
from healthflow.common.events.rabbit.transport import RabbitTransport
from healthflow.common.events.relay import OutboxRelay
from healthflow.common.mongo import utcnow
from healthflow.devkit.benchmarking import (
    EmbeddedMongo,
    eventually,
    goal,
    rabbitmq_vhost,
    report,
    stopwatch,
)

N = int(os.environ.get("BENCH_EVENTS", "5000"))
WINDOW = 100


def events(n: int) -> list[CloudEvent]:
    return [
        CloudEvent(source="/healthflow/bench", type="bench.happened", subject=str(i),
                   data={"i": i, "note": "x" * 200})
        for i in range(n)
    ]


async def sink(amqp_url: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        queue = await channel.declare_queue("bench.sink", durable=True,
                                            arguments={"x-max-length": 1})
        await queue.bind(exchange, "#")


async def raw_publish_rate(amqp_url: str) -> float:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange(EXCHANGE)
        batch = events(N)
        with stopwatch() as elapsed:
            for start in range(0, N, WINDOW):
                await asyncio.gather(*(
                    exchange.publish(
                        aio_pika.Message(e.to_json_bytes(), message_id=e.id,
                                         delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                         content_type="application/cloudevents+json"),
                        routing_key=e.type, mandatory=True,
                    )
                    for e in batch[start:start + WINDOW]
                ))
    return N / elapsed[0]


async def relay_rate(amqp_url: str, mongodb_url: str, *, committed_here: bool) -> float:
    """Events/s from outbox record to confirmed publish and record marked sent.

    ``committed_here``: records are born leased to the running relay and handed to
    it after each commit (what ``ServiceRuntime.transact`` does); otherwise they
    are claimed by id after a notification (records written by another process).
    """
    db = mongo.get_database(mongodb_url, f"bench_relay_{int(committed_here)}")
    await mongo.ensure_indexes(db, OUTBOX_INDEXES)
    transport = RabbitTransport(amqp_url)
    await transport.connect()
    relay = OutboxRelay(db, transport, service="bench", batch_size=WINDOW)
    # A burst of commits (50 records per transaction) is already in the outbox;
    # timed: from handing it to the relay to every record confirmed and moved.
    owner, until = ((relay.owner, utcnow() + timedelta(seconds=300)) if committed_here
                    else (None, UNLEASED))
    records = [outbox_document(e, lease_owner=owner, lease_until=until) for e in events(N)]
    for start in range(0, N, 50):
        await db[OUTBOX].insert_many(records[start:start + 50])

    async def all_sent() -> bool:  # cheap: a partial index holds only what is left
        return await db[OUTBOX].count_documents(PENDING) == 0

    await relay.start()  # after the inserts: nothing is relayed before the clock starts

    with stopwatch() as elapsed:
        for start in range(0, N, 50):
            chunk = records[start:start + 50]
            if committed_here:
                relay.submit(chunk)
            else:
                relay.notify(d["_id"] for d in chunk)
        await eventually(all_sent, within=600, interval=0.05)
    await relay.stop()
    await transport.close()
    return N / elapsed[0]


async def database_rate(mongodb_url: str, *, claimed: bool) -> float:
    """Records/s through exactly the database statements the relay spends on them
    (its own methods, one batch after another, nothing published)."""
    db = mongo.get_database(mongodb_url, f"bench_relay_db_{int(claimed)}")
    await mongo.ensure_indexes(db, OUTBOX_INDEXES)
    relay = OutboxRelay(db, RabbitTransport("amqp://unused"), service="bench",
                        batch_size=WINDOW)
    records = [outbox_document(e) for e in events(N)]
    for start in range(0, N, 50):
        await db[OUTBOX].insert_many(records[start:start + 50])
    with stopwatch() as elapsed:
        for start in range(0, N, WINDOW):
            batch = records[start:start + WINDOW]
            if claimed:  # the lease, then the leased records read back
                batch = await relay.claim_ids([r["_id"] for r in batch])
            await relay.mark_sent(batch)
    assert await db[OUTBOX].count_documents(PENDING) == 0
    return N / elapsed[0]


async def main() -> None:
    with rabbitmq_vhost() as amqp_url:
        server = EmbeddedMongo().start()
        try:
            await sink(amqp_url)
            raw = await raw_publish_rate(amqp_url)
            relayed = await relay_rate(amqp_url, server.url, committed_here=True)
            db_marked = await database_rate(server.url, claimed=False)
            claimed = await relay_rate(amqp_url, server.url, committed_here=False)
            db_claimed = await database_rate(server.url, claimed=True)
        finally:
            await mongo.close_clients()
            server.stop()
    report(f"events: confirmed publish, {N} events of ~400 B, {WINDOW} in flight", [
        ("raw aio-pika publish", f"{raw:,.0f} events/s"),
        ("outbox relay, commits of its process", f"{relayed:,.0f} events/s"),
        ("relay / raw", goal(relayed / raw, 0.70)),
        ("its database ops alone (1 update_many / batch)", f"{db_marked:,.0f} records/s"),
        ("relay / its database ops", goal(relayed / db_marked, 0.70)),
        ("outbox relay, claiming others' records", f"{claimed:,.0f} events/s"),
        ("its database ops alone (lease, find, mark)", f"{db_claimed:,.0f} records/s"),
        ("claiming relay / its database ops", goal(claimed / db_claimed, 0.70)),
    ])


if __name__ == "__main__":
    asyncio.run(main())
