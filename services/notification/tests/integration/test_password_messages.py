"""``auth.password_reset_requested`` e-mails the reset link (and nothing else: no SMS, no
push, no feed item), its token derived from the request id under the secret shared with
auth; ``auth.password_changed`` tells the owner."""

from __future__ import annotations

from datetime import timedelta

from healthflow.common.links import account_link_token
from healthflow.contracts.auth import (
    PASSWORD_RESET_PURPOSE,
    PasswordChanged,
    PasswordResetRequested,
    RegistrationAttempted,
)
from healthflow.devkit.testing import eventually

from ..conftest import NOW, Notif, event, user_registered


async def test_the_reset_link_is_emailed_once_and_only_by_email(notif: Notif) -> None:
    await notif.deliver(user_registered("pat-pw", email="pw@patients.test"))
    notif.clock.advance(seconds=1)
    requested = event("auth.password_reset_requested", PasswordResetRequested(
        user_id="pat-pw", reset_id="reset-1",
        expires_at=NOW + timedelta(minutes=30)).model_dump(mode="json"), subject="pat-pw")
    await notif.deliver(requested, requested)  # a redelivery sends nothing more

    await eventually(lambda: len(notif.smtp.to("pw@patients.test")) == 2,
                     message="the welcome and the reset email were not received")
    mail = notif.smtp.to("pw@patients.test")[-1]
    assert mail.message["Subject"] == "Reset your HealthFlow password"
    secret = notif.runtime.settings.account_link_secret  # type: ignore[attr-defined]
    token = account_link_token(secret.get_secret_value().encode(), PASSWORD_RESET_PURPOSE,
                               "reset-1")
    text = mail.part("text/plain")
    assert f"/reset-password?token={token}" in text, text
    assert "valid for 29 minutes" in text or "valid for 30 minutes" in text, text
    assert token in mail.part("text/html")
    deliveries = await notif.deliveries(source_id=requested.id)
    assert [d["channel"] for d in deliveries] == ["email"]
    assert await notif.db["feed"].count_documents({"template": "password_reset"}) == 0


async def test_an_expired_reset_link_is_not_sent(notif: Notif) -> None:
    await notif.deliver(user_registered("pat-late", email="late@patients.test"))
    requested = event("auth.password_reset_requested", PasswordResetRequested(
        user_id="pat-late", reset_id="reset-2",
        expires_at=NOW + timedelta(minutes=30)).model_dump(mode="json"), subject="pat-late")
    await notif.stop_background()
    await notif.deliver(requested)
    notif.clock.advance(minutes=31)  # the dispatcher runs only after the link expired
    await notif.dispatcher.run_due()
    [delivery] = await notif.deliveries(source_id=requested.id)
    assert delivery["status"] == "cancelled", delivery


async def test_the_owner_is_told_their_password_changed(notif: Notif) -> None:
    await notif.deliver(user_registered("pat-ch", email="ch@patients.test"))
    notif.clock.advance(seconds=1)
    changed = event("auth.password_changed", PasswordChanged(
        user_id="pat-ch", method="reset", reset_id="reset-3",
        sessions_revoked=2).model_dump(mode="json"), subject="pat-ch")
    await notif.deliver(changed)
    await eventually(lambda: len(notif.smtp.to("ch@patients.test")) == 2,
                     message="no password-changed email")
    mail = notif.smtp.to("ch@patients.test")[-1]
    assert mail.message["Subject"] == "Your HealthFlow password was changed"
    assert "reset link sent to this address" in mail.part("text/plain")
    assert await notif.db["feed"].count_documents(
        {"user_id": "pat-ch", "template": "password_changed"}) == 1


async def test_the_owner_is_told_someone_tried_to_sign_up_with_their_address(
        notif: Notif) -> None:
    await notif.deliver(user_registered("pat-sg", email="sg@patients.test"))
    notif.clock.advance(seconds=1)
    attempt = event("auth.registration_attempted",
                    RegistrationAttempted(user_id="pat-sg").model_dump(mode="json"),
                    subject="pat-sg")
    await notif.deliver(attempt)
    await eventually(lambda: len(notif.smtp.to("sg@patients.test")) == 2,
                     message="no email about the sign-up attempt")
    mail = notif.smtp.to("sg@patients.test")[-1]
    assert mail.message["Subject"] == "Someone tried to sign up with your email address"
    assert [d["channel"] for d in await notif.deliveries(source_id=attempt.id)] == ["email"]


async def test_a_message_consumed_before_its_user_is_sent_when_the_user_arrives(
        notif: Notif) -> None:
    """The owner's ``user.registered`` (opened with a key from auth) can land after
    another event about them: the message waits for it and goes at once, not after the
    retry backoff (the fake clock never reaches it here)."""
    attempt = event("auth.registration_attempted",
                    RegistrationAttempted(user_id="pat-late-reg").model_dump(mode="json"),
                    subject="pat-late-reg")
    await notif.deliver(attempt)

    async def waiting() -> bool:  # the background dispatcher or this one tried it
        await notif.dispatcher.run_due()
        [delivery] = await notif.deliveries(source_id=attempt.id)
        return delivery["status"] == "queued" and delivery.get("awaiting_contact") is True

    await eventually(waiting, message="the message did not wait for its contact")
    await notif.deliver(user_registered("pat-late-reg", email="late-reg@patients.test"))
    await eventually(lambda: len(notif.smtp.to("late-reg@patients.test")) == 2,
                     message="the sign-up attempt waited for the retry backoff")
    subjects = {m.message["Subject"] for m in notif.smtp.to("late-reg@patients.test")}
    assert "Someone tried to sign up with your email address" in subjects
