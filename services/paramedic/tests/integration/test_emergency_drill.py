"""The dispatch drill with the emergency service in it (issue 14): dispatchers raise a
burst of emergencies through ``POST /api/v1/emergencies`` spread over two emergency
service processes (real ``python -m healthflow.emergency`` children on one database and
one RabbitMQ virtual host); two paramedic replicas assign them on RabbitMQ; 30 units.
Run twice: both processes up, then one SIGKILLed in the middle of the burst (after it
answered a sixth of the raises, with the rest of its share in flight).

Each raise carries an ``Idempotency-Key``; a raise cut by the kill (or answered 5xx) is
sent again with the same key to the other process, as a dispatcher's app would. Checked
in the emergency service's own database and API, and in the paramedic service's:

* every raise got its 201, and each is exactly one emergency (none lost: the killed
  process's committed raises reach the paramedic service through the outbox, relayed
  by the survivor once their lease ends; none duplicated: a retry of a raise the killed
  process had committed returns that emergency), with one ``emergency.raised``;
* every emergency ends ``assigned`` (offered) or escalated, on the dispatchers' board;
* no unit is offered twice; the emergency service's unit is the paramedic task's.

Prints time to assign (the client's first send → the ``assigned`` step the emergency
service wrote) p50/p99, escalations, retries and replays, elapsed. Bounded by default
(40 emergencies); ``make drill-emergencies`` runs 200 (``EMERGENCIES=…``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from healthflow.common import mongo
from healthflow.common.events.outbox import recorded_events
from healthflow.devkit.embedded import free_ports, stop_child
from healthflow.devkit.testing import TokenFactory, eventually

from .conftest import HELSINKI, offset
from .dispatch_floor import (
    Dispatchers,
    EmergencyProcess,
    Raise,
    auth_stand_in,
    emergency_env,
    start_emergency,
)
from .test_drill import UNITS, percentile, replica

EMERGENCIES = int(os.environ.get("HEALTHFLOW_DRILL_EMERGENCIES", "40"))
SETTLED = {"$or": [{"status": "assigned"}, {"status": "raised", "escalated": {"$ne": None}}]}


async def start_both(mongodb_url: str, database: str, amqp_url: str, jwks_url: str,
                     workdir: Path) -> list[EmergencyProcess]:
    started = await asyncio.gather(*(
        start_emergency(f"emergency-{name}", emergency_env(
            mongodb_url, database, amqp_url, jwks_url, port), workdir)
        for name, port in zip("ab", free_ports(2), strict=True)), return_exceptions=True)
    failed = [s for s in started if isinstance(s, BaseException)]
    if failed:
        for s in started:
            if isinstance(s, EmergencyProcess):
                stop_child(s.process, 5.0)
        raise failed[0]
    return [s for s in started if isinstance(s, EmergencyProcess)]


KILL_RUN = pytest.param(True, id="one-killed", marks=pytest.mark.skipif(
    "HEALTHFLOW_DRILL_EMERGENCIES" not in os.environ,
    reason="the kill run is `make drill-emergencies`'s: a raise held by the killed "
           "process's open transaction waits out the database's 60 s abort, which made "
           "the bounded run flaky in `make test` (raises never answered 201)"))


@pytest.mark.slow
@pytest.mark.parametrize("kill", [False, KILL_RUN], ids=["both-up", "one-killed"])
async def test_a_burst_raised_through_two_emergency_processes_is_assigned_once_each(
        kill: bool, mongodb_url: str, unique_name: str, fresh_amqp_url: str,
        tokens: TokenFactory, tmp_path: Path) -> None:
    database = f"{unique_name}_emergency"
    with auth_stand_in(tokens) as jwks_url:
        processes = await start_both(mongodb_url, database, fresh_amqp_url, jwks_url,
                                     tmp_path)
        try:
            async with AsyncExitStack() as stack:
                paramedics = [(await replica(
                    stack, i, mongodb_url, f"{unique_name}_paramedic", fresh_amqp_url,
                    tokens, offer_timeout_s=3_600.0))[0] for i in range(2)]
                units = [await paramedics[0].unit(*offset(
                    *HELSINKI, north_m=150 * (i % 6), east_m=150 * (i // 6)))
                    for i in range(UNITS)]
                async with Dispatchers(processes, tokens,
                                       kill_after=EMERGENCIES // 6 if kill else None
                                       ) as floor:
                    started = time.perf_counter()
                    raises = await asyncio.gather(*(
                        floor.raise_one(i, offset(*HELSINKI, east_m=20 * i))
                        for i in range(EMERGENCIES)))
                    refused = [r.attempts for r in raises if r.emergency_id is None]
                    assert not refused, f"raises never answered 201: {refused}"
                    edb = mongo.get_database(mongodb_url, database)

                    async def settled() -> bool:
                        return await edb["emergencies"].count_documents(SETTLED) >= len(
                            raises)

                    try:
                        await eventually(settled, within=180, interval=0.1)
                    except AssertionError:
                        raise AssertionError(await unsettled(
                            raises, edb, paramedics[0].runtime.db)) from None
                    elapsed = time.perf_counter() - started
                    docs = await check(raises, edb, paramedics[0].runtime.db, units)
                    await check_board(floor.clients[0], floor.headers[0], docs)
                assert (floor.killed_at is not None) is kill
                assert processes[-1].process.poll() == (-signal.SIGKILL if kill else None)
                report(kill, raises, docs, elapsed)
        finally:
            for process in processes:
                stop_child(process.process, 10.0)


async def unsettled(raises: list[Raise], edb: Any, pdb: Any) -> str:
    """What became of the raises not assigned nor escalated (the failure's message)."""
    settled = {d["_id"] for d in await edb["emergencies"].find(SETTLED, {"_id": 1}).to_list()}
    lines = []
    for r in raises:
        if r.emergency_id in settled:
            continue
        doc = await edb["emergencies"].find_one({"_id": r.emergency_id}) or {}
        assignment = await pdb["assignments"].find_one({"_id": r.emergency_id}) or {}
        lines.append(f"{r.emergency_id}: attempts {r.attempts}; emergency "
                     f"{doc.get('status')} escalated {doc.get('escalated')}; paramedic "
                     f"{assignment.get('status')}")
    return f"{len(lines)} neither assigned nor escalated:\n" + "\n".join(lines)


async def check(raises: list[Raise], edb: Any, pdb: Any, units: list[str]
                ) -> list[dict[str, Any]]:
    """The invariants, in both services' databases; the emergency documents."""
    ids = [r.emergency_id for r in raises]
    assert len(set(ids)) == len(raises), "two raises answered with one emergency"
    docs = await edb["emergencies"].find({}).to_list()
    assert sorted(d["_id"] for d in docs) == sorted(ids), "an emergency lost or duplicated"
    published = Counter(e.data["emergency_id"] for e in await recorded_events(
        edb, {"type": "emergency.raised"}))
    assert set(published) == set(ids) and set(published.values()) == {1}, published
    assigned = {d["_id"]: d["assignment"]["unit_id"] for d in docs
                if d["status"] == "assigned"}
    per_unit = Counter(assigned.values())
    assert set(per_unit) <= set(units) and set(per_unit.values()) <= {1}, per_unit
    assert all(d["escalated"] for d in docs if d["_id"] not in assigned)
    tasks = await pdb["tasks"].find({}).to_list()
    assert set(Counter(t["unit_id"] for t in tasks).values()) <= {1}
    assert {t["emergency_id"]: t["unit_id"] for t in tasks} == assigned
    statuses = Counter(d["status"] for d in await pdb["assignments"].find({}).to_list())
    expected = Counter(offered=len(assigned), escalated=len(docs) - len(assigned))
    assert +statuses == +expected, statuses  # unary +: without the zero counts
    return list(docs)


async def check_board(client: httpx.AsyncClient, headers: dict[str, str],
                      docs: list[dict[str, Any]]) -> None:
    """The dispatchers' board (the surviving process's API) shows each one as settled."""
    board = await client.get("/api/v1/emergencies", headers=headers)
    assert board.status_code == 200, board.text
    shown = {e["id"]: e for e in board.json()}
    assert set(shown) == {d["_id"] for d in docs}
    assert all(e["status"] == "assigned" or e["escalated"] for e in shown.values())


def report(kill: bool, raises: list[Raise], docs: list[dict[str, Any]],
           elapsed: float) -> None:
    """Print raise → assigned and raise → escalated (ms), the 201s, retries, replays."""
    sent = {r.emergency_id: r.sent_at for r in raises}

    def ms(later: datetime, emergency_id: str) -> float:
        return (later - sent[emergency_id]).total_seconds() * 1_000

    assigned = [ms(next(s["at"] for s in d["timeline"] if s["status"] == "assigned"),
                   d["_id"]) for d in docs if d["status"] == "assigned"]
    escalated = [ms(d["escalated"]["at"], d["_id"]) for d in docs if d["escalated"]]
    answered = [r.answered_s * 1_000 for r in raises if r.answered_s is not None]
    created = {d["_id"]: d["created_at"] for d in docs}
    retried = [r for r in raises if r.retried_at is not None]
    replayed = [r for r in retried if created[r.emergency_id] < r.retried_at]

    def p(values: list[float], q: int) -> str:
        return f"{percentile(values, q):.0f} ms" if values else "-"

    print(f"\n[drill] {len(docs)} emergencies through 2 emergency processes "
          f"({'one SIGKILLed mid-burst' if kill else 'both up'}), 2 paramedic replicas, "
          f"{UNITS} units, in {elapsed:.1f} s: raise answered (201) p50 {p(answered, 50)} "
          f"p99 {p(answered, 99)}; time to assign (sent → assigned) p50 "
          f"{p(assigned, 50)} p99 {p(assigned, 99)}; assigned {len(assigned)}, escalated "
          f"{len(escalated)} (p50 {p(escalated, 50)}); retried on the other process "
          f"{len(retried)}, of which the killed one had committed {len(replayed)} "
          "(answered with that emergency: the Idempotency-Key)")
