"""The second factor against the real MongoDB-protocol server: TOTP enrolment confirmed by
a first code, logins that need the code, one use per code, recovery codes used once, the
roles that must enrol doing so during the login, an admin's reset, and the events.

Time is an input: codes are computed with ``pyotp`` when they are sent, for the time
step the server is in or the next one when the current step was already used (the
server accepts one step either side), so no test waits for a 30 s boundary."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pyotp
import pytest

from healthflow.auth.app import create_app
from healthflow.auth.cli import ensure_first_admin_async
from healthflow.auth.store import MFA_FACTORS
from healthflow.devkit.testing import running_app

from ..conftest import ADMIN_PASSWORD, AuthClient


class Authenticator:
    """An authenticator app: the code of the current 30 s step, or of the next one when
    the current step's code was already sent (a server refuses a step twice)."""

    def __init__(self, secret: str) -> None:
        self.totp = pyotp.TOTP(secret)
        self.last_step: int | None = None

    def code(self) -> str:
        step = int(time.time()) // 30
        if self.last_step is not None and step <= self.last_step:
            step = self.last_step + 1
        self.last_step = step
        return self.totp.at(step * 30)

    def wrong_code(self) -> str:
        """A code no step near now has (so it is wrong whenever it arrives)."""
        step = int(time.time()) // 30
        near = {self.totp.at(s * 30) for s in range(step - 2, step + 4)}
        return next(c for c in ("000000", "111111", "222222", "333333", "444444",
                                "555555", "666666", "777777") if c not in near)

    def used_code(self) -> str:
        assert self.last_step is not None
        return self.totp.at(self.last_step * 30)


async def enrol(auth: AuthClient, access_token: str) -> tuple[Authenticator, list[str]]:
    started = await auth.http.post("/api/v1/auth/mfa/totp", headers=auth.bearer(access_token))
    assert started.status_code == 201, started.text
    body = started.json()
    assert body["otpauth_uri"].startswith("otpauth://totp/HealthFlow:")
    assert f"secret={body['secret']}" in body["otpauth_uri"]
    app = Authenticator(body["secret"])
    confirmed = await auth.http.post("/api/v1/auth/mfa/totp/confirm",
                                     headers=auth.bearer(access_token),
                                     json={"code": app.code()})
    assert confirmed.status_code == 200, confirmed.text
    return app, confirmed.json()["recovery_codes"]


def challenge_of(response: httpx.Response, *, enrolment: bool = False) -> str:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["error"] == "mfa_required" and body["type"].endswith("/mfa-required")
    assert body["enrolment_required"] is enrolment and body["expires_in"] == 300
    assert "access_token" not in body
    return str(body["mfa_token"])


async def second_step(auth: AuthClient, mfa_token: str, **proof: str) -> httpx.Response:
    return await auth.http.post("/api/v1/auth/token/mfa", json={"mfa_token": mfa_token} | proof)


def amr_of(access_token: str) -> list[str]:
    """The ``amr`` claim (RFC 8176) of an access token (the service checked its signature)."""
    payload = access_token.split(".")[1]
    return list(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["amr"])


