"""Offering a waiting emergency to a unit: rank outside the transaction, claim inside.

An emergency waits for a unit while its assignment is ``pending`` (just raised, its
offer declined or timed out, an escalation's retry due). :meth:`Assigner.assign`
then

1. reads the assignment and the ``$geoNear`` candidates and ranks them by road
   travel time (:mod:`.roads`, in a thread), with no transaction open: the slow
   part holds no locks and makes no transaction wait;
2. in one short transaction takes the assignment only if it is still ``pending`` at
   the same attempt (:func:`store.start_assigning`: one conditional update, so of
   two replicas at it one goes on and the other stops), claims the fastest
   candidate a conditional update on its status can still claim (a unit taken
   meanwhile is skipped; its position must still be fresh) and offers it, or
   escalates (:func:`service.claim_and_offer`).

The claim transactions of one replica run one at a time (:attr:`Assigner.claiming`):
a burst of emergencies at one place ranks the same units first, and concurrent
claims of one unit are write conflicts that abort and retry whole transactions (30
at once: 162 transactions for 30 offers, 1.5 s p50 per claim); one after the other
each costs one short transaction, and a claim that finds its ranked units taken
ranks again. Replicas still claim concurrently; the conditional update decides.

It runs right after the transaction that made the emergency pending commits (the
consumer of ``emergency.raised``, a decline), and a loop sweeps what is left (offer
timers, escalation retries, a process killed between the two): every
``timer_interval_s`` seconds, or at once when woken.
"""

from __future__ import annotations

import asyncio
import logging

from healthflow.common.events.consumer import Consumer, Handlers
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document
from healthflow.common.service import ServiceRuntime
from healthflow.common.workers import Loop
from healthflow.paramedic import service, store, waiting, xraytasks
from healthflow.paramedic.domain import (
    emergency_of,
    fresh_since,
    is_xray,
    preempts_xray,
    slot_id,
    slot_of,
)

log = logging.getLogger(__name__)

RERANKS = 3
"""How often one assignment ranks again when every ranked unit was taken meanwhile."""


class _AllTaken(Exception):
    """Every ranked candidate was claimed between the ranking and the claim."""


