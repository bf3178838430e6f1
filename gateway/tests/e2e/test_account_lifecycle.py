"""The account lifecycle through the gateway, as a person, their mail client and their
authenticator app live it: a reset link read from the local mailbox sets a new password
once, ends every session, and never appears in the audit log; a change needs the current
password; an authenticator enrolled with a first code is asked for at every login, a
recovery code stands in for it once, and an admin's reset removes it."""

from __future__ import annotations

import re
import time

import httpx
import pyotp

from healthflow.devkit.testing import RunningPlatform, eventually

from .conftest import (
    PASSWORD,
    User,
    as_admin,
    assert_problem,
    audit_events,
    login,
    new_email,
    ok,
    register_patient,
    wait_for_mail,
)

NEW_PASSWORD = "Saffron-Lighthouse-Quarry-6053"
RESET_SUBJECT = "Reset your HealthFlow password"
CHANGED_SUBJECT = "Your HealthFlow password was changed"
LINK = re.compile(r"/reset-password\?token=([A-Za-z0-9_-]{43})\b")


async def refresh(api: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await api.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})


async def refused_login(api: httpx.AsyncClient, email: str, password: str) -> None:
    response = await api.post("/api/v1/auth/token",
                              data={"username": email, "password": password})
    assert_problem(response, 400)
    assert response.json()["error"] == "invalid_grant"


async def test_a_password_reset_by_mailed_link_works_once_and_ends_every_session(
        platform: RunningPlatform, compliance: User) -> None:
    async with platform.client() as api:
        patient = await register_patient(api, "forgetful")
        phone = await login(api, patient.email)  # a second device

        unknown = await api.post("/api/v1/auth/password/reset",
                                 json={"email": new_email("nobody")})
        known = await api.post("/api/v1/auth/password/reset", json={"email": patient.email})
        assert unknown.status_code == known.status_code == 202
        assert unknown.json() == known.json()

        [mail] = await wait_for_mail(platform, patient.email, RESET_SUBJECT)
        found = LINK.search(mail["text"])
        assert found, mail["text"]
        token = found.group(1)

        ok(await api.post("/api/v1/auth/password/reset/complete",
                          json={"token": token, "new_password": NEW_PASSWORD}), 204)
        again = await api.post("/api/v1/auth/password/reset/complete",
                               json={"token": token, "new_password": "Other-Fresh-Canyon-7120"})
        assert_problem(again, 400, "invalid-reset-link")

        await refused_login(api, patient.email, PASSWORD)
        for session in (patient.refresh_token, phone["refresh_token"]):
            stale = await refresh(api, session)
            assert_problem(stale, 400)
        renewed = await login(api, patient.email, NEW_PASSWORD)
        ok(await refresh(api, renewed["refresh_token"]))
        await wait_for_mail(platform, patient.email, CHANGED_SUBJECT)

        # the audit log records the request and the change, never the link
        async def audited() -> bool:
            entries = await audit_events(api, compliance, subject=patient.id)
            types = {e["type"] for e in entries}
            return {"auth.password_reset_requested", "auth.password_changed"} <= types

        await eventually(audited, within=30, message="the reset was not audited")
        entries = await audit_events(api, compliance, subject=patient.id)
        assert token not in str(entries)


async def test_changing_the_password_needs_the_current_one(platform: RunningPlatform) -> None:
    async with platform.client() as api:
        patient = await register_patient(api, "careful")
        wrong = await api.post("/api/v1/auth/password", headers=patient.headers, json={
            "current_password": "Not-My-Password-3310", "new_password": NEW_PASSWORD})
        assert_problem(wrong, 403)
        weak = await api.post("/api/v1/auth/password", headers=patient.headers, json={
            "current_password": PASSWORD, "new_password": "password123"})
        assert_problem(weak, 422)

        ok(await api.post("/api/v1/auth/password", headers=patient.headers, json={
            "current_password": PASSWORD, "new_password": NEW_PASSWORD}), 204)
        assert_problem(await refresh(api, patient.refresh_token), 400)
        await refused_login(api, patient.email, PASSWORD)
        await login(api, patient.email, NEW_PASSWORD)
        await wait_for_mail(platform, patient.email, CHANGED_SUBJECT)


