"""Measure the audit append rate against the raw insert rate of the MongoDB-protocol server.

    uv run python services/audit/benchmarks/bench_audit.py [--events 2000]

Starts an in-memory SecantusDB (or uses ``MONGODB_URL``) and prints events per
second for:

* ``raw insert_one``: sequential single inserts of an entry-sized document (the
  reference rate: issue 18's goal is the group-commit rate at prefetch 64 being
  at least 50 % of it, and at least 1,000 events/s);
* ``raw insert_many``: the same documents in sequential batches of 64 (what a
  group commit of 64 could at best approach: one write per batch, no
  transaction, no chain, tree, inbox or indexes); shown for honesty, the
  ``% of raw`` column stays against ``insert_one``;
* ``audit group commit``: the app's consumer fed ``prefetch`` deliveries at a
  time (as a transport with that prefetch does), with one and two replicas;
* ``audit 1 txn/event``: the common inbox ``Consumer`` running
  :data:`healthflow.audit.handlers.HANDLERS`, fed the same way.

Each audit run ends by verifying the chain it built; every append also grows the
Merkle tree (:mod:`healthflow.audit.tree`) in its transaction.

The ``audit …`` rates and the raw rate come from the same server in the same run,
so ``% of raw`` is the cost of the chain and the Merkle tree together.

``inclusion proof`` lines: p50/p99 latency of :func:`healthflow.audit.tree.inclusion_proof`
over a tree of each ``--proof-sizes`` leaves (default 10^4 and 10^6), for random
leaves against the whole tree. The tree is filled as the append path grows it
(:func:`healthflow.audit.merkle.grow` then :func:`healthflow.audit.store.insert_subtrees`,
what :func:`healthflow.audit.tree.grow` does in each append's transaction), in
batches of ``FILL_BATCH`` synthetic leaves whose entries are stubs holding only a
``hash`` (a proof reads subtrees, the leaves' entry hashes and the head), so 10^6
leaves take minutes instead of hours.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable

from healthflow.audit import handlers, merkle, service, store, tree
from healthflow.audit.app import create_app
from healthflow.audit.settings import Settings
from healthflow.common.events.consumer import Consumer
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.mongo import get_database
from healthflow.common.service import ServiceRuntime
from healthflow.devkit.embedded import EmbeddedMongo

CHECKPOINT_DIR = tempfile.mkdtemp(prefix="bench-audit-checkpoints-")
TRACEPARENT = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
FILL_BATCH = 20_000
"""Leaves per bulk write when filling a tree for the proof latency."""


def event(i: int) -> CloudEvent:
    return CloudEvent(source="/healthflow/appointment", type="appointment.booked",
                      subject=f"appointment/{uuid.uuid4()}", actor=f"user-{i % 50}",
                      patientid=f"p-{i % 200}", traceparent=TRACEPARENT,
                      data={"appointment_id": str(uuid.uuid4()), "doctor_id": "d-1",
                            "starts_at": "2026-12-01T09:00:00Z", "mode": "video"})


async def raw_rate(url: str, n: int) -> float:
    collection = get_database(url, f"bench_raw_{uuid.uuid4().hex[:6]}")["raw"]
    docs = [{"envelope": event(i).model_dump(mode="json"), "hash": "0" * 64} for i in range(n)]
    started = time.perf_counter()
    for doc in docs:
        await collection.insert_one(doc)
    return n / (time.perf_counter() - started)


async def raw_batched_rate(url: str, n: int, batch: int = 64) -> float:
    collection = get_database(url, f"bench_raw_{uuid.uuid4().hex[:6]}")["raw"]
    docs = [{"envelope": event(i).model_dump(mode="json"), "hash": "0" * 64} for i in range(n)]
    started = time.perf_counter()
    for first in range(0, n, batch):
        await collection.insert_many(docs[first:first + batch])
    return n / (time.perf_counter() - started)


async def audit_rate(url: str, n: int, concurrency: int, *, group: bool = True,
                     replicas: int = 1) -> float:
    """Events/s appended by ``replicas`` runtimes on one database, each fed ``concurrency``."""
    database = f"bench_audit_{uuid.uuid4().hex[:6]}"
    runtimes: list[ServiceRuntime] = []
    for r in range(replicas):
        own_url = f"{url}&appname=bench-{r}"  # its own client, as another process would have
        settings = Settings(mongodb_url=own_url, mongodb_database=database,
                            transport="inprocess", checkpoint_to_blobs=False,
                            checkpoint_dir=CHECKPOINT_DIR, allow_generated_signing_key=True)
        runtimes.append(create_app(settings).state.runtime)
    for runtime in runtimes:
        await runtime.start()
    try:
        consumers = [rt.consumer if group else Consumer(rt, handlers.HANDLERS)
                     for rt in runtimes]
        events = [event(i) for i in range(n)]
        queue = iter(events)

        async def worker(deliver: Callable[[CloudEvent], Awaitable[None]]) -> None:
            for item in queue:
                await deliver(item)

        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in consumers if c is not None
                               for _ in range(concurrency)))
        rate = n / (time.perf_counter() - started)
        result, head, _ = await service.verify(runtimes[0])
        assert result.ok and head.seq == n - 1, (result, head)
        return rate
    finally:
        for runtime in runtimes:
            await runtime.stop()


async def proof_latency(url: str, size: int, samples: int = 300) -> tuple[float, float]:
    """p50 and p99 milliseconds of an inclusion proof in a tree of ``size`` leaves."""
    database = f"bench_proof_{uuid.uuid4().hex[:6]}"
    settings = Settings(mongodb_url=url, mongodb_database=database, transport="inprocess",
                        checkpoint_to_blobs=False, checkpoint_dir=CHECKPOINT_DIR,
                        allow_generated_signing_key=True)
    runtime = ServiceRuntime(settings, indexes=store.INDEXES)
    await runtime.start()
    try:
        done = 0
        while done < size:
            count = min(FILL_BATCH, size - done)
            edge = await store.read_subtrees(runtime.db, merkle.frontier(done))
            # Leaves are read from their entries' hash: stub entries hold only that.
            hashes = [hashlib.sha256(i.to_bytes(8, "big")).hexdigest()
                      for i in range(done, done + count)]
            await runtime.db[store.ENTRIES].insert_many(
                [{"_id": done + j, "event_id": f"bench-{done + j}", "hash": h}
                 for j, h in enumerate(hashes)])
            leaves = [merkle.entry_leaf_hash(h) for h in hashes]
            made = merkle.grow(done, [edge[n] for n in merkle.frontier(done)], leaves)
            await store.insert_subtrees(runtime.db, made)
            done += count
        await runtime.db[store.CHAIN].insert_one({"_id": store.HEAD_ID, "seq": size - 1,
                                                  "hash": "0" * 64, "tree_size": size})
        timings = []
        for _ in range(samples):
            started = time.perf_counter()
            await tree.inclusion_proof(runtime, random.randrange(size), size)  # noqa: S311
            timings.append((time.perf_counter() - started) * 1000)
        cuts = statistics.quantiles(timings, n=100)
        return cuts[49], cuts[98]
    finally:
        await runtime.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--proof-sizes", type=int, nargs="*", default=[10_000, 1_000_000])
    args = parser.parse_args()
    n = args.events
    server = None
    url = os.environ.get("MONGODB_URL")
    if not url:
        server = EmbeddedMongo(":memory:").start()
        url = server.url
    try:
        raw = await raw_rate(url, n)
        print(f"{'raw insert_one, sequential':44} {raw:7.0f} /s  (the reference: 100 %)")
        batched = await raw_batched_rate(url, n)
        print(f"{'raw insert_many, batches of 64':44} {batched:7.0f} /s  "
              f"{batched / raw:5.0%} of raw")
        runs: list[tuple[str, Awaitable[float]]] = [
            ("audit group commit, prefetch 64", audit_rate(url, n, 64)),
            ("audit group commit, prefetch 8", audit_rate(url, n, 8)),
            ("audit group commit, prefetch 1", audit_rate(url, n // 4, 1)),
            ("audit group commit, 2 replicas x prefetch 64", audit_rate(url, n, 64, replicas=2)),
            ("audit 1 txn/event (inbox Consumer), prefetch 1",
             audit_rate(url, n // 4, 1, group=False)),
            ("audit 1 txn/event (inbox Consumer), prefetch 8",
             audit_rate(url, n // 20, 8, group=False)),
        ]
        for label, run in runs:
            rate = await run
            print(f"{label:44} {rate:7.0f} /s  {rate / raw:5.0%} of raw")
        print(f"inclusion proofs: trees filled by merkle.grow + store.insert_subtrees (as "
              f"each append does), {FILL_BATCH} leaves a bulk write, stub entries")
        for size in args.proof_sizes:
            started = time.perf_counter()
            p50, p99 = await proof_latency(url, size)
            print(f"{f'inclusion proof, {size} entries':44} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
                  f"  (fill {time.perf_counter() - started:.0f} s)")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
