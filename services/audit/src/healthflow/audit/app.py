"""Composition root of the audit service."""

from __future__ import annotations

from fastapi import FastAPI

from healthflow.audit import api, checkpoints, handlers, store, tree
from healthflow.audit.settings import Settings
from healthflow.common.blobs import BlobStore
from healthflow.common.events.transport import Transport
from healthflow.common.http import create_service_app
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import load_settings
from healthflow.common.workers import Hooks, Loop


async def _on_start(runtime: ServiceRuntime) -> None:
    await checkpoints.signer(runtime)  # no key in production: refuse to start
    await store.ensure_head(runtime.db)
    await tree.rebuild(runtime.db)


def create_app(settings: Settings | None = None, transport: Transport | None = None) -> FastAPI:
    """The audit app: consumes every event (``#``) into the chain; serves the compliance API.

    Its consumer is a :class:`~healthflow.audit.handlers.GroupCommitConsumer`
    (one transaction per group of concurrent deliveries; the entries' unique
    ``event_id`` makes a redelivery a no-op, no inbox record is written).
    Its worker signs a checkpoint every ``checkpoint_interval`` seconds when the
    log grew and writes it to the blob store (``checkpoint_to_blobs``) and a file.
    """
    settings = settings or load_settings(Settings)
    runtime = ServiceRuntime(
        settings, indexes=store.INDEXES, handlers=handlers.HANDLERS, transport=transport,
        on_start=_on_start,
        consumer_factory=lambda rt, table: handlers.GroupCommitConsumer(
            rt, table, max_batch=settings.append_batch_max
        ),
    )
    if settings.checkpoint_to_blobs:
        blobs = BlobStore(settings)
        runtime.add_worker(Hooks("blobs", blobs.start, blobs.close))
        runtime.state["blobs"] = blobs
    runtime.add_worker(Loop("audit-checkpoints", lambda: checkpoints.run_due(runtime),
                            interval=settings.checkpoint_interval))
    return create_service_app(
        runtime, routers=[api.router], title="HealthFlow audit",
        description="Append-only, hash-chained log of every event, for compliance officers.",
    )
