"""Confirmations by SMS and email through the real clients, once, with consent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from healthflow.common.events.outbox import recorded_events
from healthflow.devkit.testing import eventually
from healthflow.notification import messages, service
from healthflow.notification.domain import SettableClock

from ..conftest import NOW, Notif, appointment, event, user_registered

START = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)  # 09:30 CET in Berlin, 14:00 IST in Kolkata


async def directory(notif: Notif) -> None:
    await notif.deliver(
        event("doctor.registered", {"doctor_id": "doc-1", "version": 1,
                                    "display_name": "Dr. Ada Lovelace", "specialties": [],
                                    "hospital_ids": ["hosp-1"]}),
        event("hospital.registered", {"hospital_id": "hosp-1", "version": 1,
                                      "name": "St. Mary's <Clinic>", "city": "Berlin",
                                      "country": "DE", "time_zone": "Europe/Berlin",
                                      "status": "pending", "services": [],
                                      "registered_by": "u"}),
    )


async def test_booking_sends_one_sms_and_one_email_in_the_hospitals_local_time(
        notif: Notif) -> None:
    await directory(notif)
    await notif.deliver(user_registered("pat-1", email="eve@patients.test"))
    notif.clock.advance(seconds=1)
    booked = appointment("appointment.booked", "appt-1", "pat-1", START)
    await notif.deliver(booked)

    await eventually(lambda: len(notif.twilio.to("+4915112345678")) == 1
                     and len(notif.smtp.to("eve@patients.test")) == 2,
                     message="confirmation SMS and email (plus the welcome) not received")
    sms = notif.twilio.to("+4915112345678")[0]
    assert sms.body == ("HealthFlow: Your appointment with Dr. Ada Lovelace is booked for "
                        "Wednesday, 25 November 2026, 09:30 CET at St. Mary's <Clinic>, Berlin.")
    assert sms.from_ == notif.runtime.settings.twilio_from  # type: ignore[attr-defined]
    assert sms.status_callback == "https://gateway.test/api/v1/notifications/twilio/status"
    mail = next(m for m in notif.smtp.to("eve@patients.test")
                if m.message["Subject"] == "Your appointment is booked")
    assert mail.message.get_content_type() == "multipart/alternative"
    assert "09:30 CET" in mail.part("text/plain")
    html = mail.part("text/html")
    assert "09:30 CET" in html and "St. Mary&#39;s &lt;Clinic&gt;, Berlin" in html
    assert "Hello Eve Example," in mail.part("text/plain")

    async def logged() -> bool:
        return {(d["channel"], d["status"]) for d in await notif.deliveries(
            source_id=booked.id)} == {("sms", "sent"), ("email", "sent")}

    await eventually(logged, message="deliveries not recorded as sent")
    sms_delivery = (await notif.deliveries(source_id=booked.id, channel="sms"))[0]
    assert sms_delivery["provider_id"] == sms.sid
    email_delivery = (await notif.deliveries(source_id=booked.id, channel="email"))[0]
    assert email_delivery["provider_id"] == mail.message["Message-ID"]

    # notification.sent reached the outbox, without the body or the address
    recorded = await recorded_events(notif.db, {"type": "notification.sent"})
    sent = {e.data["delivery_id"]: e.data for e in recorded}
    data = sent[sms_delivery["_id"]]
    assert data == {"delivery_id": sms_delivery["_id"], "channel": "sms",
                    "template": "appointment_booked", "trigger": "appointment.booked",
                    "user_id": "pat-1", "provider_id": sms.sid, "attempts": 1}
    assert "+4915112345678" not in str(recorded) and "09:30" not in str(recorded)

    # the in-app feed has it too
    feed = (await notif.client.get("/api/v1/notifications/feed",
                                   headers=notif.headers("pat-1"))).json()
    assert [i["template"] for i in feed["items"]] == ["appointment_booked", "welcome"]


async def test_german_patient_in_another_zone_reads_german_and_local_time(
        notif: Notif) -> None:
    await notif.deliver(user_registered("pat-de", phone="+4917000000001"))
    response = await notif.client.put(
        "/api/v1/notifications/preferences", headers=notif.headers("pat-de"),
        json={"locale": "de", "quiet_hours": ""})
    assert response.status_code == 200, response.text
    await notif.deliver(appointment("appointment.booked", "appt-de", "pat-de", START,
                                    tz="Asia/Kolkata"))
    await eventually(lambda: len(notif.twilio.to("+4917000000001")) == 1)
    body = notif.twilio.to("+4917000000001")[0].body
    assert body == "HealthFlow: Ihr Termin ist gebucht: Mittwoch, 25.11.2026, 14:00 Uhr IST."


async def test_the_same_event_delivered_twice_sends_once(notif: Notif) -> None:
    await notif.deliver(user_registered("pat-2", phone="+4915100000002"))
    booked = appointment("appointment.booked", "appt-2", "pat-2", START)
    await notif.deliver(booked, booked)  # the inbox drops the second
    # and even past the inbox (a handler re-run), the delivery ids repeat: nothing new
    ctx: service.Context = notif.runtime.state["context"]

    async def again(uow: object) -> None:
        await service.apply_appointment(uow, booked.type, dict(booked.data),  # type: ignore[arg-type]
                                        booked.time, booked.id, ctx)

    await notif.runtime.transact(again)
    await notif.settle()
    await eventually(lambda: len(notif.twilio.to("+4915100000002")) == 1)
    await notif.settle()
    assert len(notif.twilio.to("+4915100000002")) == 1
    assert len(notif.smtp.to("pat-2@patients.test")) == 2  # welcome + confirmation
    assert len(await notif.deliveries(source_id=booked.id)) == 2


async def test_withdrawn_sms_consent_means_no_sms_but_email_still_goes(notif: Notif) -> None:
    await notif.deliver(
        user_registered("pat-3", phone="+4915100000003"),
        event("patient.consent_changed", {"patient_id": "pat-3", "channel": "sms",
                                          "granted": False, "at": NOW.isoformat()}),
    )
    booked = appointment("appointment.booked", "appt-3", "pat-3", START)
    await notif.deliver(booked)
    await eventually(lambda: len(notif.smtp.to("pat-3@patients.test")) == 2)
    await notif.settle()
    assert notif.twilio.to("+4915100000003") == []
    sms = await notif.deliveries(source_id=booked.id, channel="sms")
    assert [(d["status"], d["reason"], d["to"]) for d in sms] == [
        ("suppressed", "no_consent", None)]
    # an older event granting it again does not override the newer withdrawal
    await notif.deliver(event("patient.consent_changed", {
        "patient_id": "pat-3", "channel": "sms", "granted": True,
        "at": (NOW - timedelta(days=1)).isoformat()}))
    prefs = (await notif.client.get("/api/v1/notifications/preferences",
                                    headers=notif.headers("pat-3"))).json()
    assert prefs["consent"] == {"email": True, "sms": False, "push": True}


async def test_consent_withdrawn_after_queueing_stops_the_sms_at_send_time(
        notif: Notif) -> None:
    notif.dispatcher.wakeup.clear()
    await notif.stop_background()  # nothing sends until the test says so
    await notif.deliver(user_registered("pat-4", phone="+4915100000004"))
    booked = appointment("appointment.booked", "appt-4", "pat-4", START)
    await notif.deliver(booked)
    assert [d["status"] for d in await notif.deliveries(source_id=booked.id)] == [
        "queued", "queued"]
    await notif.deliver(event("patient.consent_changed", {
        "patient_id": "pat-4", "channel": "sms", "granted": False, "at": NOW.isoformat()}))
    await notif.settle()
    assert notif.twilio.to("+4915100000004") == []
    statuses = {d["channel"]: (d["status"], d["reason"])
                for d in await notif.deliveries(source_id=booked.id)}
    assert statuses == {"sms": ("suppressed", "no_consent"), "email": ("sent", None)}


async def test_quiet_hours_defer_a_non_urgent_sms_until_they_end(
        notif: Notif, clock: SettableClock) -> None:
    await notif.stop_background()
    clock.set(datetime(2026, 11, 23, 22, 30, tzinfo=UTC))  # 23:30 in Berlin
    await notif.deliver(user_registered("pat-5", phone="+4915100000005"))
    response = await notif.client.put(
        "/api/v1/notifications/preferences", headers=notif.headers("pat-5"),
        json={"quiet_hours": "22:00-07:00", "timezone": "Europe/Berlin"})
    assert response.json()["quiet_hours"] == "22:00-07:00"
    booked = appointment("appointment.booked", "appt-5", "pat-5", START)
    await notif.deliver(booked)
    await notif.settle()
    assert len(notif.smtp.to("pat-5@patients.test")) == 2  # email does not wait
    assert notif.twilio.to("+4915100000005") == []
    sms = (await notif.deliveries(source_id=booked.id, channel="sms"))[0]
    assert (sms["status"], sms["reason"]) == ("queued", "quiet_hours")
    assert sms["next_attempt_at"] == datetime(2026, 11, 24, 6, 0, tzinfo=UTC)  # 07:00 CET
    clock.set(datetime(2026, 11, 24, 5, 59, tzinfo=UTC))
    await notif.settle()
    assert notif.twilio.to("+4915100000005") == []
    clock.set(datetime(2026, 11, 24, 6, 0, tzinfo=UTC))
    await notif.settle()
    assert len(notif.twilio.to("+4915100000005")) == 1


async def test_welcome_email_carries_a_verification_link_for_that_address(
        notif: Notif) -> None:
    from urllib.parse import parse_qs, urlparse

    from healthflow.notification import domain

    await notif.deliver(user_registered("pat-6", email="new@patients.test"))
    await eventually(lambda: len(notif.smtp.to("new@patients.test")) == 1)
    mail = notif.smtp.to("new@patients.test")[0]
    text = mail.part("text/plain")
    link = next(word for word in text.split() if "verify-email" in word)
    token = parse_qs(urlparse(link).query)["token"][0]
    secret = notif.runtime.settings.email_verification_secret  # type: ignore[attr-defined]
    key = secret.get_secret_value().encode()
    assert domain.check_verification_token(key, token, "new@patients.test", NOW) == "pat-6"
    assert domain.check_verification_token(key, token, "other@patients.test", NOW) is None
    assert domain.check_verification_token(key, token, "new@patients.test",
                                           NOW + timedelta(days=3)) is None
    assert notif.twilio.messages == []  # no SMS for a welcome


async def test_urgent_messages_bypass_quiet_hours_but_never_consent(
        notif: Notif, clock: SettableClock) -> None:
    from healthflow.notification.domain import Channel, MessageKind

    await notif.stop_background()
    clock.set(datetime(2026, 11, 23, 23, 0, tzinfo=UTC))  # midnight in Berlin
    await notif.deliver(user_registered("pat-u1", phone="+4915100000801"),
                        user_registered("pat-u2", phone="+4915100000802"),
                        event("patient.consent_changed", {
                            "patient_id": "pat-u2", "channel": "sms", "granted": False,
                            "at": NOW.isoformat()}))
    for user in ("pat-u1", "pat-u2"):
        await notif.client.put("/api/v1/notifications/preferences", headers=notif.headers(user),
                               json={"quiet_hours": "22:00-07:00", "timezone": "Europe/Berlin"})
    urgent = MessageKind("appointment_cancelled", channels=(Channel.SMS,), urgent=True)
    ctx: service.Context = notif.runtime.state["context"]
    context = {"when": "now", "doctor": None, "place": None}
    for user in ("pat-u1", "pat-u2"):
        async def plan(uow: object, user: str = user) -> None:
            await messages.plan_message(uow, ctx, user_id=user, kind=urgent,  # type: ignore[arg-type]
                                       source_id=f"urgent-{user}", trigger=None,
                                       context=context)

        await notif.runtime.transact(plan)
    await notif.settle()
    assert len(notif.twilio.to("+4915100000801")) == 1  # sent in the middle of the night
    assert notif.twilio.to("+4915100000802") == []  # withdrawn consent still wins


async def test_a_reminder_that_quiet_hours_would_push_past_the_visit_goes_by_email_only(
        notif: Notif, clock: SettableClock) -> None:
    await notif.stop_background()
    await notif.deliver(user_registered("pat-e", phone="+4915100000803"))
    await notif.client.put("/api/v1/notifications/preferences", headers=notif.headers("pat-e"),
                           json={"quiet_hours": "22:00-07:00", "timezone": "Europe/Berlin"})
    early = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # 07:00 CET: the 1 h reminder is at 06:00
    await notif.deliver(appointment("appointment.booked", "appt-e", "pat-e", early))
    await notif.settle()
    clock.set(early - timedelta(hours=1))
    assert await notif.scheduler.run_due() == 2  # the 24 h one is late but still useful
    await notif.settle()
    reminders = await notif.deliveries(template="appointment_reminder", channel="sms")
    assert sorted((d["status"], d["reason"]) for d in reminders) == [
        ("suppressed", "quiet_hours"), ("suppressed", "quiet_hours")]
    mails = [m for m in notif.smtp.to("pat-e@patients.test")
             if m.message["Subject"] == "Reminder: your appointment"]
    assert len(mails) == 2


async def test_a_booking_seen_before_the_registration_waits_for_the_contact(
        notif: Notif, clock: SettableClock) -> None:
    await notif.stop_background()
    booked = appointment("appointment.booked", "appt-late", "pat-late", START)
    await notif.deliver(booked)  # user.registered is still on its way
    await notif.settle()
    waiting = await notif.deliveries(source_id=booked.id)
    assert {(d["channel"], d["status"], d["attempts"]) for d in waiting} == {
        ("email", "queued", 1), ("sms", "queued", 1)}
    await notif.deliver(user_registered("pat-late", phone="+4915100000804"))
    clock.advance(seconds=30)
    await notif.settle()
    assert len(notif.twilio.to("+4915100000804")) == 1
    sent = {d["channel"]: d for d in await notif.deliveries(source_id=booked.id)}
    assert sent["sms"]["status"] == "sent" and sent["sms"]["to"] == "+4915100000804"
    assert sent["email"]["status"] == "sent"


async def test_a_booking_overtaken_by_its_reschedule_is_still_confirmed_at_the_new_time(
        notif: Notif) -> None:
    """Events of one appointment may arrive out of order; the confirmation is still owed."""
    await directory(notif)
    await notif.deliver(user_registered("pat-9", email="late@patients.test", phone=None))
    booked = appointment("appointment.booked", "appt-9", "pat-9", START,
                         when=NOW + timedelta(seconds=1))
    moved_to = START + timedelta(hours=2)
    rescheduled = appointment("appointment.rescheduled", "appt-9", "pat-9", moved_to,
                              when=NOW + timedelta(seconds=2),
                              previous_start=START.isoformat(),
                              previous_end=(START + timedelta(minutes=30)).isoformat(),
                              rescheduled_by_role="patient")
    await notif.deliver(rescheduled)
    await notif.deliver(booked)  # arrives late

    def subjects() -> list[str]:
        return sorted(m.message["Subject"] for m in notif.smtp.to("late@patients.test")
                      if "appointment" in m.message["Subject"])

    await eventually(lambda: len(subjects()) == 2, message="confirmation and update not sent")
    confirmation = next(m for m in notif.smtp.to("late@patients.test")
                        if m.message["Subject"] == "Your appointment is booked")
    assert "11:30 CET" in confirmation.part("text/plain")  # the current time, not 09:30


async def test_a_late_booking_of_a_cancelled_appointment_sends_no_confirmation(
        notif: Notif) -> None:
    await directory(notif)
    await notif.deliver(user_registered("pat-8", email="gone@patients.test", phone=None))
    booked = appointment("appointment.booked", "appt-8", "pat-8", START,
                         when=NOW + timedelta(seconds=1))
    cancelled = appointment("appointment.cancelled", "appt-8", "pat-8", START,
                            when=NOW + timedelta(seconds=2), status="cancelled",
                            cancelled_by="pat-8", cancelled_by_role="patient",
                            reason_code="patient_request")
    await notif.deliver(cancelled)
    await notif.deliver(booked)

    async def cancellation_sent() -> bool:
        return any(m.message["Subject"] != "Welcome to HealthFlow - please confirm your email"
                   for m in notif.smtp.to("gone@patients.test"))

    await eventually(cancellation_sent, message="the cancellation notice was not sent")
    assert not any(m.message["Subject"] == "Your appointment is booked"
                   for m in notif.smtp.to("gone@patients.test"))
