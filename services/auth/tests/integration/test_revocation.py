"""Revocation in seconds: logout, deactivation, role changes and key revocation end access
tokens at once (the auth service's own verifier here; every service's through the same
events, see gateway/tests/e2e/test_revocation.py); tokens living too long are refused."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from healthflow.common.auth import TokenVerifier
from healthflow.common.errors import Unauthorized
from healthflow.common.revocation import RevocationFeed, RevocationState
from healthflow.common.servicecredentials import DEVELOPMENT_KEY, authorization
from healthflow.devkit.testing import eventually

AS_PATIENT = authorization(DEVELOPMENT_KEY, "patient")  # the caller's service credential


def claims(user_id: str, *, iat: int, exp: int) -> dict[str, Any]:
    return {"iss": "healthflow-auth", "aud": "healthflow", "sub": user_id, "iat": iat,
            "exp": exp, "jti": str(uuid.uuid4()), "client_id": "healthflow",
            "roles": ["patient"], "permissions": ["profile:read_own"]}


async def me_status(auth, token: str) -> int:
    return (await auth.http.get("/api/v1/auth/me", headers=auth.bearer(token))).status_code


async def refused_within(auth, token: str, seconds: float) -> None:
    async def refused() -> bool:
        return await me_status(auth, token) == 401

    await eventually(refused, within=seconds, message="the token is still accepted")


async def test_a_token_living_longer_than_the_maximum_is_refused(auth) -> None:
    user, _ = await auth.patient()
    now = int(time.time())
    longest = auth.settings.token_max_lifetime
    fine = auth.app.state.keys.sign(claims(user["id"], iat=now, exp=now + longest))
    assert await me_status(auth, fine) == 200  # the control: exactly the maximum
    too_long = auth.app.state.keys.sign(claims(user["id"], iat=now, exp=now + longest + 1))
    response = await auth.http.get("/api/v1/auth/me", headers=auth.bearer(too_long))
    assert response.status_code == 401
    assert "lifetime" in response.json()["detail"]


async def test_logout_ends_the_access_token_at_once_and_is_in_the_snapshot(auth) -> None:
    user, tokens = await auth.patient()
    access = tokens["access_token"]
    assert await me_status(auth, access) == 200  # now in the verified-token cache
    response = await auth.http.post("/api/v1/auth/logout", headers=auth.bearer(access))
    assert response.status_code == 204
    await refused_within(auth, access, 5)
    detail = (await auth.http.get("/api/v1/auth/me", headers=auth.bearer(access))).json()
    assert "session" in detail["detail"]

    [event] = await auth.events("auth.session_revoked", subject=user["id"])
    session_id = event["data"]["session_id"]
    assert event["data"]["reason"] == "logout" and event["data"]["user_id"] == user["id"]
    assert set(event["data"]) == {"session_id", "user_id", "reason", "until"}  # ids only

    snapshot = (await auth.http.get("/internal/revocations", headers=AS_PATIENT)).json()
    assert session_id in {s["id"] for s in snapshot["sessions"]}
    assert all(s["until"] > time.time() for s in snapshot["sessions"])

    # A verifier that starts after the logout (a service starting late) learns it from
    # the snapshot, not from the event it never heard.
    state = RevocationState()
    late = TokenVerifier(issuer="healthflow-auth", audience="healthflow",
                         jwks=auth.app.state.keys.jwks(), revocations=state)
    assert (await late.verify(access)).subject == user["id"]  # nothing known yet

    async def fetch() -> dict[str, Any]:
        return dict((await auth.http.get("/internal/revocations", headers=AS_PATIENT)).json())

    feed = RevocationFeed("late", state, auth.app.state.runtime.transport, fetch,
                          sync_interval=60)
    assert await feed.sync()
    with pytest.raises(Unauthorized, match="session has ended"):
        await late.verify(access)  # the cached principal included


async def test_deactivation_ends_every_token_of_the_user(auth) -> None:
    staff = await auth.staff("nurse")
    first = (await auth.tokens(staff["email"]))["access_token"]
    second = (await auth.tokens(staff["email"]))["access_token"]
    assert await me_status(auth, first) == 200
    response = await auth.http.post(f"/api/v1/users/{staff['id']}/deactivate",
                                    headers=auth.admin)
    assert response.status_code == 200, response.text
    await refused_within(auth, first, 5)
    assert await me_status(auth, second) == 401
    [event] = await auth.events("auth.user_tokens_revoked", subject=staff["id"])
    assert event["data"]["reason"] == "user_deactivated"


async def test_a_role_change_ends_old_tokens_and_a_refresh_carries_the_new_roles(auth) -> None:
    staff = await auth.staff("nurse", "receptionist")
    tokens = await auth.tokens(staff["email"])
    assert await me_status(auth, tokens["access_token"]) == 200
    removed = await auth.http.delete(f"/api/v1/users/{staff['id']}/roles/receptionist",
                                     headers=auth.admin)
    assert removed.status_code == 200, removed.text
    await refused_within(auth, tokens["access_token"], 5)
    # The session stands: a refresh at once (even within the same second) gives a token
    # that is accepted and carries the new roles.
    refreshed = await auth.http.post("/api/v1/auth/refresh",
                                     json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    new_access = refreshed.json()["access_token"]
    assert await me_status(auth, new_access) == 200
    principal = await auth.app.state.verifier.verify(new_access)
    assert principal.roles == {"nurse"}


async def test_a_revoked_signing_key_ends_its_tokens_and_leaves_the_jwks(auth) -> None:
    user, tokens = await auth.patient()
    access = tokens["access_token"]
    kid = auth.app.state.keys.signing_kid
    assert await me_status(auth, access) == 200

    patient = await auth.http.post(f"/api/v1/auth/keys/{kid}/revoke",
                                   headers=auth.bearer(access))
    assert patient.status_code == 403
    unknown = await auth.http.post("/api/v1/auth/keys/no-such-kid/revoke", headers=auth.admin)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"

    response = await auth.http.post(f"/api/v1/auth/keys/{kid}/revoke", headers=auth.admin)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "revoked" and response.json()["revoked_at"]
    await refused_within(auth, access, 5)
    body = (await auth.http.get("/api/v1/auth/me", headers=auth.bearer(access))).json()
    assert "key" in body["detail"]
    jwks = (await auth.http.get("/.well-known/jwks.json")).json()
    assert kid not in {k["kid"] for k in jwks["keys"]}
    assert auth.app.state.keys.signing_kid != kid  # signing went on with the next key

    # The admin's token was signed by the revoked key too: they log in again, and the
    # new key's tokens work.
    fresh = await auth.tokens(user["email"])
    assert await me_status(auth, fresh["access_token"]) == 200
    [event] = await auth.events("auth.signing_key_revoked", subject=kid)
    assert event["data"]["kid"] == kid and event["data"]["reason"] == "key_compromised"
    snapshot = (await auth.http.get("/internal/revocations", headers=AS_PATIENT)).json()
    assert kid in {k["kid"] for k in snapshot["keys"]}


async def test_the_snapshot_is_not_published_through_the_openapi_document(auth) -> None:
    document = (await auth.http.get("/openapi.json")).json()
    assert not any(path.startswith("/internal") for path in document["paths"])
