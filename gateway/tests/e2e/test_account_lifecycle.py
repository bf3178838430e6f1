"""The password lifecycle through the gateway, as a person and their mail client live it:
a reset link read from the local mailbox sets a new password once, ends every session,
and never appears in the audit log; a change needs the current password."""

from __future__ import annotations

import re

import httpx

from healthflow.devkit.testing import RunningPlatform, eventually

from .conftest import (
    PASSWORD,
    User,
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
