"""Sending caps per destination (issue 16): SMS cannot be pumped to a (premium) number
by registering it on many accounts, nor e-mail by asking for reset links: past the cap
in the window a message is dropped (suppressed, ``destination_capped``), counted in a
metric and logged without the number or address; after the window it goes again.
Security e-mails are exempt (auth caps them per account)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from healthflow.contracts.auth import PasswordResetRequested
from healthflow.devkit.testing import TokenFactory, running_app
from healthflow.notification.app import create_app
from healthflow.notification.domain import SettableClock
from healthflow.notification.settings import Settings

from ..conftest import NOW, Notif, appointment, event, user_registered
from .test_confirmations import START

PREMIUM = "+4990012345678"


@pytest.fixture
async def capped(settings: Settings, tokens: TokenFactory, clock: SettableClock,
                 smtp, twilio) -> AsyncIterator[Notif]:  # type: ignore[no-untyped-def]
    app = create_app(settings.model_copy(update={
        "sms_per_number_cap": 2, "email_per_address_cap": 2,
        "destination_cap_window": 3600.0}), clock=clock)
    app.state.verifier = tokens.verifier()
    async with running_app(app) as client:
        notif = Notif(app, client, tokens, clock, smtp, twilio)
        await notif.stop_background()
        yield notif


def capped_total(channel: str) -> float:
    return REGISTRY.get_sample_value("healthflow_notification_destination_capped_total",
                                     {"channel": channel}) or 0.0


async def test_sms_to_one_number_from_many_accounts_is_capped(
        capped: Notif, caplog: pytest.LogCaptureFixture) -> None:
    before = capped_total("sms")
    for i in range(3):  # three accounts registered with one number
        await capped.deliver(user_registered(f"pump-{i}", phone=PREMIUM))
        capped.clock.advance(seconds=1)
        await capped.deliver(appointment("appointment.booked", f"appt-pump-{i}", f"pump-{i}",
                                         START))
        capped.clock.advance(seconds=1)
        with caplog.at_level(logging.WARNING):
            await capped.dispatcher.run_due()
    assert len(capped.twilio.to(PREMIUM)) == 2
    sms = await capped.deliveries(channel="sms")
    assert sorted((d["status"], d.get("reason")) for d in sms) == [
        ("sent", None), ("sent", None), ("suppressed", "destination_capped")]
    assert capped_total("sms") == before + 1
    dropped = [r for r in caplog.records if "sending cap" in r.getMessage()]
    assert dropped and all(PREMIUM not in str(r.__dict__)
                           for r in dropped)
    # the e-mails of those accounts (other addresses) were not affected
    assert all(len(capped.smtp.to(f"pump-{i}@patients.test")) == 2 for i in range(3))
    # after the window the number may receive again
    capped.clock.advance(seconds=3601)
    await capped.deliver(appointment("appointment.booked", "appt-pump-later", "pump-0", START))
    await capped.dispatcher.run_due()
    assert len(capped.twilio.to(PREMIUM)) == 3


async def test_security_mail_is_never_capped_but_other_mail_to_the_address_is(
        capped: Notif) -> None:
    """Reset links (like every ``domain.SECURITY_EMAIL_TEMPLATES`` e-mail) are exempt
    from the per-address cap: dropping one for good would lock the owner out or hide a
    takeover from them, and auth already limits them per account
    (``password_resets_per_hour``, ``contact_changes``, ``registration_notices``). They
    still count, so other mail to a flooded address is capped."""
    before = capped_total("email")
    await capped.deliver(user_registered("pat-bomb", email="bomb@patients.test"))
    await capped.dispatcher.run_due()  # the welcome (with its verification link): one
    for n in range(3):
        capped.clock.advance(seconds=1)
        await capped.deliver(event("auth.password_reset_requested", PasswordResetRequested(
            user_id="pat-bomb", reset_id=f"reset-bomb-{n}",
            expires_at=NOW + timedelta(minutes=30)).model_dump(mode="json"),
            subject="pat-bomb"))
        await capped.dispatcher.run_due()
    assert len(capped.smtp.to("bomb@patients.test")) == 4
    assert capped_total("email") == before
    capped.clock.advance(seconds=1)
    await capped.deliver(appointment("appointment.booked", "appt-bomb", "pat-bomb", START))
    await capped.dispatcher.run_due()
    assert len(capped.smtp.to("bomb@patients.test")) == 4
    assert capped_total("email") == before + 1
    emails = await capped.deliveries(user_id="pat-bomb", channel="email")
    capped_templates = [d["template"] for d in emails if d.get("reason") == "destination_capped"]
    assert capped_templates == ["appointment_booked"], capped_templates
