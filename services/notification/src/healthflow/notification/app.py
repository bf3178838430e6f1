"""The notification service's composition root."""

from __future__ import annotations

from fastapi import FastAPI

from healthflow.common import migrations
from healthflow.common.events.transport import Transport
from healthflow.common.http import create_service_app
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import load_settings
from healthflow.common.workers import Hooks, Loop
from healthflow.notification import api, dispatch, handlers, service, store, vapid
from healthflow.notification.domain import Clock, SystemClock
from healthflow.notification.providers import EmailSender, PushSender, SmsSender
from healthflow.notification.settings import Settings

WORKERS = ("notification-dispatch", "notification-reminders", "notification-reminder-watch")
"""The background loops every replica runs (see :mod:`healthflow.notification.dispatch`)."""


def create_app(settings: Settings | None = None, transport: Transport | None = None,
               clock: Clock | None = None) -> FastAPI:
    """The notification app.

    ``clock`` defaults to the system clock; tests pass a
    :class:`~healthflow.notification.domain.SettableClock`. The runtime's
    ``state`` holds ``context``, ``dispatcher``, ``scheduler`` and the VAPID
    public key once started; its workers are the channel clients and the loops in
    :data:`WORKERS`. It starts no provider stand-in: it sends to the SMTP server and
    Twilio API its settings name (``make run`` points them at its local mailbox).
    """
    settings = settings or load_settings(Settings)
    ctx = service.Context(settings=settings, clock=clock or SystemClock())
    table = handlers.make_handlers(ctx)
    senders = dispatch.Senders(EmailSender(settings), SmsSender(settings), None)
    wrapper = settings.key_wrapper()

    async def on_start(runtime: ServiceRuntime) -> None:
        await migrations.apply_once(runtime.db, "deliveries.hospital_ids",
                                    lambda: store.adopt_delivery_hospitals(runtime.db))
        private, public = await vapid.vapid_keys(runtime.db, settings, wrapper)
        senders.push = PushSender(settings, private)
        runtime.state["vapid_public_key"] = public

    runtime = ServiceRuntime(settings, indexes=store.INDEXES, handlers=table,
                             transport=transport, on_start=on_start)
    dispatcher = dispatch.Dispatcher(runtime, ctx, senders)
    scheduler = dispatch.ReminderScheduler(runtime, ctx, on_fired=dispatcher.wake)
    runtime.consumer = handlers.NotifyingConsumer(runtime, table, dispatcher.wake)
    runtime.state.update(context=ctx, dispatcher=dispatcher, scheduler=scheduler)
    runtime.readiness_checks["reminders"] = scheduler.health
    runtime.add_worker(Hooks("notification-senders", _nothing, senders.close))
    dispatch_name, reminders_name, watch_name = WORKERS
    runtime.add_worker(Loop(dispatch_name, dispatcher.run_due,
                            interval=settings.dispatch_interval, wakeup=dispatcher.wakeup))
    runtime.add_worker(Loop(reminders_name, scheduler.run_due,
                            interval=settings.reminder_interval))
    runtime.add_worker(Loop(watch_name, scheduler.watch, interval=scheduler.grace()))
    return create_service_app(
        runtime, routers=[api.router], title="HealthFlow notifications",
        description="Email, SMS, Web Push and the in-app feed; reminders; the delivery log.",
    )


async def _nothing() -> None:
    return None
