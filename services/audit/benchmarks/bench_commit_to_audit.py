"""Event latency from commit to audit entry, through RabbitMQ (p50, p99 in ms).

A producer service commits one event per transaction through its outbox
(``ServiceRuntime.transact``), paced at ``RATE`` events/s; the audit service
consumes them over the real broker. Latency = the entry's ``appended_at``
minus the wall-clock time the producer's commit returned (same machine, same
clock; millisecond precision).
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

from healthflow.audit.app import create_app
from healthflow.audit.settings import Settings
from healthflow.common import mongo
from healthflow.common.events.envelope import EventPayload, event_type
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import ServiceSettings
from healthflow.devkit.benchmarking import (
    EmbeddedMongo,
    eventually,
    percentile,
    rabbitmq_vhost,
    report,
)

N = int(os.environ.get("BENCH_LATENCY_EVENTS", "300"))
RATE = float(os.environ.get("BENCH_LATENCY_RATE", "50"))


@event_type("bench.latency_probe")
class LatencyProbe(EventPayload):
    n: int


async def main() -> None:
    with rabbitmq_vhost() as amqp_url:
        server = EmbeddedMongo().start()
        try:
            audit = create_app(Settings(mongodb_url=server.url, amqp_url=amqp_url,
                                        transport="rabbitmq")).state.runtime
            producer = ServiceRuntime(ServiceSettings(
                service_name="bench", mongodb_url=server.url, amqp_url=amqp_url,
                transport="rabbitmq"))
            await audit.start()
            await producer.start()
            committed: dict[str, datetime] = {}
            for n in range(N):
                async def write(uow: UnitOfWork, n: int = n) -> str:
                    return uow.publish(LatencyProbe(n=n), subject=str(n)).id

                event_id = await producer.transact(write)
                committed[event_id] = datetime.now(UTC)
                await asyncio.sleep(1 / RATE)

            entries = audit.db["entries"]

            async def all_appended() -> bool:
                return await entries.count_documents({"type": "bench.latency_probe"}) >= N

            await eventually(all_appended, within=300, interval=0.05)
            latencies = [
                (doc["appended_at"] - committed[doc["event_id"]]).total_seconds() * 1000
                async for doc in entries.find({"type": "bench.latency_probe"},
                                              {"event_id": 1, "appended_at": 1})
            ]
            await producer.stop()
            await audit.stop()
            await producer.transport.close()
        finally:
            await mongo.close_clients()
            server.stop()
    report(f"commit → audit entry over RabbitMQ: {N} events at {RATE:.0f}/s", [
        ("p50", f"{percentile(latencies, 50):.1f} ms"),
        ("p99", f"{percentile(latencies, 99):.1f} ms"),
        ("max", f"{max(latencies):.1f} ms"),
    ])


if __name__ == "__main__":
    asyncio.run(main())
