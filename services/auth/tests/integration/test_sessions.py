"""Register, log in, refresh, log out against the real MongoDB-protocol server; refresh
families and their reuse detection (RFC 9700 §4.14.2); events through the outbox."""

from __future__ import annotations

import jwt

from healthflow.auth.domain import hash_refresh_token
from healthflow.auth.store import REFRESH_TOKENS, SESSIONS
from healthflow.common.permissions import permissions_for


async def test_register_login_me_refresh_logout(auth, subscriber) -> None:
    user = await auth.register(email="Florence.N." + auth.email("x").split(".", 1)[1])
    assert user["roles"] == ["patient"] and user["phone"] == "+447911123456"
    assert "password" not in str(user) and "password_hash" not in user

    login = await auth.login(user["email"].upper())  # emails are case-insensitive
    assert login.status_code == 200, login.text
    assert login.headers["cache-control"] == "no-store"
    issued = login.json()
    assert set(issued) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert issued["token_type"] == "Bearer" and issued["expires_in"] == 900

    header = jwt.get_unverified_header(issued["access_token"])
    assert header["alg"] == "EdDSA" and header["typ"] == "at+jwt"
    assert header["kid"] == auth.app.state.keys.signing_kid
    claims = jwt.decode(issued["access_token"], options={"verify_signature": False})
    assert claims["sub"] == user["id"] and claims["iss"] == "healthflow-auth"
    assert claims["aud"] == "healthflow" and claims["exp"] - claims["iat"] == 900
    assert claims["roles"] == ["patient"]
    assert set(claims["permissions"]) == permissions_for(["patient"])
    assert claims["client_id"] == "healthflow" and claims["jti"]

    me = await auth.http.get("/api/v1/auth/me", headers=auth.bearer(issued["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == user["id"] and "profile:read_own" in me.json()["permissions"]

    # Only the hash of a refresh token is stored.
    stored = await auth.db[REFRESH_TOKENS].find_one(
        {"_id": hash_refresh_token(issued["refresh_token"])})
    assert stored is not None
    assert await auth.db[REFRESH_TOKENS].find_one({"_id": issued["refresh_token"]}) is None

    refreshed = await auth.http.post("/api/v1/auth/refresh",
                                     json={"refresh_token": issued["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    renewed = refreshed.json()
    assert renewed["refresh_token"] != issued["refresh_token"]
    assert renewed["access_token"] != issued["access_token"]
    me = await auth.http.get("/api/v1/auth/me", headers=auth.bearer(renewed["access_token"]))
    assert me.status_code == 200

    out = await auth.http.post("/api/v1/auth/logout", headers=auth.bearer(renewed["access_token"]))
    assert out.status_code == 204
    after = await auth.http.post("/api/v1/auth/refresh",
                                 json={"refresh_token": renewed["refresh_token"]})
    assert after.status_code == 400
    assert after.headers["content-type"] == "application/problem+json"
    assert after.json()["error"] == "invalid_grant"

    uid = user["id"]
    for type_ in ("user.registered", "auth.login_succeeded", "auth.token_refreshed",
                  "auth.logged_out"):
        assert len(await auth.events(type_, uid)) == 1, type_
        await subscriber.wait_for(lambda e, t=type_: e.type == t and e.subject == uid)
    registered = (await auth.events("user.registered", uid))[0]
    data = registered["data"]
    assert {k: data[k] for k in ("user_id", "roles", "self_registered")} == {
        "user_id": uid, "roles": ["patient"], "self_registered": True}
    assert all(set(data[f]) == {"key_id", "nonce", "ciphertext"}
               for f in ("email", "full_name", "phone"))
    assert registered["source"] == "/healthflow/auth"
    # The routing key is the type alone; nothing personal anywhere (issue 17: sealed).
    assert user["email"] not in str(registered) and "Pat Example" not in str(registered)


async def test_reusing_a_refresh_token_revokes_the_whole_family(auth, subscriber) -> None:
    user, first = await auth.patient()
    second = (await auth.http.post("/api/v1/auth/refresh",
                                   json={"refresh_token": first["refresh_token"]})).json()
    third = await auth.http.post("/api/v1/auth/refresh",
                                 json={"refresh_token": second["refresh_token"]})
    assert third.status_code == 200
    current = third.json()["refresh_token"]

    replay = await auth.http.post("/api/v1/auth/refresh",
                                  json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # The newest token of the family, never used, stops working too.
    legit = await auth.http.post("/api/v1/auth/refresh", json={"refresh_token": current})
    assert legit.status_code == 400

    claims = jwt.decode(first["access_token"], options={"verify_signature": False})
    session = await auth.db[SESSIONS].find_one({"_id": claims["sid"]})
    assert session["status"] == "revoked" and session["revoked_reason"] == "refresh_reuse"
    events = await auth.events("auth.refresh_reuse_detected", user["id"])
    assert len(events) == 1
    assert events[0]["data"]["session_id"] == claims["sid"]
    assert events[0]["data"]["presented_generation"] == 1
    assert events[0]["data"]["current_generation"] == 3
    await subscriber.wait_for(
        lambda e: e.type == "auth.refresh_reuse_detected" and e.subject == user["id"])

    # Another session of the same user is untouched.
    other = await auth.tokens(user["email"])
    ok = await auth.http.post("/api/v1/auth/refresh",
                              json={"refresh_token": other["refresh_token"]})
    assert ok.status_code == 200


async def test_unknown_refresh_tokens_are_refused(auth) -> None:
    response = await auth.http.post("/api/v1/auth/refresh", json={"refresh_token": "nope"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_sessions_end_at_their_absolute_lifetime(auth) -> None:
    _, issued = await auth.patient()
    claims = jwt.decode(issued["access_token"], options={"verify_signature": False})
    # Move the session's end into the past (as time passing would).
    session = await auth.db[SESSIONS].find_one({"_id": claims["sid"]})
    await auth.db[SESSIONS].update_one(
        {"_id": claims["sid"]}, {"$set": {"expires_at": session["created_at"]}})
    response = await auth.http.post("/api/v1/auth/refresh",
                                    json={"refresh_token": issued["refresh_token"]})
    assert response.status_code == 400


async def test_role_changes_reach_the_next_refreshed_token(auth) -> None:
    staff = await auth.staff("nurse")
    issued = await auth.tokens(staff["email"])
    changed = await auth.http.put(f"/api/v1/users/{staff['id']}/roles/receptionist",
                                  headers=auth.admin)
    assert changed.status_code == 200 and changed.json()["roles"] == ["nurse", "receptionist"]
    renewed = (await auth.http.post("/api/v1/auth/refresh",
                                    json={"refresh_token": issued["refresh_token"]})).json()
    claims = jwt.decode(renewed["access_token"], options={"verify_signature": False})
    assert claims["roles"] == ["nurse", "receptionist"]
    assert "appointments:book_any" in claims["permissions"]


async def test_parallel_refreshes_of_one_token_yield_at_most_one_successor(auth) -> None:
    import asyncio

    _, issued = await auth.patient()
    responses = await asyncio.gather(*(
        auth.http.post("/api/v1/auth/refresh", json={"refresh_token": issued["refresh_token"]})
        for _ in range(5)))
    winners = [r for r in responses if r.status_code == 200]
    assert len(winners) <= 1
    assert all(r.status_code == 400 for r in responses if r.status_code != 200)
    # Any loser counts as a replay, so the whole family is revoked.
    claims = jwt.decode(issued["access_token"], options={"verify_signature": False})
    session = await auth.db[SESSIONS].find_one({"_id": claims["sid"]})
    assert session["status"] == "revoked"
    for winner in winners:
        after = await auth.http.post("/api/v1/auth/refresh",
                                     json={"refresh_token": winner.json()["refresh_token"]})
        assert after.status_code == 400
