"""Phone verification: a one-time SMS code (through the Twilio sink) verifies the account's
current number; wrong, expired, used-up and foreign codes get one constant 422; a new code
waits for the cooldown (429) and five a day are texted at most; a changed number is
unverified again; non-essential SMS waits for a verified number while
``require_verified_phone`` is on."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from healthflow.devkit.sandbox import SmtpSink, TwilioSink
from healthflow.devkit.testing import TokenFactory, eventually, running_app
from healthflow.notification import store, verification
from healthflow.notification.app import create_app
from healthflow.notification.domain import SettableClock
from healthflow.notification.settings import Settings

from ..conftest import Notif, appointment, event, user_registered
from .test_task_offered import offered

SEND = "/api/v1/notifications/phone/verification"
VERIFY = "/api/v1/notifications/phone/verify"
START = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)  # 09:30 CET


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"require_verified_phone": True})


async def request_code(notif: Notif, user_id: str, phone: str) -> str:
    """Ask for a code as ``user_id`` and read it from the SMS the Twilio sink received."""
    before = len(notif.twilio.to(phone))
    response = await notif.client.post(SEND, headers=notif.headers(user_id))
    assert response.status_code == 202, response.text
    assert response.json()["to"] == phone[:3] + "*" * (len(phone) - 7) + phone[-4:]
    await eventually(lambda: len(notif.twilio.to(phone)) == before + 1,
                     message="no verification SMS")
    body = notif.twilio.to(phone)[-1].body
    match = re.search(r"\b(\d{6})\b", body)
    assert match is not None, body
    return match.group(1)


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** 6:06d}"


async def verify(notif: Notif, user_id: str, code: str) -> tuple[int, dict[str, object]]:
    response = await notif.client.post(VERIFY, json={"code": code},
                                       headers=notif.headers(user_id))
    if response.status_code != 200:
        assert response.headers["content-type"].startswith("application/problem+json")
    return response.status_code, response.json()


async def contact(notif: Notif, user_id: str) -> dict[str, object]:
    doc = await notif.db[store.CONTACTS].find_one({"_id": user_id})
    assert doc is not None
    return doc


async def test_the_texted_code_verifies_the_number_once_and_is_stored_hashed(
        notif: Notif) -> None:
    await notif.deliver(user_registered("pat-p1", phone="+4915100000201"))
    code = await request_code(notif, "pat-p1", "+4915100000201")
    stored = await notif.db[store.PHONE_CODES].find_one({"_id": "pat-p1"})
    assert stored is not None and code not in str(stored)

    assert await verify(notif, "pat-p1", code) == (
        200, {"user_id": "pat-p1", "phone_verified": True})
    assert verification.phone_verified(await contact(notif, "pat-p1"))
    assert (await contact(notif, "pat-p1"))["phone_verified_for"] == \
        verification.number_hash("+4915100000201")
    status, problem = await verify(notif, "pat-p1", code)  # used up
    assert status == 422 and problem["detail"] == verification.BAD_CODE
    # the sent SMS is in the delivery log, without its body (the code)
    [sent] = await notif.deliveries(user_id="pat-p1", template="phone_verification")
    assert sent["status"] == "sent" and sent["content"] is None
    again = await notif.client.post(SEND, headers=notif.headers("pat-p1"))
    assert again.status_code == 409  # already verified: no SMS spent


async def test_wrong_codes_get_422_and_the_fifth_voids_the_code(notif: Notif) -> None:
    await notif.deliver(user_registered("pat-p2", phone="+4915100000202"))
    code = await request_code(notif, "pat-p2", "+4915100000202")
    details = set()
    for _ in range(5):
        status, problem = await verify(notif, "pat-p2", other_code(code))
        assert status == 422
        details.add(problem["detail"])
    status, problem = await verify(notif, "pat-p2", code)  # right, but void now
    assert status == 422
    details.add(problem["detail"])
    assert details == {verification.BAD_CODE}
    assert not verification.phone_verified(await contact(notif, "pat-p2"))
    malformed = await notif.client.post(VERIFY, json={"code": "12ab56"},
                                        headers=notif.headers("pat-p2"))
    assert malformed.status_code == 422  # a schema violation, as everywhere


async def test_an_expired_code_is_refused(notif: Notif) -> None:
    await notif.deliver(user_registered("pat-p3", phone="+4915100000203"))
    code = await request_code(notif, "pat-p3", "+4915100000203")
    notif.clock.advance(minutes=10)  # the default 10 minutes are over
    status, problem = await verify(notif, "pat-p3", code)
    assert (status, problem["detail"]) == (422, verification.BAD_CODE)
    assert not verification.phone_verified(await contact(notif, "pat-p3"))


async def test_a_new_code_waits_for_the_cooldown_and_replaces_the_old_one(
        notif: Notif) -> None:
    await notif.deliver(user_registered("pat-p4", phone="+4915100000204"))
    first = await request_code(notif, "pat-p4", "+4915100000204")
    notif.clock.advance(seconds=20)
    refused = await notif.client.post(SEND, headers=notif.headers("pat-p4"))
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.headers["retry-after"] == "40"
    assert len(notif.twilio.to("+4915100000204")) == 1
    notif.clock.advance(seconds=40)
    second = await request_code(notif, "pat-p4", "+4915100000204")
    if second != first:  # one chance in a million that the new code is the same
        assert (await verify(notif, "pat-p4", first))[0] == 422
    assert (await verify(notif, "pat-p4", second))[0] == 200


async def test_codes_a_day_are_capped_per_account_and_per_number(notif: Notif) -> None:
    """Each new code brings fresh tries: five codes a day per account and per number
    bound a guesser to 25 guesses a day; the 429 says when the day's window ends."""
    phone = "+4915100000209"
    await notif.deliver(user_registered("pat-p9", phone=phone))
    await notif.deliver(user_registered("pat-p10", phone=phone))  # a second account
    for _ in range(5):
        await request_code(notif, "pat-p9", phone)
        notif.clock.advance(seconds=60)
    for user_id in ("pat-p9", "pat-p10"):  # the account's budget, then the number's
        refused = await notif.client.post(SEND, headers=notif.headers(user_id))
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == str(24 * 3600 - 5 * 60)
    assert len(notif.twilio.to(phone)) == 5
    notif.clock.advance(seconds=24 * 3600 - 5 * 60)
    code = await request_code(notif, "pat-p10", phone)
    assert (await verify(notif, "pat-p10", code))[0] == 200


