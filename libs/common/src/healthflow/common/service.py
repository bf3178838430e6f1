"""The composition root of one service: database, transport, outbox relay, consumer.

Every service builds one :class:`ServiceRuntime` in its ``app.py`` and hands it
to :func:`healthflow.common.http.create_service_app`, whose lifespan calls
:meth:`ServiceRuntime.start` and :meth:`ServiceRuntime.stop`. Routes and event
handlers reach the runtime through ``request.app.state.runtime`` (see
:func:`runtime_dependency`) and change state only through :meth:`ServiceRuntime.transact`,
so that every write and the events it causes commit together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from healthflow.common import mongo, tracing
from healthflow.common.events.consumer import Consumer, Handlers
from healthflow.common.events.inprocess import InProcessTransport
from healthflow.common.events.outbox import UnitOfWork, outbox_indexes
from healthflow.common.events.relay import OutboxRelay
from healthflow.common.events.transport import Subscription, Transport
from healthflow.common.mongo import Document, Indexes
from healthflow.common.revocation import (
    RevocationFeed,
    RevocationState,
    http_snapshot,
    snapshot_url,
)
from healthflow.common.servicecredentials import caller_authorization
from healthflow.common.settings import ServiceSettings
from healthflow.common.workers import Worker

log = logging.getLogger(__name__)
T = TypeVar("T")

PLATFORM_DATABASE = "healthflow_platform"

_shared_inprocess: dict[str, InProcessTransport] = {}


def shared_inprocess_transport(mongodb_url: str) -> InProcessTransport:
    """The one in-process transport of this process (all services share it)."""
    transport = _shared_inprocess.get(mongodb_url)
    if transport is None:
        transport = InProcessTransport(mongo.get_database(mongodb_url, PLATFORM_DATABASE))
        _shared_inprocess[mongodb_url] = transport
    return transport


def make_transport(settings: ServiceSettings) -> Transport:
    """The transport ``settings.transport`` names (RabbitMQ or the shared in-process one)."""
    if settings.transport == "inprocess":
        return shared_inprocess_transport(settings.mongodb_url)
    from healthflow.common.events.rabbit.transport import RabbitTransport

    return RabbitTransport(settings.amqp_url,
                           platform_topology=settings.amqp_platform_topology)


START_RETRY_SECONDS = 60.0


def _start_retrying(what: str) -> AsyncRetrying:
    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("waiting for %s at start-up: %s", what, type(error).__name__)

    return AsyncRetrying(
        stop=stop_after_delay(START_RETRY_SECONDS),
        wait=wait_exponential_jitter(multiplier=0.5, max=5.0),
        retry=retry_if_exception_type((ConnectionError, OSError, PyMongoError)),
        before_sleep=log_retry,
        reraise=True,
    )


class ServiceRuntime:
    """Everything one service process holds: settings, database, transport, relay, consumer."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        indexes: Indexes | None = None,
        handlers: Handlers | None = None,
        transport: Transport | None = None,
        on_start: Callable[[ServiceRuntime], Awaitable[None]] | None = None,
        consumer_factory: Callable[[ServiceRuntime, Handlers], Consumer] = Consumer,
    ) -> None:
        self.settings = settings
        self.name = settings.service_name
        self.source = f"/healthflow/{self.name}"
        self.indexes: dict[str, Any] = {
            **outbox_indexes(settings.outbox_retention), **(indexes or {})}
        self.client = mongo.get_client(settings.mongodb_url)
        self.db: AsyncDatabase[Document] = mongo.get_database(
            settings.mongodb_url, settings.database_name
        )
        self._owns_transport = transport is None and settings.transport == "rabbitmq"
        self.transport = transport or make_transport(settings)
        self.relay = OutboxRelay(
            self.db,
            self.transport,
            service=self.name,
            batch_size=settings.outbox_batch_size,
            poll_interval=settings.outbox_poll_interval,
            lease=settings.outbox_lease,
            retention=settings.outbox_retention,
            max_backoff=settings.outbox_max_backoff,
        )
        self.consumer = consumer_factory(self, handlers) if handlers else None
        self.on_start = on_start
        self.started = False
        self.state: dict[str, Any] = {}
        self.workers: list[Worker] = []
        self.readiness_checks: dict[str, Callable[[], Awaitable[Any]]] = {}
        """Checks of the service's own (e.g. its background workers) added to ``/readyz``:
        each answers ``"ok"`` or a dict whose ``status`` is ``"lagging"`` when not ready."""
        self.revocations = RevocationState()
        """Revoked sessions, users' "not before" and keys, consulted by every token
        verifier of this service (:mod:`healthflow.common.revocation`)."""
        self.revocation_feed = RevocationFeed(
            self.name, self.revocations, self.transport,
            http_snapshot(settings.revocations_url or snapshot_url(settings.jwks_url),
                          headers=caller_authorization(settings)),
            sync_interval=settings.revocation_sync_interval)
        """Fills :attr:`revocations` (broadcast events and auth's snapshot); started by
        every service after its consumers. The auth service replaces its snapshot source."""

        async def revocation_readiness() -> dict[str, Any]:
            return self.revocation_feed.readiness()

        self.readiness_checks["revocations"] = revocation_readiness

    @property
    def subscription(self) -> Subscription | None:
        if self.consumer is None:
            return None
        return Subscription(
            service=self.name,
            patterns=self.consumer.patterns,
            handler=self.consumer,
            retry_delays=tuple(self.settings.retry_delays),
            prefetch=self.settings.prefetch,
        )

    def add_worker(self, worker: Worker) -> Worker:
        """Run ``worker`` (:mod:`healthflow.common.workers`) while the service runs: started
        after the consumers, stopped before them, in the order added. Returns it."""
        if any(w.name == worker.name for w in self.workers):
            raise ValueError(f"a worker named {worker.name!r} is registered already")
        self.workers.append(worker)
        return worker

    def worker(self, name: str) -> Worker:
        """The registered worker called ``name`` (``KeyError`` when none is)."""
        for worker in self.workers:
            if worker.name == name:
                return worker
        raise KeyError(name)

    async def start(self) -> None:
        """Indexes, transport, relay, consumers, then workers (readiness follows).

        The database and the broker may still be starting (a platform booting, a
        broker restarting): each first contact is retried with jittered back-off
        for up to :data:`START_RETRY_SECONDS` before start-up fails.
        """
        try:
            await self._start_parts()
        except BaseException:
            # Half started (a worker or hook failed): stop what runs, so nothing keeps
            # consuming or sending in a process whose start-up failed.
            try:
                await self.stop()
            except Exception:
                log.exception("stopping a half-started service failed")
            raise
        self.started = True
        log.info("service started", extra={"service": self.name})

    async def _start_parts(self) -> None:
        async for attempt in _start_retrying("MongoDB"):
            with attempt:
                await mongo.ensure_indexes(self.db, self.indexes)
        if not self.transport.connected:
            async for attempt in _start_retrying("the broker"):
                with attempt:
                    await self.transport.connect()
            if isinstance(self.transport, InProcessTransport):
                await self.transport.recover()
        await self.relay.start()
        if self.on_start is not None:
            await self.on_start(self)
        subscription = self.subscription
        if subscription is not None:
            await self.transport.subscribe(subscription)
        await self.revocation_feed.start()
        for worker in self.workers:
            await worker.start()

    async def stop(self) -> None:
        """Stop the workers (last added first), stop consuming (drain), stop the relay,
        close what this runtime owns."""
        self.started = False
        for worker in reversed(self.workers):
            try:
                await worker.stop()
            except Exception:
                log.exception("stopping a worker failed", extra={"worker": worker.name})
        await self.revocation_feed.stop()
        if isinstance(self.transport, InProcessTransport) and self.consumer is not None:
            await self.transport.unsubscribe(self.name)
        await self.relay.stop()
        if self._owns_transport:
            await self.transport.close()
        log.info("service stopped", extra={"service": self.name})

    async def transact(
        self,
        fn: Callable[[UnitOfWork], Awaitable[T]],
        *,
        actor: str | None = None,
    ) -> T:
        """Run ``fn(uow)`` in one transaction; the events it publishes commit with it.

        ``fn`` may run more than once (transient transaction errors are retried by
        the driver's rules) and must keep its side effects inside the session. The
        events record the trace context active now (the request's or delivery's span).
        """
        trace_context = tracing.event_context()
        written: list[Document] = []

        async def body(session: Any) -> T:
            uow = UnitOfWork(
                session, self.db, source=self.source, actor=actor, trace_context=trace_context,
                lease=self.relay.commit_lease(), settings=self.settings,
            )
            result = await fn(uow)
            await uow.flush()
            written[:] = uow.records
            return result

        result = await mongo.run_transaction(self.client, body)
        if written:
            if written[0]["lease_owner"] == self.relay.owner:
                self.relay.submit(written)
            else:  # no relay runs here (a CLI command): let the running ones know
                self.relay.notify(r["_id"] for r in written)
        return result

    async def readiness(self) -> Mapping[str, Any]:
        """Checks behind ``/readyz``: Mongo ping, broker, consumers, outbox lag (seconds)."""
        checks: dict[str, Any] = {}
        try:
            await asyncio.wait_for(self.client.admin.command("ping"), timeout=2)
            checks["mongodb"] = "ok"
        except Exception as exc:
            checks["mongodb"] = f"unavailable: {type(exc).__name__}"
        checks["broker"] = "ok" if self.transport.connected else "unavailable"
        if self.consumer is not None:
            checks["consumers"] = "attached" if self.transport.consuming else "detached"
        if checks["mongodb"] == "ok":
            try:
                pending, age = await self.relay.lag()
                checks["outbox"] = {"pending": pending, "oldest_age_seconds": round(age, 3)}
                if age > self.settings.readiness_max_outbox_lag:
                    checks["outbox"]["status"] = "lagging"
            except Exception as exc:
                checks["outbox"] = f"unavailable: {type(exc).__name__}"
        for name, check in self.readiness_checks.items():
            try:
                checks[name] = await check()
            except Exception as exc:
                checks[name] = f"unavailable: {type(exc).__name__}"
        return checks

    @staticmethod
    def is_ready(checks: Mapping[str, Any]) -> bool:
        if not checks.get("started", True):
            return False
        for value in checks.values():
            if isinstance(value, dict):
                if value.get("status") == "lagging":
                    return False
            elif value not in ("ok", "attached", True):
                return False
        return True
