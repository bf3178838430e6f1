"""Latency from an emergency raised to the unit's offer, step by step, over RabbitMQ.

The emergency and paramedic services run in this process on one embedded
MongoDB-protocol server and a RabbitMQ virtual host of their own; the paramedic
service ranks on the Helsinki road graph (loaded before the first raise). ``UNITS``
available units with fresh positions stand around central Helsinki, their task
streams recently seen. Each emergency is raised by a dispatcher through the
emergency service's use case; timestamps (wall clock, ms after the raise's commit
returned) are taken where each step ends, by wrapping the functions that do it:

* ``relayed``   the outbox relay handed ``emergency.raised`` to the broker (confirmed);
* ``consumed``  the paramedic consumer started on the delivery;
* ``recorded``  the consumer's transaction (inbox + ``pending`` assignment) committed;
* ``ranked``    candidates read (``$geoNear``) and ranked by road;
* ``offered``   the claim-and-offer transaction committed;
* ``pushed``    the task's insert reached a change stream on the tasks (what the
  app's task stream reads);
* ``assigned``  the emergency service applied ``paramedic.task_offered``.

Four phases, each on units of its own (offers are never answered; ``offer_timeout_s`` is
an hour, so no offer expires mid-run): ``BENCH_EMERGENCIES`` one at a time (an idle
platform); ``BENCH_BURST`` at once; a steady rate, ``BENCH_RATE`` raises a second for
``BENCH_SECONDS`` seconds (raise → assigned p50/p99 per step); then ``BENCH_SUSTAIN`` at
once, timed from the first raise until the emergency service has applied every offer or
escalation: the assignment rate the platform sustains (emergencies a second). Road-ETA
time per candidate: ``bench_road_eta.py``.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from healthflow.common import mongo
from healthflow.common.auth import Principal
from healthflow.common.permissions import Permission
from healthflow.devkit.benchmarking import EmbeddedMongo, eventually, percentile, rabbitmq_vhost
from healthflow.emergency import service as emergency_service
from healthflow.emergency.app import create_app as emergency_app
from healthflow.emergency.schemas import RaiseIn
from healthflow.emergency.settings import Settings as EmergencySettings
from healthflow.paramedic import assigner as assigner_module
from healthflow.paramedic import store as paramedic_store
from healthflow.paramedic.app import create_app as paramedic_app
from healthflow.paramedic.settings import Settings as ParamedicSettings

SINGLE = int(os.environ.get("BENCH_EMERGENCIES", "10"))
BURST = int(os.environ.get("BENCH_BURST", "30"))
RATE = float(os.environ.get("BENCH_RATE", "5"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
STEADY = round(RATE * SECONDS)
SUSTAIN = int(os.environ.get("BENCH_SUSTAIN", "100"))
UNITS = int(os.environ.get("BENCH_UNITS", str(SINGLE + BURST + STEADY + SUSTAIN + 10)))
STEPS = ("relayed", "consumed", "recorded", "ranked", "offered", "pushed", "assigned")
"""The steps of an offered emergency (an escalated one ends at ``escalated``)."""
HELSINKI = (60.1699, 24.9384)

marks: dict[str, dict[str, float]] = defaultdict(dict)
attempts: dict[str, int] = defaultdict(int)


def mark(emergency_id: str, step: str) -> None:
    marks[emergency_id].setdefault(step, time.perf_counter())


def instrument(emergency_runtime: Any) -> None:
    """Wrap the functions that end each step (benchmark only)."""
    transport = emergency_runtime.transport
    publish = transport.publish

    async def timed_publish(event: Any, *args: Any, **kwargs: Any) -> Any:
        result = await publish(event, *args, **kwargs)
        if event.type == "emergency.raised":
            mark(event.data["emergency_id"], "relayed")
        return result

    transport.publish = timed_publish

    consumer_call = assigner_module.AssigningConsumer.__call__

    async def timed_call(self: Any, event: Any) -> None:
        if event.type == "emergency.raised":
            mark(event.data["emergency_id"], "consumed")
            await super(assigner_module.AssigningConsumer, self).__call__(event)
            mark(event.data["emergency_id"], "recorded")
            await self.assigner.after_commit(str(event.data["emergency_id"]))
            return
        await consumer_call(self, event)

    assigner_module.AssigningConsumer.__call__ = timed_call  # type: ignore[method-assign]

    rank = assigner_module.Assigner.rank

    async def timed_rank(self: Any, assignment: Any) -> Any:
        ranked = await rank(self, assignment)
        mark(assignment["_id"], "ranked")
        return ranked

    assigner_module.Assigner.rank = timed_rank  # type: ignore[method-assign]

    assign = assigner_module.Assigner.assign

    async def timed_assign(self: Any, emergency_id: str) -> bool:
        moved = await assign(self, emergency_id)
        if moved:
            mark(emergency_id, "offered")
        return moved

    assigner_module.Assigner.assign = timed_assign  # type: ignore[method-assign]

    start_assigning = paramedic_store.start_assigning

    async def counted_start(*args: Any, **kwargs: Any) -> Any:
        attempts["claim transactions"] += 1
        return await start_assigning(*args, **kwargs)

    paramedic_store.start_assigning = counted_start  # type: ignore[assignment]

    claim_unit = paramedic_store.claim_unit

    async def counted_claim(*args: Any, **kwargs: Any) -> bool:
        claimed = await claim_unit(*args, **kwargs)
        attempts["unit claims" if claimed else "unit claims missed"] += 1
        return claimed

    paramedic_store.claim_unit = counted_claim  # type: ignore[assignment]

    on_offered = emergency_service.on_task_offered

    async def timed_offered(uow: Any, data: Any) -> None:
        await on_offered(uow, data)
        mark(data.emergency_id, "assigned")

    emergency_service.on_task_offered = timed_offered  # type: ignore[assignment]

    on_escalated = emergency_service.on_escalated

    async def timed_escalated(uow: Any, data: Any) -> None:
        await on_escalated(uow, data)
        mark(data.emergency_id, "escalated")

    emergency_service.on_escalated = timed_escalated  # type: ignore[assignment]


def dispatcher() -> Principal:
    return Principal(subject="disp-bench", roles=frozenset({"dispatcher"}),
                     permissions=frozenset({str(Permission.EMERGENCIES_DISPATCH)}),
                     token_id="bench", token="", claims={})  # noqa: S106 - no token


async def add_units(db: Any, n: int) -> None:
    now = datetime.now(UTC)
    docs = []
    side = max(7, math.ceil(math.sqrt(n)))
    for i in range(n):  # a grid about 150 m apart around central Helsinki
        lat = HELSINKI[0] + (i % side - side // 2) * 0.0014
        lon = HELSINKI[1] + (i // side - side // 2) * 0.0028
        docs.append({"_id": f"bench-unit-{i}", "call_sign": f"HKI {i:03d}",
                     "vehicle": "bench", "qualifications": ["advanced_life_support"],
                     "base": None, "status": "available",
                     "location": {"type": "Point", "coordinates": [lon, lat]},
                     "accuracy_m": 8.0, "position_at": now, "task_id": None,
                     "stream_seen_at": now, "shifts": [], "time_zone": None,
                     "created_at": now, "updated_at": now})
    await db["units"].insert_many(docs)


async def watch_pushes(db: Any) -> None:
    async with await db["tasks"].watch([{"$match": {"operationType": "insert"}}],
                                       full_document="updateLookup") as changes:
        async for change in changes:
            mark(change["fullDocument"]["emergency_id"], "pushed")


async def raise_one(emergency_runtime: Any, started: dict[str, float], i: int) -> str:
    body = RaiseIn.model_validate({
        "position": {"latitude": HELSINKI[0] + (i % 5) * 0.001,
                     "longitude": HELSINKI[1] + (i % 3) * 0.002, "accuracy_m": 10.0},
        "what_happened": "bench", "triage": {"conscious": True, "breathing_normally": True}})
    doc = await emergency_service.raise_emergency(emergency_runtime, dispatcher(), body)
    started[doc["_id"]] = time.perf_counter()
    return str(doc["_id"])


def table(title: str, ids: list[str], started: dict[str, float]) -> None:
    print(f"\n== {title}: {len(ids)} emergencies, ms after the raise committed")
    print(f"   {'step':<10}{'p50 cum':>10}{'p99 cum':>10}{'p50 step':>10}{'p99 step':>10}")
    previous = dict.fromkeys(ids, 0.0)
    for step in STEPS:
        cum = {e: (marks[e][step] - started[e]) * 1000 for e in ids if step in marks[e]}
        delta = [cum[e] - previous[e] for e in cum]
        previous.update(cum)
        if not cum:
            print(f"   {step:<10}  (not seen)")
            continue
        print(f"   {step:<10}{percentile(list(cum.values()), 50):>10.1f}"
              f"{percentile(list(cum.values()), 99):>10.1f}"
              f"{percentile(delta, 50):>10.1f}{percentile(delta, 99):>10.1f}")


def settled(emergency_id: str) -> bool:
    return "assigned" in marks[emergency_id] or "escalated" in marks[emergency_id]


async def one_at_a_time(emergency: Any, started: dict[str, float]) -> list[str]:
    single = []
    for i in range(SINGLE):
        eid = await raise_one(emergency, started, i)
        single.append(eid)
        await eventually(lambda eid=eid: settled(eid), within=60, interval=0.01)
        await asyncio.sleep(0.2)
    print(f"one at a time: {dict(attempts)}")
    attempts.clear()
    return single


async def at_once(emergency: Any, started: dict[str, float], n: int, offset: int
                  ) -> tuple[list[str], float]:
    """``n`` raised at once; their ids and the seconds from the first raise until the
    emergency service applied the last offer or escalation."""
    first = time.perf_counter()
    ids = list(await asyncio.gather(*(raise_one(emergency, started, offset + i)
                                      for i in range(n))))
    await eventually(lambda: all(settled(e) for e in ids), within=600, interval=0.02)
    last = max(min(marks[e].get("assigned", math.inf), marks[e].get("escalated", math.inf))
               for e in ids)
    print(f"{n} at once: {dict(attempts)}")
    attempts.clear()
    return ids, last - first


async def steady(emergency: Any, started: dict[str, float]) -> list[str]:
    """``RATE`` raises a second for ``SECONDS`` seconds, each started on its tick."""
    begin = time.perf_counter()

    async def on_tick(i: int) -> str:
        await asyncio.sleep(max(0.0, begin + i / RATE - time.perf_counter()))
        return await raise_one(emergency, started, 1_000 + i)

    ids = list(await asyncio.gather(*(on_tick(i) for i in range(STEADY))))
    await eventually(lambda: all(settled(e) for e in ids), within=300, interval=0.02)
    print(f"{RATE:g}/s for {SECONDS:g} s: {dict(attempts)}")
    attempts.clear()
    return ids


async def main() -> None:
    with rabbitmq_vhost() as amqp_url:
        server = EmbeddedMongo().start()
        try:
            emergency = emergency_app(EmergencySettings(
                mongodb_url=server.url, amqp_url=amqp_url, transport="rabbitmq")
            ).state.runtime
            paramedic_settings = ParamedicSettings(
                mongodb_url=server.url, amqp_url=amqp_url, transport="rabbitmq",
                road_graph="helsinki", offer_timeout_s=3_600.0)
            paramedic = paramedic_app(paramedic_settings).state.runtime
            instrument(emergency)
            await emergency.start()
            await paramedic.start()
            ctx = paramedic.state["context"]
            await eventually(lambda: ctx.roads.graph is not None, within=120,
                             message="road graph not loaded")
            await add_units(paramedic.db, UNITS)
            watcher = asyncio.create_task(watch_pushes(paramedic.db))
            await asyncio.sleep(0.5)
            started: dict[str, float] = {}
            single = await one_at_a_time(emergency, started)
            burst, _ = await at_once(emergency, started, BURST, 100)
            steady_ids = await steady(emergency, started)
            sustain, sustain_s = await at_once(emergency, started, SUSTAIN, 10_000)
            watcher.cancel()
            await paramedic.stop()
            await emergency.stop()
            await paramedic.transport.close()
            await emergency.transport.close()
        finally:
            await mongo.close_clients()
            server.stop()
    print(f"load average at the end: {os.getloadavg()}")
    table("one at a time", single, started)
    table(f"{BURST} at once", burst, started)
    table(f"steady {RATE:g}/s for {SECONDS:g} s", steady_ids, started)
    escalated = sum("assigned" not in marks[e] for e in sustain)
    print(f"\n== sustained: {SUSTAIN} raised at once, every offer or escalation applied in "
          f"{sustain_s:.2f} s: {SUSTAIN / sustain_s:.1f} emergencies/s assigned "
          f"({escalated} escalated) on {os.cpu_count()} cores")


if __name__ == "__main__":
    asyncio.run(main())
