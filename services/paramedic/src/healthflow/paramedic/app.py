"""The paramedic service's composition root: the runtime, its consumers, the road graph
(loaded in a thread after start), the three job workers (offer timers, escalation
retries, acknowledgement timers), the assigner (after each raise and decline, and its
loop) and the routes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI

from healthflow.common.events.consumer import Handlers
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.events.transport import Transport
from healthflow.common.http import create_service_app
from healthflow.common.jobs import Job, JobWorker
from healthflow.common.mongo import utcnow
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import load_settings
from healthflow.common.workers import Hooks
from healthflow.paramedic import acks, api, handlers, service, store
from healthflow.paramedic.assigner import Assigner, AssigningConsumer
from healthflow.paramedic.roads import Roads
from healthflow.paramedic.settings import Settings


def create_app(settings: Settings | None = None, transport: Transport | None = None,
               clock: Callable[[], datetime] = utcnow) -> FastAPI:
    """The paramedic service app (settings from ``PARAMEDIC_*`` when not given)."""
    settings = settings or load_settings(Settings)
    ctx = service.Context(settings=settings, clock=clock, roads=Roads(settings.road_graph))

    def consumer(rt: ServiceRuntime, table: Handlers) -> AssigningConsumer:
        return AssigningConsumer(rt, table, Assigner(rt, ctx))

    runtime = ServiceRuntime(settings, indexes=store.INDEXES,
                             handlers=handlers.make_handlers(ctx), transport=transport,
                             consumer_factory=consumer)
    assert isinstance(runtime.consumer, AssigningConsumer)
    assigner = runtime.consumer.assigner
    runtime.state["context"] = ctx
    runtime.state["assigner"] = assigner
    runtime.add_worker(Hooks("paramedic-road-graph", ctx.roads.start, ctx.roads.stop))
    runtime.readiness_checks["road_graph"] = ctx.roads.readiness

    async def offer_timeout(uow: UnitOfWork, job: Job) -> None:
        await service.on_offer_timeout(uow, ctx, job)

    async def retry(uow: UnitOfWork, job: Job) -> None:
        await service.on_assignment_retry(uow, ctx, job)

    async def ack_timeout(uow: UnitOfWork, job: Job) -> None:
        await acks.on_ack_timeout(uow, job, clock())

    for queue, handler in ((service.OFFER_TIMEOUT, offer_timeout),
                           (service.ASSIGNMENT_RETRY, retry),
                           (acks.ACK_TIMEOUT, ack_timeout)):
        worker = JobWorker(runtime, queue, handler, lease=30.0, clock=clock,
                           interval=settings.timer_interval_s)
        runtime.add_worker(worker.loop())
    runtime.add_worker(assigner.loop())
    return create_service_app(
        runtime, routers=[api.router], title="HealthFlow paramedics",
        description="Paramedic units (profile, duty status, position), their tasks, and "
                    "the assignment of emergencies to the nearest available unit.")
