"""The notification service's composition root."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common.events.transport import Transport
from healthflow.common.http import create_service_app
from healthflow.common.mongo import Document, utcnow
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import load_settings
from healthflow.common.workers import Hooks, Loop
from healthflow.notification import api, dispatch, handlers, service, store
from healthflow.notification.domain import Clock, SystemClock
from healthflow.notification.providers import EmailSender, PushSender, SmsSender
from healthflow.notification.settings import Settings


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _vapid_pair(private_der_b64: str) -> tuple[str, str]:
    padded = private_der_b64 + "=" * (-len(private_der_b64) % 4)
    key = serialization.load_der_private_key(base64.urlsafe_b64decode(padded), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the VAPID key must be a P-256 key")
    public = key.public_key().public_bytes(serialization.Encoding.X962,
                                           serialization.PublicFormat.UncompressedPoint)
    return private_der_b64, _b64url(public)


async def vapid_keys(db: AsyncDatabase[Document], settings: Settings) -> tuple[str, str]:
    """(private key as base64url PKCS#8 DER, public key as base64url X9.62 point).

    The configured key, else the one stored in ``service_keys`` (generated once,
    first writer wins, so every replica signs with the same key).
    """
    if settings.vapid_private_key is not None:
        return _vapid_pair(settings.vapid_private_key.get_secret_value())
    stored = await db[store.SERVICE_KEYS].find_one({"_id": "vapid"})
    if stored is None:
        key = ec.generate_private_key(ec.SECP256R1())
        der = key.private_bytes(serialization.Encoding.DER,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        await store.upsert_once(db, store.SERVICE_KEYS,
                                {"_id": "vapid", "private_key": _b64url(der),
                                 "created_at": utcnow()}, None)
        stored = await db[store.SERVICE_KEYS].find_one({"_id": "vapid"})
        assert stored is not None
    return _vapid_pair(stored["private_key"])


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

    async def on_start(runtime: ServiceRuntime) -> None:
        private, public = await vapid_keys(runtime.db, settings)
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
