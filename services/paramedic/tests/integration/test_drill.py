"""The assignment drill: 30 units and a burst of emergencies against two paramedic
replicas competing on one RabbitMQ queue (a virtual host of its own) and sharing one
database, one replica killed mid-run (its broker connection dropped, then its app
stopped: its unacknowledged deliveries go back to the queue for the other one).

Invariants: no unit offered twice; every emergency offered or escalated exactly once
(none lost, none duplicated). In a burst a unit may stay idle while an emergency
escalates: each assignment tries only its ``candidates`` nearest units, and racing
emergencies can take all of them; the escalation retry (off here) picks it up.
Prints time-to-assign p50/p99 (raised → offered) and time-to-escalate. Bounded by
default (60 emergencies); the full drill is
``HEALTHFLOW_DRILL_EMERGENCIES=200 .venv/bin/pytest
services/paramedic/tests/integration/test_drill.py -s -p no:cacheprovider``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

from healthflow.common.events.rabbit.transport import RabbitTransport
from healthflow.devkit.testing import TokenFactory, eventually, running_app
from healthflow.paramedic.app import create_app
from healthflow.paramedic.settings import Settings

from .conftest import HELSINKI, Paramedics, offset
from .test_rabbit import raised

UNITS = 30
EMERGENCIES = int(os.environ.get("HEALTHFLOW_DRILL_EMERGENCIES", "60"))


async def replica(stack: AsyncExitStack, i: int, mongodb_url: str, database: str,
                  amqp_url: str, tokens: TokenFactory, **settings: Any
                  ) -> tuple[Paramedics, AsyncExitStack]:
    """A paramedic app on RabbitMQ with an exit stack of its own (to kill it alone);
    ``settings`` override the drill's."""
    own = AsyncExitStack()
    stack.push_async_callback(own.aclose)
    transport = RabbitTransport(amqp_url, connection_name=f"paramedic-drill-{i}")
    own.push_async_callback(transport.close)
    app = create_app(Settings(
        mongodb_url=mongodb_url, mongodb_database=database, transport="rabbitmq",
        amqp_url=amqp_url, road_graph="", outbox_poll_interval=0.2,
        escalation_retry_s=3_600.0, timer_interval_s=0.2, **settings), transport=transport)
    app.state.verifier = tokens.verifier()
    client = await own.enter_async_context(running_app(app))
    return Paramedics(client, app.state.runtime, tokens), own


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(
        values) > 1 else values[0]


async def test_a_burst_on_two_replicas_one_killed_loses_nothing_and_shares_no_unit(
        mongodb_url: str, unique_name: str, fresh_amqp_url: str, tokens: TokenFactory) -> None:
    async with AsyncExitStack() as stack:
        (a, _), (b, b_stack) = [await replica(stack, i, mongodb_url, unique_name,
                                              fresh_amqp_url, tokens) for i in range(2)]
        publisher = RabbitTransport(fresh_amqp_url, connection_name="paramedic-drill-pub")
        stack.push_async_callback(publisher.close)
        await publisher.connect()
        units = [await a.unit(*offset(*HELSINKI, north_m=150 * (i % 6), east_m=150 * (i // 6)))
                 for i in range(UNITS)]
        ids = [f"drill-{i}-{uuid.uuid4().hex[:6]}" for i in range(EMERGENCIES)]
        started, sent = time.perf_counter(), {}
        for i, eid in enumerate(ids):
            sent[eid] = datetime.now(UTC)
            await publisher.publish(raised(eid, *offset(*HELSINKI, east_m=20 * i)))
            if i == EMERGENCIES // 2:
                await asyncio.sleep(0.2)  # b is mid-work now
                await b.runtime.transport.close()  # killed: its connection drops first
                await b_stack.aclose()
        db = a.runtime.db

        async def settled() -> bool:
            return await db["assignments"].count_documents(
                {"status": {"$in": ["offered", "escalated"]}}) == len(ids)

        await eventually(settled, within=120, message="an emergency was lost")
        elapsed = time.perf_counter() - started
        tasks = await db["tasks"].find({}).to_list()
        per_unit = Counter(t["unit_id"] for t in tasks)
        assert set(per_unit) <= set(units) and set(per_unit.values()) == {1}, per_unit
        assert set(Counter(t["emergency_id"] for t in tasks).values()) == {1}
        docs = await db["assignments"].find({}).to_list()
        assert sorted(d["_id"] for d in docs) == sorted(ids)
        statuses = Counter(d["status"] for d in docs)
        assert statuses["offered"] == len(tasks) and sum(statuses.values()) == len(ids)
        assert len(await a.outbox("paramedic.task_offered")) == len(tasks)
        escalated = await a.outbox("paramedic.assignment_escalated")
        assert sorted(e["emergency_id"] for e in escalated) == sorted(
            d["_id"] for d in docs if d["status"] == "escalated")
        report(sent, tasks, docs, elapsed, idle=UNITS - len(per_unit))


def report(sent: dict[str, datetime], tasks: list[dict[str, Any]],
           docs: list[dict[str, Any]], elapsed: float, idle: int) -> None:
    """Print published → offered and published → escalated latencies (milliseconds)."""

    def ms(later: datetime, key: str) -> float:
        return (later - sent[key]).total_seconds() * 1_000

    offered = [ms(t["offered_at"], t["emergency_id"]) for t in tasks]
    escalated = [ms(d["escalated_at"], d["_id"]) for d in docs if d["status"] == "escalated"]
    print(f"\n[drill] {len(docs)} emergencies, {UNITS} units, 2 replicas (one killed) "
          f"in {elapsed:.1f} s: time to assign (raised → offered) p50 "
          f"{percentile(offered, 50):.0f} ms p99 {percentile(offered, 99):.0f} ms; "
          f"escalate p50 {percentile(escalated, 50):.0f} ms "
          f"p99 {percentile(escalated, 99):.0f} ms; units left idle {idle} (free, but "
          f"beyond the {Settings.model_fields['candidates'].default} nearest candidates "
          "all taken by racing emergencies: picked up by the escalation retry)")
