"""The reminder loop on the real clock: its own loop fires a due reminder, once.

The other reminder tests stop the loops and call ``run_due`` after moving a
settable clock (with ``reminder_interval`` an hour, the loop never fires there).
These run the app as deployed: :class:`SystemClock` and the loops its runtime
starts (:data:`~healthflow.notification.app.WORKERS`), nothing called by hand.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from healthflow.devkit.sandbox import SmtpSink, TwilioSink
from healthflow.devkit.testing import TokenFactory, eventually, running_app
from healthflow.notification import dispatch, store
from healthflow.notification.app import create_app
from healthflow.notification.settings import Settings
from healthflow.notification.store import UNLEASED

from ..conftest import Notif, appointment, user_registered

PHONE = "+4915100000777"
REMINDER = "Reminder: your appointment"


@pytest.fixture
def real_clock_settings(settings: Settings) -> Settings:
    # A one-minute reminder so that one falls due a few seconds into the test.
    return settings.model_copy(update={"reminder_interval": 0.5,
                                       "reminder_offsets_minutes": [60, 1]})


async def test_the_engine_fires_a_due_reminder_on_the_real_clock_exactly_once(
        real_clock_settings: Settings, tokens: TokenFactory, smtp: SmtpSink,
        twilio: TwilioSink) -> None:
    app = create_app(real_clock_settings)  # no clock passed: the system clock
    app.state.verifier = tokens.verifier()
    async with running_app(app):
        runtime = app.state.runtime
        consumer = runtime.consumer
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1, seconds=4)
        await consumer(user_registered("pat-live", phone=PHONE))
        await consumer(appointment("appointment.booked", "appt-live", "pat-live", start))
        due = start - timedelta(minutes=1)
        reminder = await runtime.db["reminders"].find_one({"_id": "appt-live:1"})
        assert reminder["status"] == "pending" and reminder["due_at"] == due

        def reminded() -> bool:
            return any(REMINDER in m.body for m in twilio.to(PHONE)) and any(
                m.message["Subject"] == REMINDER for m in smtp.to("pat-live@patients.test"))

        await eventually(reminded, within=20, interval=0.2,
                         message="the reminder loop never sent the due reminder")
        fired = await runtime.db["reminders"].find_one({"_id": "appt-live:1"})
        assert fired["status"] == "sent" and fired["fired_at"] >= due
        assert len(fired["delivery_ids"]) == 2  # email and SMS
        health = await runtime.state["scheduler"].health()
        assert health["status"] == "ok" and health["overdue"] == 0
        # Several more passes: nothing is sent twice.
        passed = runtime.state["scheduler"].last_pass
        await eventually(lambda: runtime.state["scheduler"].last_pass > passed + 1.5,
                         within=10, message="the scheduler stopped passing")
    assert len([m for m in twilio.to(PHONE) if REMINDER in m.body]) == 1
    assert len([m for m in smtp.to("pat-live@patients.test")
                if m.message["Subject"] == REMINDER]) == 1


async def test_an_overdue_reminder_is_reported_not_left_silently_pending(
        notif: Notif, caplog: pytest.LogCaptureFixture) -> None:
    """A reminder nobody fires (here: its loops stopped) shows in ``/readyz`` (without
    turning the replica away: that fixes no reminder), counts in the gauge and is logged
    as an error by the watch."""
    await notif.stop_background()
    scheduler = notif.scheduler
    now = notif.clock.now()
    await notif.db[store.REMINDERS].insert_one({
        "_id": "appt-stuck:60", "appointment_id": "appt-stuck", "user_id": "pat-x",
        "offset_minutes": 60, "due_at": now - timedelta(seconds=scheduler.grace() + 5),
        "status": "pending", "lease_owner": None, "lease_until": UNLEASED, "fired_at": None})
    ready = await notif.client.get("/readyz")
    assert ready.status_code == 200
    check = ready.json()["checks"]["reminders"]
    assert check["status"] == "overdue" and check["overdue"] == 1
    assert check["oldest_overdue_seconds"] >= scheduler.grace()
    metrics = (await notif.client.get("/metrics")).text
    assert "healthflow_notification_reminders_overdue 1.0" in metrics

    with caplog.at_level(logging.ERROR, logger="healthflow.notification.dispatch"):
        assert await notif.scheduler.watch() is False
    assert any("overdue" in r.getMessage() for r in caplog.records)

    # Once handled (the appointment is unknown here, so it is cancelled with that reason),
    # nothing is overdue any more.
    assert await scheduler.run_due() == 0
    stuck = await notif.db[store.REMINDERS].find_one({"_id": "appt-stuck:60"})
    assert stuck["status"] == "cancelled" and stuck["reason"] == "appointment_unknown"
    assert (await notif.client.get("/readyz")).json()["checks"]["reminders"]["status"] == "ok"


async def test_a_reminder_that_cannot_be_fired_is_retried_then_failed_with_its_error(
        notif: Notif, caplog: pytest.LogCaptureFixture) -> None:
    """A firing that keeps failing (here: a stored appointment the service cannot read)
    neither blocks the other reminders nor stays ``pending`` unseen."""
    await notif.stop_background()
    scheduler, lease = notif.scheduler, notif.runtime.settings.delivery_lease
    now = notif.clock.now()
    await notif.db[store.APPOINTMENTS].insert_one(
        {"_id": "appt-bad", "patient_id": "pat-x", "data": {"start": "not a time"},
         "event_time": now, "status": "booked"})
    await notif.db[store.REMINDERS].insert_many([
        {"_id": "appt-bad:60", "appointment_id": "appt-bad", "user_id": "pat-x",
         "offset_minutes": 60, "due_at": now - timedelta(seconds=2), "status": "pending",
         "lease_owner": None, "lease_until": UNLEASED, "fired_at": None},
        {"_id": "appt-gone:60", "appointment_id": "appt-gone", "user_id": "pat-y",
         "offset_minutes": 60, "due_at": now - timedelta(seconds=1), "status": "pending",
         "lease_owner": None, "lease_until": UNLEASED, "fired_at": None}])
    with caplog.at_level(logging.ERROR, logger="healthflow.notification.dispatch"):
        await asyncio.wait_for(scheduler.run_due(), timeout=90)  # fail, never hang CI
    assert any("firing a reminder failed" in r.getMessage() for r in caplog.records)
    gone = await notif.db[store.REMINDERS].find_one({"_id": "appt-gone:60"})
    assert gone["status"] == "cancelled"  # the next reminder was still handled
    bad = await notif.db[store.REMINDERS].find_one({"_id": "appt-bad:60"})
    assert bad["status"] == "pending" and bad["attempts"] == 1 and bad["last_error"]
    # Held by its failing firing's lease, it still counts as overdue once long enough late.
    notif.clock.advance(seconds=scheduler.grace() + lease - 1)
    assert (await scheduler.health())["overdue"] == 1
    for _ in range(dispatch.REMINDER_ATTEMPTS - 1):
        notif.clock.advance(seconds=lease + 1)
        await asyncio.wait_for(scheduler.run_due(), timeout=90)
    failed = await notif.db[store.REMINDERS].find_one({"_id": "appt-bad:60"})
    assert failed["status"] == "failed" and failed["attempts"] == dispatch.REMINDER_ATTEMPTS
    assert "ValueError" in failed["last_error"] or "Error" in failed["last_error"]
    assert (await scheduler.health())["overdue"] == 0
