"""Provider failures and callbacks: SMTP outage, Twilio 5xx and 4xx, signed status callbacks."""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr
from twilio.request_validator import RequestValidator

from healthflow.common.events.outbox import recorded_events
from healthflow.devkit.sandbox import SmtpSink
from healthflow.notification.providers import (
    EmailSender,
    PermanentError,
    TransientError,
)
from healthflow.notification.settings import Settings

from ..conftest import AUTH_TOKEN, Notif, appointment, user_registered

START = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)
CALLBACK = "https://gateway.test/api/v1/notifications/twilio/status"


@pytest.fixture
async def manual(notif: Notif) -> Notif:
    """The app with its background loops stopped: the test runs the dispatcher."""
    await notif.stop_background()
    return notif


async def test_an_smtp_outage_delays_mail_until_the_server_returns(
        manual: Notif, smtp: SmtpSink) -> None:
    await manual.deliver(user_registered("pat-o", phone=None))
    smtp.stop()  # the mail server goes down
    booked = appointment("appointment.booked", "appt-o", "pat-o", START)
    await manual.deliver(booked)
    await manual.settle()
    email = (await manual.deliveries(source_id=booked.id, channel="email"))[0]
    assert (email["status"], email["attempts"]) == ("queued", 1)
    assert email["last_error"].startswith("SMTP unavailable")
    assert email["next_attempt_at"] == manual.clock.now() + timedelta(seconds=30)

    manual.clock.advance(seconds=30)  # second attempt, still down: backoff doubles
    await manual.settle()
    email = (await manual.deliveries(source_id=booked.id, channel="email"))[0]
    assert (email["status"], email["attempts"]) == ("queued", 2)
    assert email["next_attempt_at"] == manual.clock.now() + timedelta(seconds=60)

    smtp.start()  # back on the same port
    await manual.settle()  # not due yet: nothing is sent before its time
    assert smtp.to("pat-o@patients.test") == []
    manual.clock.advance(seconds=60)
    await manual.settle()
    mails = {m.message["Subject"]: m for m in smtp.to("pat-o@patients.test")}
    assert len(smtp.to("pat-o@patients.test")) == 2  # the welcome waited too
    email = (await manual.deliveries(source_id=booked.id, channel="email"))[0]
    assert (email["status"], email["attempts"]) == ("sent", 3)
    assert email["provider_id"] == mails["Your appointment is booked"].message["Message-ID"]


async def test_twilio_5xx_is_retried_and_4xx_fails_with_an_event(manual: Notif) -> None:
    await manual.deliver(user_registered("pat-t", phone="+4915100000200"),
                         user_registered("pat-u", phone="+4915100000201"))
    manual.twilio.fail_next[:] = [503]
    first = appointment("appointment.booked", "appt-t", "pat-t", START)
    await manual.deliver(first)
    await manual.settle()
    sms = (await manual.deliveries(source_id=first.id, channel="sms"))[0]
    assert (sms["status"], sms["attempts"], sms["last_error"]) == ("queued", 1, "Twilio 503")
    manual.clock.advance(seconds=30)
    await manual.settle()
    assert len(manual.twilio.to("+4915100000200")) == 1
    sms = (await manual.deliveries(source_id=first.id, channel="sms"))[0]
    assert (sms["status"], sms["attempts"]) == ("sent", 2)

    manual.twilio.fail_next[:] = [400]  # e.g. 21211 invalid 'To' number: permanent
    second = appointment("appointment.booked", "appt-u", "pat-u", START)
    await manual.deliver(second)
    await manual.settle()
    sms = (await manual.deliveries(source_id=second.id, channel="sms"))[0]
    assert (sms["status"], sms["reason"]) == ("failed", "refused")
    failed = await recorded_events(manual.db, {"type": "notification.failed"})
    assert [(e.data["delivery_id"], e.data["reason"], e.data["channel"]) for e in failed] == [
        (sms["_id"], "refused", "sms")]
    assert "+4915100000201" not in str(failed[0].data)


async def test_out_of_retries_is_a_failure(manual: Notif, smtp: SmtpSink) -> None:
    await manual.deliver(user_registered("pat-x", phone=None))
    smtp.stop()
    booked = appointment("appointment.booked", "appt-x", "pat-x", START)
    await manual.deliver(booked)
    for _ in range(manual.runtime.settings.max_attempts):  # type: ignore[attr-defined]
        await manual.settle()
        manual.clock.advance(hours=2)
    email = (await manual.deliveries(source_id=booked.id, channel="email"))[0]
    assert (email["status"], email["reason"], email["attempts"]) == (
        "failed", "retries_exhausted", 4)
    smtp.start()


