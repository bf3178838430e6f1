"""Reminders: stored, fired by the clock, moved on reschedule, cancelled, once across replicas."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from healthflow.notification.app import create_app
from healthflow.notification.dispatch import ReminderScheduler

from ..conftest import Notif, appointment, user_registered

START = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)  # 09:30 CET
PHONE = "+4915100000100"


async def reminders(notif: Notif, appointment_id: str) -> dict[int, tuple[datetime, str]]:
    docs = notif.db["reminders"].find({"appointment_id": appointment_id})
    return {d["offset_minutes"]: (d["due_at"], d["status"]) async for d in docs}


def reminder_sms(notif: Notif) -> list[str]:
    return [m.body for m in notif.twilio.to(PHONE) if "Reminder" in m.body]


@pytest.fixture
async def booked(notif: Notif) -> Notif:
    await notif.stop_background()  # the test drives sending and the clock
    await notif.deliver(user_registered("pat-r", phone=PHONE))
    await notif.deliver(appointment("appointment.booked", "appt-r", "pat-r", START))
    await notif.settle()
    return notif


async def test_booking_stores_a_reminder_24h_and_1h_before(booked: Notif) -> None:
    assert await reminders(booked, "appt-r") == {
        1440: (START - timedelta(hours=24), "pending"),
        60: (START - timedelta(hours=1), "pending"),
    }


async def test_a_reminder_fires_when_the_clock_passes_its_time_and_only_once(
        booked: Notif) -> None:
    booked.clock.set(START - timedelta(hours=24, seconds=1))
    assert await booked.scheduler.run_due() == 0
    booked.clock.set(START - timedelta(hours=24))
    assert await booked.scheduler.run_due() == 1
    assert await booked.scheduler.run_due() == 0
    await booked.settle()
    assert reminder_sms(booked) == [
        "HealthFlow: Reminder: your appointment is on Wednesday, 25 November 2026, 09:30 CET."]
    mails = [m for m in booked.smtp.to("pat-r@patients.test")
             if m.message["Subject"] == "Reminder: your appointment"]
    assert len(mails) == 1
    assert (await reminders(booked, "appt-r"))[1440][1] == "sent"
    booked.clock.set(START - timedelta(minutes=59))
    assert await booked.scheduler.run_due() == 1
    await booked.settle()
    assert len(reminder_sms(booked)) == 2


async def test_a_reschedule_sends_an_update_and_moves_the_reminders(booked: Notif) -> None:
    new_start = START + timedelta(days=2, hours=1)  # Friday 10:30 CET
    await booked.deliver(appointment(
        "appointment.rescheduled", "appt-r", "pat-r", new_start,
        when=datetime.now(UTC) + timedelta(seconds=1), previous_start=START.isoformat(),
        previous_end=(START + timedelta(minutes=30)).isoformat(),
        rescheduled_by_role="patient"))
    await booked.settle()
    update = [m.body for m in booked.twilio.to(PHONE) if "moved" in m.body]
    assert update == ["HealthFlow: Your appointment has moved from Wednesday, 25 November "
                      "2026, 09:30 CET to Friday, 27 November 2026, 10:30 CET."]
    assert await reminders(booked, "appt-r") == {
        1440: (new_start - timedelta(hours=24), "pending"),
        60: (new_start - timedelta(hours=1), "pending"),
    }
    booked.clock.set(START - timedelta(minutes=30))  # the old times pass: nothing fires
    assert await booked.scheduler.run_due() == 0
    booked.clock.set(new_start - timedelta(hours=24))
    assert await booked.scheduler.run_due() == 1
    await booked.settle()
    assert reminder_sms(booked) == [
        "HealthFlow: Reminder: your appointment is on Friday, 27 November 2026, 10:30 CET."]


async def test_a_cancellation_cancels_the_reminders(booked: Notif) -> None:
    await booked.deliver(appointment(
        "appointment.cancelled", "appt-r", "pat-r", START,
        when=datetime.now(UTC) + timedelta(seconds=1), status="cancelled",
        cancelled_by="pat-r", cancelled_by_role="patient", reason_code="patient_request"))
    await booked.settle()
    assert [m.body for m in booked.twilio.to(PHONE) if "cancelled" in m.body] == [
        "HealthFlow: Your appointment on Wednesday, 25 November 2026, 09:30 CET is cancelled."]
    assert {s for _, s in (await reminders(booked, "appt-r")).values()} == {"cancelled"}
    booked.clock.set(START)
    assert await booked.scheduler.run_due() == 0
    await booked.settle()
    assert reminder_sms(booked) == []
    # a late, older "confirmed" does not bring the reminders back
    await booked.deliver(appointment("appointment.confirmed", "appt-r", "pat-r", START,
                                     when=datetime.now(UTC) - timedelta(hours=1)))
    assert {s for _, s in (await reminders(booked, "appt-r")).values()} == {"cancelled"}


async def test_two_replicas_fire_each_reminder_once(booked: Notif) -> None:
    ctx = booked.runtime.state["context"]
    other = ReminderScheduler(booked.runtime, ctx)  # a second replica's scheduler
    booked.clock.set(START - timedelta(minutes=30))  # both reminders are due
    fired = await asyncio.gather(booked.scheduler.run_due(), other.run_due(),
                                 booked.scheduler.run_due(), other.run_due())
    assert sum(fired) == 2
    await booked.settle()
    assert len(reminder_sms(booked)) == 2  # 24 h and 1 h, each once


async def test_reminders_survive_a_restart(booked: Notif) -> None:
    settings = booked.runtime.settings
    await booked.stop_background()
    restarted = create_app(settings, clock=booked.clock)  # type: ignore[arg-type]
    from healthflow.devkit.testing import running_app

    async with running_app(restarted):
        scheduler: ReminderScheduler = restarted.state.runtime.state["scheduler"]
        booked.clock.set(START - timedelta(hours=24))
        assert await scheduler.run_due() == 1
