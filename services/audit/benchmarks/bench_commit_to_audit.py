"""Event latency from commit to audit entry, and to a signed checkpoint covering it,
through RabbitMQ (p50, p99 in ms).

A producer service commits one event per transaction through its outbox
(``ServiceRuntime.transact``), paced at ``RATE`` events/s; the audit service
consumes them over the real broker and signs a checkpoint every
``CHECKPOINT_INTERVAL`` seconds when the log grew (``BENCH_CHECKPOINT_INTERVAL``,
default 1 s; 60 s in production). Latency = the entry's ``appended_at`` (or the
``signed_at`` of the first checkpoint whose tree size exceeds the entry's ``seq``)
minus the wall-clock time the producer's commit returned (same machine, same
clock; millisecond precision).
"""

from __future__ import annotations

import asyncio
import bisect
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

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
CHECKPOINT_INTERVAL = float(os.environ.get("BENCH_CHECKPOINT_INTERVAL", "1"))


@event_type("bench.latency_probe")
class LatencyProbe(EventPayload):
    n: int


async def main() -> None:
    with rabbitmq_vhost() as amqp_url:
        server = EmbeddedMongo().start()
        try:
            audit = create_app(Settings(
                mongodb_url=server.url, amqp_url=amqp_url, transport="rabbitmq",
                checkpoint_interval=CHECKPOINT_INTERVAL, checkpoint_to_blobs=False,
                allow_generated_signing_key=True,
                checkpoint_dir=Path(tempfile.mkdtemp(prefix="bench-checkpoints-")),
            )).state.runtime
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
            probes = [doc async for doc in entries.find(
                {"type": "bench.latency_probe"}, {"event_id": 1, "appended_at": 1})]
            latencies = [(doc["appended_at"] - committed[doc["event_id"]]).total_seconds()
                         * 1000 for doc in probes]
            signed = await _signed_checkpoints(audit, max(int(d["_id"]) for d in probes) + 1)
            sizes = [size for size, _ in signed]
            to_checkpoint = [
                (signed[bisect.bisect_right(sizes, int(doc["_id"]))][1]
                 - committed[doc["event_id"]]).total_seconds() * 1000 for doc in probes]
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
    report(f"commit → signed checkpoint covering it: checkpoints every "
           f"{CHECKPOINT_INTERVAL:g} s, {len(signed)} signed", [
        ("p50", f"{percentile(to_checkpoint, 50):.1f} ms"),
        ("p99", f"{percentile(to_checkpoint, 99):.1f} ms"),
        ("max", f"{max(to_checkpoint):.1f} ms"),
    ])


async def _signed_checkpoints(audit: ServiceRuntime, size: int) -> list[tuple[int, datetime]]:
    """``(tree_size, signed_at)`` of every checkpoint, ascending, once one covers ``size``."""
    checkpoints = audit.db["checkpoints"]

    async def covered() -> bool:
        return await checkpoints.count_documents({"_id": {"$gte": size}}) > 0

    await eventually(covered, within=120, interval=0.05)
    return [(int(doc["_id"]), doc["signed_at"])
            async for doc in checkpoints.find({}, {"signed_at": 1}).sort("_id", 1)]


if __name__ == "__main__":
    asyncio.run(main())