def signed(params: dict[str, str], url: str = CALLBACK) -> dict[str, str]:
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    return {"X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded"}


async def test_twilio_status_callbacks_need_a_valid_signature(notif: Notif) -> None:
    await notif.deliver(user_registered("pat-s", phone="+4915100000300"))
    booked = appointment("appointment.booked", "appt-s", "pat-s", START)
    await notif.deliver(booked)
    await notif.settle()
    sid = notif.twilio.to("+4915100000300")[0].sid
    params = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": "AC1",
              "To": "+4915100000300"}
    path = "/api/v1/notifications/twilio/status"

    forged = await notif.client.post(path, content=urlencode(params), headers=signed(
        params | {"MessageStatus": "sent"}))  # signature over other values
    assert forged.status_code == 403
    assert forged.headers["content-type"] == "application/problem+json"
    assert forged.json()["title"] == "Forbidden"
    unsigned = await notif.client.post(path, content=urlencode(params), headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert unsigned.status_code == 403
    wrong_key = await notif.client.post(path, content=urlencode(params), headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": RequestValidator("not-the-token").compute_signature(
            CALLBACK, params)})
    assert wrong_key.status_code == 403
    sms = (await notif.deliveries(source_id=booked.id, channel="sms"))[0]
    assert sms["status"] == "sent"

    accepted = await notif.client.post(path, content=urlencode(params),
                                       headers=signed(params))
    assert accepted.status_code == 204, accepted.text
    sms = (await notif.deliveries(source_id=booked.id, channel="sms"))[0]
    assert (sms["status"], sms["delivered_at"]) == ("delivered", notif.clock.now())
    # a late "sent" callback never moves it back
    late = params | {"MessageStatus": "sent"}
    assert (await notif.client.post(path, content=urlencode(late),
                                    headers=signed(late))).status_code == 204
    assert (await notif.deliveries(source_id=booked.id, channel="sms"))[0]["status"] == (
        "delivered")


async def test_an_undelivered_callback_fails_the_delivery(notif: Notif) -> None:
    await notif.deliver(user_registered("pat-v", phone="+4915100000301"))
    booked = appointment("appointment.booked", "appt-v", "pat-v", START)
    await notif.deliver(booked)
    await notif.settle()
    sid = notif.twilio.to("+4915100000301")[0].sid
    params = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    response = await notif.client.post("/api/v1/notifications/twilio/status",
                                       content=urlencode(params), headers=signed(params))
    assert response.status_code == 204
    sms = (await notif.deliveries(source_id=booked.id, channel="sms"))[0]
    assert (sms["status"], sms["reason"]) == ("failed", "twilio_undelivered_30003")
    failed = await recorded_events(notif.db, {"type": "notification.failed"})
    assert [e.data["provider_id"] for e in failed] == [sid]


def self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, str]:
    """A server TLS context for 127.0.0.1 and the PEM file a client must trust for it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtp.test")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "smtp.pem", tmp_path / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, str(cert_file)


async def test_email_uses_starttls_and_auth_when_configured(
        settings: Settings, tmp_path: Path) -> None:
    context, ca_file = self_signed(tmp_path)
    server = SmtpSink(tls_context=context, credentials=("mailer", "s3cret")).start()
    try:
        secured = settings.model_copy(update={
            "smtp_port": server.port, "smtp_security": "starttls", "smtp_ca_file": ca_file,
            "smtp_username": "mailer", "smtp_password": SecretStr("s3cret")})
        await EmailSender(secured).send(delivery_id="d-tls", to="t@patients.test",
                                        subject="s", text="t", html="<p>h</p>")
        [mail] = server.to("t@patients.test")
        assert (mail.secure, mail.login) == (True, "mailer")

        wrong = secured.model_copy(update={"smtp_password": SecretStr("guess")})
        with pytest.raises(PermanentError, match="SMTP 535"):
            await EmailSender(wrong).send(delivery_id="d-bad", to="t@patients.test",
                                          subject="s", text="t", html="<p>h</p>")
        untrusted = secured.model_copy(update={"smtp_ca_file": None})
        with pytest.raises(TransientError):  # the certificate is not trusted: never sent
            await EmailSender(untrusted).send(delivery_id="d-mitm", to="t@patients.test",
                                              subject="s", text="t", html="<p>h</p>")
        plain = secured.model_copy(update={"smtp_security": "none", "smtp_username": None})
        with pytest.raises(PermanentError, match="SMTP 530"):  # STARTTLS is required first
            await EmailSender(plain).send(delivery_id="d-plain", to="t@patients.test",
                                          subject="s", text="t", html="<p>h</p>")
        assert len(server.to("t@patients.test")) == 1
    finally:
        server.stop()
