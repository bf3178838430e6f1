"""E-mail verification: non-essential mail waits for the welcome link's token to be
redeemed; bad, expired and reused tokens get one constant 400 problem."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest

from healthflow.devkit.testing import eventually
from healthflow.notification import store
from healthflow.notification.settings import Settings

from ..conftest import Notif, appointment, user_registered
from .test_confirmations import START, directory

VERIFY = "/api/v1/notifications/email/verify"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"require_verified_email": True})


async def _welcome_token(notif: Notif, email: str) -> str:
    await eventually(lambda: len(notif.smtp.to(email)) == 1, message="no welcome mail")
    text = notif.smtp.to(email)[0].part("text/plain")
    link = next(word for word in text.split() if "verify-email" in word)
    return parse_qs(urlparse(link).query)["token"][0]


async def test_unverified_address_gets_no_booking_mail_until_the_token_is_redeemed(
        notif: Notif) -> None:
    await directory(notif)
    await notif.deliver(user_registered("pat-v1", email="ver@patients.test",
                                        phone="+4915100000031"))
    token = await _welcome_token(notif, "ver@patients.test")  # the welcome goes regardless
    await notif.deliver(appointment("appointment.booked", "appt-v1", "pat-v1", START))
    await eventually(lambda: len(notif.twilio.to("+4915100000031")) == 1)

    async def suppressed() -> bool:
        return await notif.db[store.DELIVERIES].count_documents(
            {"channel": "email", "status": "suppressed", "reason": "unverified"}) == 1
    await eventually(suppressed, message="the booking mail was not suppressed as unverified")
    assert len(notif.smtp.to("ver@patients.test")) == 1

    response = await notif.client.post(VERIFY, json={"token": token})
    assert response.status_code == 200, response.text
    assert response.json() == {"user_id": "pat-v1", "email_verified": True}

    reused = await notif.client.post(VERIFY, json={"token": token})
    assert reused.status_code == 400
    assert reused.headers["content-type"].startswith("application/problem+json")

    await notif.deliver(appointment("appointment.booked", "appt-v2", "pat-v1",
                                    START + timedelta(days=1)))
    await eventually(lambda: len(notif.smtp.to("ver@patients.test")) == 2,
                     message="the verified address got no booking mail")


async def test_forged_other_address_and_expired_tokens_get_the_same_400(notif: Notif) -> None:
    await notif.deliver(user_registered("pat-v2", email="two@patients.test"))
    token = await _welcome_token(notif, "two@patients.test")
    user, expiry, mac = token.split(".")
    forged = f"{user}.{expiry}.{'A' * len(mac)}"
    other_user = f"pat-v3.{expiry}.{mac}"
    details = set()
    for bad in (forged, other_user, "nonsense", "x.y.z"):
        response = await notif.client.post(VERIFY, json={"token": bad})
        assert response.status_code == 400, response.text
        details.add(response.json()["detail"])
    empty = await notif.client.post(VERIFY, json={"token": ""})
    assert empty.status_code == 422  # a schema violation, as everywhere

    notif.clock.advance(seconds=3 * 24 * 3600)  # past the 48 h validity
    expired = await notif.client.post(VERIFY, json={"token": token})
    assert expired.status_code == 400
    details.add(expired.json()["detail"])
    assert len(details) == 1  # one constant answer
    contact = await notif.db[store.CONTACTS].find_one({"_id": "pat-v2"})
    assert contact is not None and not contact.get("email_verified")


async def test_a_changed_address_is_unverified_again(notif: Notif) -> None:
    await notif.deliver(user_registered("pat-v4", email="old@patients.test"))
    token = await _welcome_token(notif, "old@patients.test")
    assert (await notif.client.post(VERIFY, json={"token": token})).status_code == 200
    await notif.deliver(user_registered("pat-v4", email="new4@patients.test"))
    new_token = await _welcome_token(notif, "new4@patients.test")
    assert (await notif.client.post(VERIFY, json={"token": token})).status_code == 400
    assert (await notif.client.post(VERIFY, json={"token": new_token})).status_code == 200