async def test_tokens_say_how_the_session_was_authenticated(auth: AuthClient) -> None:
    """``amr`` (RFC 8176): ``pwd`` for a password alone, ``mfa otp pwd`` with the second
    factor, kept by every token the session refreshes, and in ``auth.login_succeeded``."""
    user, tokens = await auth.patient()
    assert amr_of(tokens["access_token"]) == ["pwd"]
    app, _ = await enrol(auth, tokens["access_token"])
    done = await second_step(auth, challenge_of(await auth.login(user["email"])),
                             code=app.code())
    assert done.status_code == 200, done.text
    assert amr_of(done.json()["access_token"]) == ["mfa", "otp", "pwd"]
    refreshed = await auth.http.post("/api/v1/auth/refresh",
                                     json={"refresh_token": done.json()["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    assert amr_of(refreshed.json()["access_token"]) == ["mfa", "otp", "pwd"]
    logins = await auth.events("auth.login_succeeded", user["id"])
    assert [e["data"]["amr"] for e in logins] == [["pwd"], ["mfa", "otp", "pwd"]]


async def test_an_enrolled_patient_logs_in_with_a_code_used_once(auth: AuthClient) -> None:
    user, tokens = await auth.patient()
    app, codes = await enrol(auth, tokens["access_token"])
    assert len(codes) == 10 and len(set(codes)) == 10
    stored = await auth.db[MFA_FACTORS].find_one({"_id": user["id"]})
    assert stored["status"] == "active"
    assert not any(code in str(stored) for code in codes)  # only their hashes
    again = await auth.http.post("/api/v1/auth/mfa/totp",
                                 headers=auth.bearer(tokens["access_token"]))
    assert again.status_code == 409, again.text

    mfa_token = challenge_of(await auth.login(user["email"]))
    wrong = await second_step(auth, mfa_token, code=app.wrong_code())
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    done = await second_step(auth, mfa_token, code=app.code())
    assert done.status_code == 200, done.text
    assert done.json()["recovery_codes"] is None
    me = await auth.http.get("/api/v1/auth/me", headers=auth.bearer(done.json()["access_token"]))
    assert me.status_code == 200 and me.json()["id"] == user["id"]

    # the challenge served its login; the same code cannot serve another
    reused_challenge = await second_step(auth, mfa_token, code=app.code())
    assert reused_challenge.status_code == 400
    replay = await second_step(auth, challenge_of(await auth.login(user["email"])),
                               code=app.used_code())
    assert replay.status_code == 400, replay.text

    [enrolled] = await auth.events("auth.mfa_enrolled", user["id"])
    assert enrolled["data"] == {"user_id": user["id"], "method": "totp", "recovery_codes": 10}


async def test_a_recovery_code_works_once(auth: AuthClient) -> None:
    user, tokens = await auth.patient()
    _, codes = await enrol(auth, tokens["access_token"])
    spoken = codes[0].upper().replace("-", " ")  # read aloud, typed sloppily
    first = await second_step(auth, challenge_of(await auth.login(user["email"])),
                              recovery_code=spoken)
    assert first.status_code == 200, first.text
    second = await second_step(auth, challenge_of(await auth.login(user["email"])),
                               recovery_code=codes[0])
    assert second.status_code == 400, second.text
    [used] = await auth.events("auth.mfa_recovery_code_used", user["id"])
    assert used["data"]["remaining"] == 9 and codes[0] not in str(used)


async def test_a_challenge_tolerates_few_wrong_codes(auth: AuthClient) -> None:
    user, tokens = await auth.patient()
    app, _ = await enrol(auth, tokens["access_token"])
    mfa_token = challenge_of(await auth.login(user["email"]))
    answers = [(await second_step(auth, mfa_token, code=app.wrong_code())).status_code
               for _ in range(5)]
    assert answers == [400] * 5
    exhausted = await second_step(auth, mfa_token, code=app.code())
    assert exhausted.status_code == 400, exhausted.text


@pytest.fixture
async def strict(settings_factory: Any, unique_name: str) -> AsyncIterator[AuthClient]:
    """An auth service whose admins, compliance officers and doctors need a second factor
    (the service's default); its first admin enrols at the first login."""
    settings = settings_factory(f"auth_{unique_name}",
                                mfa_required_roles=["admin", "compliance_officer", "doctor"])
    admin_email = f"admin.{unique_name[:8]}@example.org"
    await ensure_first_admin_async(settings, admin_email, ADMIN_PASSWORD)
    app = create_app(settings)
    async with running_app(app) as http:
        client = AuthClient(http=http, app=app, settings=settings, admin_email=admin_email)
        client.admin_token = (await enrol_at_login(client, admin_email, ADMIN_PASSWORD)
                              )[0]["access_token"]
        yield client


async def enrol_at_login(auth: AuthClient, email: str, password: str
                         ) -> tuple[dict[str, Any], Authenticator]:
    """Log in as a required-role user without an authenticator: enrol inside the login."""
    mfa_token = challenge_of(await auth.login(email, password), enrolment=True)
    # the challenge gives no tokens and cannot be completed without an enrolled key
    assert (await second_step(auth, mfa_token, code="123456")).status_code == 400
    key = await auth.http.post("/api/v1/auth/token/mfa/enrolment",
                               json={"mfa_token": mfa_token})
    assert key.status_code == 200, key.text
    app = Authenticator(key.json()["secret"])
    done = await second_step(auth, mfa_token, code=app.code())
    assert done.status_code == 200, done.text
    assert len(done.json()["recovery_codes"]) == 10
    return done.json(), app


async def test_required_roles_enrol_during_the_login_and_patients_need_not(
        strict: AuthClient) -> None:
    doctor = await strict.staff("doctor")
    tokens, app = await enrol_at_login(strict, doctor["email"], strict.password)
    me = await strict.http.get("/api/v1/auth/me", headers=strict.bearer(tokens["access_token"]))
    assert me.status_code == 200 and me.json()["roles"] == ["doctor"]
    # enrolled now: the next login asks for a code, not for an enrolment
    mfa_token = challenge_of(await strict.login(doctor["email"]))
    assert (await second_step(strict, mfa_token, code=app.code())).status_code == 200

    nurse = await strict.staff("nurse")
    assert (await strict.login(nurse["email"])).status_code == 200
    patient = await strict.register()
    assert (await strict.login(patient["email"])).status_code == 200


async def test_an_admin_resets_a_lost_authenticator(strict: AuthClient) -> None:
    officer = await strict.staff("compliance_officer")
    await enrol_at_login(strict, officer["email"], strict.password)
    reset = await strict.http.post(f"/api/v1/users/{officer['id']}/mfa/reset",
                                   headers=strict.admin)
    assert reset.status_code == 204, reset.text
    await enrol_at_login(strict, officer["email"], strict.password)  # a new phone
    [event] = await strict.events("auth.mfa_reset", officer["id"])
    admin_id = (await strict.http.get("/api/v1/auth/me", headers=strict.admin)).json()["id"]
    assert event["data"] == {"user_id": officer["id"], "reset_by": admin_id}
    assert len(await strict.events("auth.mfa_enrolled", officer["id"])) == 2
    _, patient = await strict.patient()
    refused = await strict.http.post(f"/api/v1/users/{officer['id']}/mfa/reset",
                                     headers=strict.bearer(patient["access_token"]))
    assert refused.status_code == 403
