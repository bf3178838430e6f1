"""The assigner ranks outside the transaction and claims inside: a ranking that went
stale (its best unit taken meanwhile) skips to the next unit; a pending emergency
nobody assigned after its commit (a killed process) is swept up by the loop."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from healthflow.common.events.outbox import UnitOfWork
from healthflow.contracts.emergency import EmergencyRaised
from healthflow.devkit.testing import eventually
from healthflow.paramedic import service, store
from healthflow.paramedic.assigner import Assigner

from .conftest import HELSINKI, Paramedics, offset


async def pending(para: Paramedics) -> str:
    """An emergency recorded as pending, as the consumer's transaction leaves it."""
    emergency_id = str(uuid.uuid4())
    raised = EmergencyRaised(emergency_id=emergency_id, priority="P2", latitude=HELSINKI[0],
                             longitude=HELSINKI[1], accuracy_m=10.0, raised_by_role="patient",
                             patient_id="pat-1", raised_at=datetime.now(UTC))
    ctx = para.runtime.state["context"]

    async def write(uow: UnitOfWork) -> None:
        await service.on_emergency_raised(uow, ctx, raised)

    await para.runtime.transact(write)
    return emergency_id


async def test_a_stale_ranking_skips_the_unit_taken_meanwhile(replicas: Any) -> None:
    [para] = await replicas(1, timer_interval_s=60.0)  # the loop stays out of the way
    near = await para.unit(*offset(*HELSINKI, north_m=100))
    far = await para.unit(*offset(*HELSINKI, north_m=700))
    emergency = await pending(para)
    assigner: Assigner = para.runtime.state["assigner"]
    assignment = await store.get_assignment(para.runtime.db, emergency)
    assert assignment is not None and assignment["status"] == "pending"
    ranked = await assigner.rank(assignment)
    assert [c["_id"] for c in ranked] == [near, far]
    await para.runtime.db["units"].update_one(  # another emergency's claim, in between
        {"_id": near}, {"$set": {"status": "assigned", "task_id": "elsewhere"}})

    async def write(uow: UnitOfWork) -> Any:
        taken = await store.start_assigning(uow.db, uow.session, emergency, 0,
                                            datetime.now(UTC))
        assert taken is not None
        return await service.claim_and_offer(uow, para.runtime.state["context"], taken,
                                             ranked)

    task = await para.runtime.transact(write)
    assert task["unit_id"] == far
    assert not await assigner.assign(emergency)  # no longer pending: nothing to do


async def test_the_loop_offers_what_no_one_assigned_after_its_commit(replicas: Any) -> None:
    [para] = await replicas(1, timer_interval_s=0.2)
    unit = await para.unit(*offset(*HELSINKI, north_m=300))
    emergency = await pending(para)

    async def offered() -> bool:
        return any(t["emergency_id"] == emergency for t in await para.tasks(unit))

    await eventually(offered, within=10, message="the assigner loop never offered it")


async def test_every_ranked_unit_taken_meanwhile_ranks_again_rather_than_escalate(
        replicas: Any) -> None:
    """A burst at one place: the units this emergency ranked were all claimed by
    others before its claim, while a farther unit is still free."""
    [para] = await replicas(1, timer_interval_s=60.0, candidates=1)
    near = await para.unit(*offset(*HELSINKI, north_m=100))
    far = await para.unit(*offset(*HELSINKI, north_m=700))
    emergency = await pending(para)
    assigner: Assigner = para.runtime.state["assigner"]
    rank = assigner.rank
    ranked_first: list[list[str]] = []

    async def rank_then_lose_the_first(assignment: Any) -> list[Any]:
        found = await rank(assignment)
        if not ranked_first:  # another emergency claims the unit right after
            ranked_first.append([c["_id"] for c in found])
            await para.runtime.db["units"].update_one(
                {"_id": near}, {"$set": {"status": "assigned", "task_id": "elsewhere"}})
        return found

    assigner.rank = rank_then_lose_the_first  # type: ignore[method-assign]
    assert await assigner.assign(emergency)
    assert ranked_first == [[near]]
    [task] = await para.tasks(far)
    assert task["emergency_id"] == emergency
    assert await para.outbox("paramedic.assignment_escalated") == []
