"""Revocation takes effect in seconds, everywhere (issue 16), through the gateway as a client.

* After logout, the session's access token is refused within 5 s by three services
  other than auth (patient, appointment, notification) and an open Server-Sent Events
  stream of the notification service ends with an ``unauthorized`` event.
* Deactivating an account refuses its tokens at those services within 5 s.
* A revoked signing key ends its tokens at every service; the next key signs on.

Each service learns revocations from events broadcast to every process
(``healthflow.common.revocation``); before these changes an access token stayed
valid everywhere until it expired (15 min).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence

import httpx

from healthflow.devkit.testing import RunningPlatform, eventually

from .conftest import User, as_admin, create_staff, login, ok, register_patient

WITHIN = 5.0
"""Seconds a revocation may take to reach every service."""

# One read route of each of three services (none of them auth), all open to a patient.
PATIENT_READS = (
    "/api/v1/patients/me",  # patient service
    "/api/v1/appointments",  # appointment service
    "/api/v1/notifications/feed",  # notification service
)


async def answers(api: httpx.AsyncClient, user: User,
                  paths: Sequence[str]) -> list[httpx.Response]:
    return list(await asyncio.gather(*(api.get(p, headers=user.headers) for p in paths)))


async def statuses(api: httpx.AsyncClient, user: User, paths: Sequence[str]) -> list[int]:
    return [r.status_code for r in await answers(api, user, paths)]


async def assert_accepted(api: httpx.AsyncClient, user: User, paths: Sequence[str]) -> None:
    # Any answer past the token and permission checks (a 404 for a chart the patient
    # service has not built yet, a 422 for a search without terms).
    for path, response in zip(paths, await answers(api, user, paths), strict=True):
        assert response.status_code not in (401, 403), (path, response.text)


async def refused_everywhere_within(api: httpx.AsyncClient, user: User,
                                    paths: Sequence[str], seconds: float) -> float:
    """Seconds until every path answers 401 problem+json (fails after ``seconds``)."""
    began = time.monotonic()

    async def all_refused() -> bool:
        return all(s == 401 for s in await statuses(api, user, paths))

    await eventually(all_refused, within=seconds, interval=0.1,
                     message=f"a revoked token was still accepted after {seconds} s")
    taken = time.monotonic() - began
    for path in paths:
        response = await api.get(path, headers=user.headers)
        assert response.status_code == 401, (path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    return taken


async def test_logout_refuses_the_token_at_three_services_and_ends_its_stream(
        platform: RunningPlatform) -> None:
    async with platform.client() as api:
        patient = await register_patient(api, "logout")
        await assert_accepted(api, patient, PATIENT_READS)

        lines: list[str] = []
        opened = asyncio.Event()

        async def read_stream() -> None:
            async with api.stream("GET", "/api/v1/notifications/stream",
                                  headers=patient.headers | {"Accept": "text/event-stream"},
                                  timeout=httpx.Timeout(30.0, read=60.0)) as response:
                assert response.status_code == 200, await response.aread()
                async for line in response.aiter_lines():
                    lines.append(line)
                    opened.set()

        reader = asyncio.create_task(read_stream())
        await asyncio.wait_for(opened.wait(), 15)

        ok(await api.post("/api/v1/auth/logout", headers=patient.headers), 204)
        began = time.monotonic()
        taken = await refused_everywhere_within(api, patient, PATIENT_READS, WITHIN)
        await asyncio.wait_for(reader, WITHIN)  # the stream ended by itself
        stream_taken = time.monotonic() - began
        print(f"\n[revocation] logout refused at 3 services after {taken:.2f} s, "
              f"stream closed after {stream_taken:.2f} s")
        assert "event: unauthorized" in lines, lines
        after = lines[lines.index("event: unauthorized"):]  # its data line, not a feed item's
        data = next(line for line in after if line.startswith("data: "))
        assert "session" in json.loads(data.removeprefix("data: "))["detail"]

        # The user's other sessions are untouched; a new login works everywhere.
        again = await login(api, patient.email)
        fresh = User(patient.id, patient.email, patient.roles, again["access_token"],
                     again["refresh_token"])
        await assert_accepted(api, fresh, PATIENT_READS)


async def test_deactivation_refuses_the_users_tokens_within_seconds(
        platform: RunningPlatform) -> None:
    async with platform.client() as api:
        admin = await as_admin(api, platform)
        nurse = await create_staff(api, admin, ["nurse"], "revoked-nurse")
        paths = ("/api/v1/patients", "/api/v1/appointments", "/api/v1/notifications/feed")
        await assert_accepted(api, nurse, paths)
        ok(await api.post(f"/api/v1/users/{nurse.id}/deactivate", headers=admin.headers))
        taken = await refused_everywhere_within(api, nurse, paths, WITHIN)
        print(f"\n[revocation] deactivation refused at 3 services after {taken:.2f} s")


async def test_a_revoked_signing_key_ends_its_tokens_everywhere(
        platform: RunningPlatform) -> None:
    async with platform.client() as api:
        admin = await as_admin(api, platform)
        # Rotate first, so that only tokens minted from here on carry the key revoked
        # below (the rest of the session's tokens keep their retired, published key).
        ok(await api.post("/api/v1/auth/keys/rotate", headers=admin.headers))
        patient = await register_patient(api, "key-revoked")
        kid = next(k["kid"] for k in ok(await api.get("/api/v1/auth/keys",
                                                       headers=admin.headers))
                   if k["state"] == "active")
        await assert_accepted(api, patient, PATIENT_READS)

        revoked = ok(await api.post(f"/api/v1/auth/keys/{kid}/revoke", headers=admin.headers))
        assert revoked["state"] == "revoked", revoked
        taken = await refused_everywhere_within(api, patient, (*PATIENT_READS,
                                                               "/api/v1/auth/me"), WITHIN)
        print(f"\n[revocation] key revocation refused at 4 services after {taken:.2f} s")
        jwks = ok(await api.get("/.well-known/jwks.json"))
        assert kid not in {k["kid"] for k in jwks["keys"]}

        # Signing went on with the key published in advance: a new login works within the
        # same few seconds (the gateway fetches the key set again once it has heard of the
        # revocation, at its next poll).
        again = await login(api, patient.email)
        fresh = User(patient.id, patient.email, patient.roles, again["access_token"],
                     again["refresh_token"])

        async def accepted() -> bool:
            return all(s not in (401, 403) for s in await statuses(api, fresh, PATIENT_READS))

        await eventually(accepted, within=WITHIN, interval=0.2,
                         message="the next key's tokens were refused")
        ok(await api.get("/api/v1/auth/me", headers=admin.headers))  # older key: still fine