class Assigner:
    """Offers ``pending`` emergencies (see the module docstring)."""

    def __init__(self, runtime: ServiceRuntime, ctx: service.Context) -> None:
        self.runtime = runtime
        self.ctx = ctx
        self.wakeup = asyncio.Event()
        self.claiming = asyncio.Lock()

    async def rank(self, assignment: Document) -> list[Document]:
        """The candidates for ``assignment`` (no transaction), on shift, fastest by road
        first, each with ``distance_m``, ``travel_s`` and ``by_road``. An X-ray order
        has no position (``xray.requested`` carries none): its candidates are the
        radiography-qualified units, longest idle first."""
        ctx = self.ctx
        if is_xray(assignment):
            return [c for c in await store.xray_candidates(
                self.runtime.db, fresh_since=fresh_since(ctx.clock(), ctx.max_age),
                exclude=assignment["tried"], limit=ctx.settings.candidates)
                if service.is_on_shift(ctx, c)]
        found = [c for c in await store.candidates(
            self.runtime.db, None, assignment["location"],
            fresh_since=fresh_since(ctx.clock(), ctx.max_age),
            exclude=await self.excluded(assignment),
            max_distance_m=ctx.settings.search_radius_m, limit=ctx.settings.candidates,
            preempt_xray=preempts_xray(assignment))
            if service.is_on_shift(ctx, c)]
        lon, lat = assignment["location"]["coordinates"]
        by_id = {c["_id"]: c for c in found}
        etas = await ctx.roads.rank((lat, lon), [
            (c["_id"], c["location"]["coordinates"][1], c["location"]["coordinates"][0])
            for c in found])
        return [by_id[e.unit_id] | {"travel_s": round(e.seconds, 1), "by_road": e.by_road}
                for e in etas]

    async def excluded(self, assignment: Document) -> list[str]:
        """The units not to offer ``assignment``: those it tried, and for one of a P1's
        two slots those the other slot tried (it holds one of them): no unit twice."""
        tried = list(assignment["tried"])
        if assignment.get("units") == 2:
            emergency_id = emergency_of(assignment)
            other = await store.get_assignment(
                self.runtime.db, slot_id(emergency_id, 3 - slot_of(assignment)))
            tried += other["tried"] if other else []
        return tried

    async def assign(self, emergency_id: str) -> bool:
        """Offer the emergency (or X-ray order: any assignment id) if it is ``pending``;
        True when this call moved it on (offered or escalated), False when there was
        nothing (more) to do. When every ranked candidate was claimed by another
        emergency between the ranking and the claim (a burst at one place), it ranks
        again (up to :data:`RERANKS` times) rather than escalate while units are free."""
        for round_ in range(RERANKS + 1):
            assignment = await store.get_assignment(self.runtime.db, emergency_id)
            if assignment is None or assignment["status"] != "pending":
                return False
            ranked = await self.rank(assignment)
            try:
                return await self._claim(emergency_id, assignment, ranked,
                                         escalate=round_ == RERANKS or not ranked)
            except _AllTaken:
                log.info("every ranked unit was taken meanwhile; ranking again",
                         extra={"emergency_id": emergency_id, "round": round_})
        return False  # pragma: no cover - the last round escalates

    async def _claim(self, emergency_id: str, assignment: Document, ranked: list[Document],
                     *, escalate: bool) -> bool:
        async def write(uow: UnitOfWork) -> bool:
            taken = await store.start_assigning(uow.db, uow.session, emergency_id,
                                                assignment["attempts"], self.ctx.clock())
            if taken is None:
                return False
            task = await service.claim_and_offer(uow, self.ctx, taken, ranked,
                                                 or_escalate=escalate)
            if task is None and not escalate:
                raise _AllTaken  # rolls back start_assigning: still pending
            return True

        async with self.claiming:
            if ranked:  # skip the units claimed since the ranking (committed: no conflict)
                free = await store.still_available(
                    self.runtime.db, [c["_id"] for c in ranked],
                    fresh_since=fresh_since(self.ctx.clock(), self.ctx.max_age),
                    preempt_xray=preempts_xray(assignment))
                ranked = [c for c in ranked if c["_id"] in free]
                if not ranked and not escalate:
                    raise _AllTaken
            return await self.runtime.transact(write, actor="system:paramedic")

    async def sweep(self) -> bool:
        """One step of the loop: the ``pending`` assignment first in
        :data:`.waiting.WAITING_ORDER` (True: look again)."""
        pending = await waiting.next_pending(self.runtime.db)
        if pending is None:
            return False
        await self.assign(pending["_id"])
        return True

    def loop(self) -> Loop:
        return Loop("paramedic-assigner", self.sweep,
                    interval=self.ctx.settings.timer_interval_s, wakeup=self.wakeup)

    async def after_commit(self, emergency_id: str) -> None:
        """Assign right after the transaction that made it pending; a failure is left
        to the loop (logged), never undoes what committed."""
        try:
            await self.assign(emergency_id)
        except Exception:
            log.exception("assignment failed; the assigner loop retries",
                          extra={"emergency_id": emergency_id})
            self.wakeup.set()


class AssigningConsumer(Consumer):
    """The common inbox consumer, which offers a raised emergency (an X-ray order) once
    its ``emergency.raised`` (``xray.requested``) has committed."""

    def __init__(self, runtime: ServiceRuntime, handlers: Handlers, assigner: Assigner
                 ) -> None:
        super().__init__(runtime, handlers)
        self.assigner = assigner

    async def __call__(self, event: CloudEvent) -> None:
        await super().__call__(event)
        if not isinstance(event.data, dict):
            return
        if event.type in ("emergency.raised", "emergency.located"):  # (located: it
            # waited for want of a position); a P1's second unit too (if none: no-op)
            emergency_id = str(event.data.get("emergency_id"))
            await self.assigner.after_commit(emergency_id)
            await self.assigner.after_commit(slot_id(emergency_id, 2))
        elif event.type == "emergency.reprioritised":  # raised to P1: a second unit
            await self.assigner.after_commit(
                slot_id(str(event.data.get("emergency_id")), 2))
        elif event.type in ("emergency.status_changed", "xray.revoked", "xray.uploaded"):
            self.assigner.wakeup.set()  # a freed unit may have woken escalated ones
        elif event.type == "xray.requested":
            await self.assigner.after_commit(
                xraytasks.xray_assignment_id(str(event.data.get("order_id"))))