async def test_a_changed_number_is_unverified_again(notif: Notif) -> None:
    await notif.deliver(user_registered("pat-p5", phone="+4915100000205"))
    code = await request_code(notif, "pat-p5", "+4915100000205")
    assert (await verify(notif, "pat-p5", code))[0] == 200
    await notif.deliver(user_registered("pat-p5", phone="+4915100000255"))
    assert not verification.phone_verified(await contact(notif, "pat-p5"))
    notif.clock.advance(seconds=61)
    new_code = await request_code(notif, "pat-p5", "+4915100000255")
    assert (await verify(notif, "pat-p5", new_code))[0] == 200
    assert verification.phone_verified(await contact(notif, "pat-p5"))


async def test_a_code_for_the_old_number_does_not_verify_the_new_one(notif: Notif) -> None:
    await notif.deliver(user_registered("pat-p6", phone="+4915100000206"))
    code = await request_code(notif, "pat-p6", "+4915100000206")
    await notif.deliver(user_registered("pat-p6", phone="+4915100000266"))
    assert (await verify(notif, "pat-p6", code))[0] == 422
    assert not verification.phone_verified(await contact(notif, "pat-p6"))


async def test_nobody_verifies_someone_elses_number(notif: Notif) -> None:
    await notif.deliver(user_registered("pat-own", phone="+4915100000207"),
                        user_registered("pat-other", phone="+4915100000208"))
    code = await request_code(notif, "pat-own", "+4915100000207")
    # the routes take no user or number: another account's try checks its own code (none)
    assert (await verify(notif, "pat-other", code))[0] == 422
    assert not verification.phone_verified(await contact(notif, "pat-other"))
    assert not verification.phone_verified(await contact(notif, "pat-own"))
    anonymous = await notif.client.post(VERIFY, json={"code": code})
    assert anonymous.status_code == 401
    assert (await notif.client.post(SEND)).status_code == 401
    assert (await verify(notif, "pat-own", code))[0] == 200  # the other's try spent none


async def test_no_number_is_409(notif: Notif) -> None:
    await notif.deliver(user_registered("pat-nonum", phone=None))
    response = await notif.client.post(SEND, headers=notif.headers("pat-nonum"))
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_reminder_sms_waits_for_a_verified_number(notif: Notif) -> None:
    phone = "+4915100000209"
    await notif.stop_background()  # the test drives sending and the clock
    await notif.deliver(user_registered("pat-rem", phone=phone))
    await notif.deliver(appointment("appointment.booked", "appt-p", "pat-rem", START))
    await notif.settle()
    notif.clock.set(START - timedelta(hours=24))
    assert await notif.scheduler.run_due() == 1
    await notif.settle()
    [skipped] = await notif.deliveries(user_id="pat-rem", channel="sms",
                                       template="appointment_reminder")
    assert (skipped["status"], skipped["reason"]) == ("suppressed", "unverified")
    assert notif.twilio.to(phone) == []  # the booking's SMS waited too

    response = await notif.client.post(SEND, headers=notif.headers("pat-rem"))
    assert response.status_code == 202, response.text
    await notif.settle()
    [texted] = notif.twilio.to(phone)  # the verification code goes to the unverified number
    code = re.search(r"\b(\d{6})\b", texted.body)
    assert code is not None
    assert (await verify(notif, "pat-rem", code.group(1)))[0] == 200

    notif.clock.set(START - timedelta(minutes=59))
    assert await notif.scheduler.run_due() == 1
    await notif.settle()
    reminders = [m.body for m in notif.twilio.to(phone) if "Reminder" in m.body]
    assert len(reminders) == 1


async def test_urgent_staff_sms_goes_to_an_unverified_number(notif: Notif) -> None:
    await notif.deliver(user_registered("para-unv", phone="+4915100000210"))
    notif.clock.advance(seconds=1)
    await notif.deliver(event("paramedic.task_offered",
                              offered("t-9", "para-unv", False).model_dump(mode="json"),
                              subject="emergency/em-1"))
    await eventually(lambda: len(notif.twilio.to("+4915100000210")) == 1,
                     message="an urgent task offer waited for a verified number")


@pytest.fixture
async def real_clock_notif(settings: Settings, tokens: TokenFactory, clock: SettableClock,
                           smtp: SmtpSink, twilio: TwilioSink) -> AsyncIterator[Notif]:
    app = create_app(settings)  # the system clock
    app.state.verifier = tokens.verifier()
    async with running_app(app) as client:
        yield Notif(app, client, tokens, clock, smtp, twilio)


async def test_on_the_real_clock_a_code_is_sent_and_verifies(real_clock_notif: Notif) -> None:
    notif = real_clock_notif
    await notif.deliver(user_registered("pat-rc", phone="+4915100000211"))
    code = await request_code(notif, "pat-rc", "+4915100000211")
    assert (await notif.client.post(SEND, headers=notif.headers("pat-rc"))).status_code == 429
    assert (await verify(notif, "pat-rc", code))[0] == 200
    assert verification.phone_verified(await contact(notif, "pat-rc"))