def totp_code(totp: pyotp.TOTP, used: set[int]) -> str:
    """The code of the current 30 s step, or the next one when the current was used (the
    platform accepts one step either side and each step once): no wait on a boundary."""
    step = int(time.time()) // 30
    while step in used:
        step += 1
    used.add(step)
    return totp.at(step * 30)


async def test_an_authenticator_is_enrolled_asked_for_and_reset(
        platform: RunningPlatform, compliance: User) -> None:
    async with platform.client() as api:
        patient = await register_patient(api, "twofactor")
        key = ok(await api.post("/api/v1/auth/mfa/totp", headers=patient.headers), 201)
        assert key["otpauth_uri"].startswith("otpauth://totp/HealthFlow:")
        totp, used = pyotp.TOTP(key["secret"]), set[int]()
        codes = ok(await api.post("/api/v1/auth/mfa/totp/confirm", headers=patient.headers,
                                  json={"code": totp_code(totp, used)}))["recovery_codes"]
        assert len(codes) == 10

        async def challenge() -> str:
            response = await api.post("/api/v1/auth/token", data={
                "username": patient.email, "password": PASSWORD})
            body = assert_problem(response, 403, "mfa-required")
            assert body["error"] == "mfa_required" and "access_token" not in body
            return str(body["mfa_token"])

        tokens = ok(await api.post("/api/v1/auth/token/mfa", json={
            "mfa_token": await challenge(), "code": totp_code(totp, used)}))
        ok(await api.get("/api/v1/auth/me",
                         headers={"Authorization": f"Bearer {tokens['access_token']}"}))
        by_recovery = {"mfa_token": await challenge(), "recovery_code": codes[0]}
        ok(await api.post("/api/v1/auth/token/mfa", json=by_recovery))
        reused = await api.post("/api/v1/auth/token/mfa", json={
            "mfa_token": await challenge(), "recovery_code": codes[0]})
        assert_problem(reused, 400)

        admin = await as_admin(api, platform)
        ok(await api.post(f"/api/v1/users/{patient.id}/mfa/reset", headers=admin.headers), 204)
        await login(api, patient.email)  # a patient need not enrol again

        async def audited() -> bool:
            types = {e["type"] for e in await audit_events(api, compliance, subject=patient.id)}
            return {"auth.mfa_enrolled", "auth.mfa_recovery_code_used",
                    "auth.mfa_reset"} <= types

        await eventually(audited, within=30, message="the second factor was not audited")
        entries = await audit_events(api, compliance, subject=patient.id)
        assert key["secret"] not in str(entries)
        assert not any(code in str(entries) for code in codes)


async def test_signing_up_with_a_taken_address_tells_the_owner_not_the_caller(
        platform: RunningPlatform) -> None:
    async with platform.client() as api:
        owner = await register_patient(api, "owner")
        body = {"password": "Marble-Falcon-Thistle-8842", "full_name": "Someone Else",
                "phone": "+447400123456"}
        fresh = ok(await api.post("/api/v1/auth/register",
                                  json=body | {"email": new_email("fresh")}), 201)
        taken = ok(await api.post("/api/v1/auth/register",
                                  json=body | {"email": owner.email}), 201)
        assert set(taken) == set(fresh) and taken["id"] != owner.id
        await refused_login(api, owner.email, body["password"])
        await login(api, owner.email)  # the owner's account is unchanged
        await wait_for_mail(platform, owner.email,
                            "Someone tried to sign up with your email address")


WELCOME_SUBJECT = "Welcome to HealthFlow - please confirm your email"
VERIFY_LINK = re.compile(r"/verify-email\?token=([A-Za-z0-9._-]+)")


async def test_the_welcome_mails_verification_token_is_redeemed_once_through_the_gateway(
        platform: RunningPlatform) -> None:
    async with platform.client() as api:
        patient = await register_patient(api, "verifier")
        [mail] = await wait_for_mail(platform, patient.email, WELCOME_SUBJECT)
        found = VERIFY_LINK.search(mail["text"])
        assert found, mail["text"]
        token = found.group(1)

        forged = await api.post("/api/v1/notifications/email/verify",
                                json={"token": token[:-4] + "AAAA"})
        assert_problem(forged, 400)
        verified = ok(await api.post("/api/v1/notifications/email/verify",
                                     json={"token": token}))  # no login needed
        assert verified == {"user_id": patient.id, "email_verified": True}
        again = await api.post("/api/v1/notifications/email/verify", json={"token": token})
        assert_problem(again, 400)
