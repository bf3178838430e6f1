"""Changing a password and resetting it by e-mail link, against the real MongoDB-protocol
server: the current password is required, the registration policy applies, every session
ends; a reset link is stored only hashed, works once, expires, and the answer to a reset
request is the same whether or not the address has an account."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from healthflow.auth.store import PASSWORD_RESETS, USERS
from healthflow.common.links import account_link_token, token_digest
from healthflow.common.mongo import utcnow
from healthflow.contracts.auth import PASSWORD_RESET_PURPOSE

NEW_PASSWORD = "Copper-Willow-Signal-4417"


async def change(auth: Any, access_token: str, current: str, new: str) -> Any:
    return await auth.http.post("/api/v1/auth/password", headers=auth.bearer(access_token),
                                json={"current_password": current, "new_password": new})


async def refresh(auth: Any, refresh_token: str) -> Any:
    return await auth.http.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})


def link_token(auth: Any, reset_id: str) -> str:
    """What the notification service puts in the e-mailed link for ``reset_id``."""
    secret = auth.settings.account_link_secret.get_secret_value().encode()
    return account_link_token(secret, PASSWORD_RESET_PURPOSE, reset_id)


async def ask_reset(auth: Any, email: str) -> Any:
    return await auth.http.post("/api/v1/auth/password/reset", json={"email": email})


async def complete(auth: Any, token: str, new: str = NEW_PASSWORD) -> Any:
    return await auth.http.post("/api/v1/auth/password/reset/complete",
                                json={"token": token, "new_password": new})


async def test_changing_the_password_needs_the_current_one_and_ends_every_session(
        auth: Any) -> None:
    user, first = await auth.patient()
    second = await auth.tokens(user["email"])  # another device

    wrong = await change(auth, first["access_token"], "Not-The-Password-55", NEW_PASSWORD)
    assert wrong.status_code == 403, wrong.text
    assert wrong.headers["content-type"] == "application/problem+json"
    assert wrong.json()["detail"] == "the current password is incorrect"
    weak = await change(auth, first["access_token"], auth.password, "password123")
    assert weak.status_code == 422 and "new_password" in weak.json()["detail"], weak.text
    same = await change(auth, first["access_token"], auth.password, auth.password)
    assert same.status_code == 422 and "differ" in same.json()["detail"], same.text
    before = await auth.db[USERS].find_one({"_id": user["id"]})

    done = await change(auth, first["access_token"], auth.password, NEW_PASSWORD)
    assert done.status_code == 204, done.text
    assert done.headers["cache-control"] == "no-store"

    after = await auth.db[USERS].find_one({"_id": user["id"]})
    assert after["password_hash"] != before["password_hash"]
    assert after["password_hash"].startswith("$argon2id$")
    for tokens in (first, second):
        refused = await refresh(auth, tokens["refresh_token"])
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert (await auth.login(user["email"], auth.password)).status_code == 400
    assert (await auth.login(user["email"], NEW_PASSWORD)).status_code == 200
    [event] = await auth.events("auth.password_changed", user["id"])
    assert event["data"] == {"user_id": user["id"], "method": "change", "reset_id": None,
                             "sessions_revoked": 2}


async def test_guessing_the_current_password_spends_the_login_budget(auth: Any) -> None:
    _, tokens = await auth.patient()
    statuses = [(await change(auth, tokens["access_token"], f"Wrong-Guess-{i}-Harbour",
                              NEW_PASSWORD)).status_code for i in range(6)]
    assert statuses == [403] * 5 + [429], statuses
    # the right password is refused too from this client while its budget is spent
    blocked = await change(auth, tokens["access_token"], auth.password, NEW_PASSWORD)
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1


async def test_changing_the_password_needs_a_token(auth: Any) -> None:
    response = await auth.http.post("/api/v1/auth/password", json={
        "current_password": auth.password, "new_password": NEW_PASSWORD})
    assert response.status_code == 401, response.text


async def test_a_reset_link_is_stored_hashed_works_once_and_ends_every_session(
        auth: Any) -> None:
    user, tokens = await auth.patient()
    unknown = await ask_reset(auth, auth.email("nobody"))
    known = await ask_reset(auth, user["email"].upper())
    assert unknown.status_code == known.status_code == 202
    assert unknown.json() == known.json() and unknown.headers.get("content-type") == \
        known.headers.get("content-type")

    [event] = await auth.events("auth.password_reset_requested", user["id"])
    reset_id = event["data"]["reset_id"]
    assert set(event["data"]) == {"user_id", "reset_id", "expires_at"}
    token = link_token(auth, reset_id)
    assert token not in str(event)
    [stored] = await auth.db[PASSWORD_RESETS].find({"user_id": user["id"]}).to_list()
    assert stored["_id"] == token_digest(token) and token not in str(stored)
    lifetime = stored["expires_at"] - stored["created_at"]
    assert lifetime == timedelta(seconds=auth.settings.password_reset_ttl)

    # a refused password leaves the link usable
    weak = await complete(auth, token, "password123")
    assert weak.status_code == 422, weak.text
    done = await complete(auth, token)
    assert done.status_code == 204, done.text
    again = await complete(auth, token, "Another-Fresh-Meadow-880")
    assert again.status_code == 400, again.text
    assert again.json()["type"].endswith("/invalid-reset-link")

    refused = await refresh(auth, tokens["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert (await auth.login(user["email"], auth.password)).status_code == 400
    assert (await auth.login(user["email"], NEW_PASSWORD)).status_code == 200
    [changed] = await auth.events("auth.password_changed", user["id"])
    assert changed["data"] == {"user_id": user["id"], "method": "reset", "reset_id": reset_id,
                               "sessions_revoked": 1}


async def test_expired_superseded_and_unknown_links_are_refused_alike(auth: Any) -> None:
    user, _ = await auth.patient()
    await ask_reset(auth, user["email"])
    await ask_reset(auth, user["email"])
    first, second = [e["data"]["reset_id"]
                     for e in await auth.events("auth.password_reset_requested", user["id"])]
    superseded = await complete(auth, link_token(auth, first))
    # time is an input: the link's expiry is moved into the past rather than waited for
    await auth.db[PASSWORD_RESETS].update_one(
        {"reset_id": second}, {"$set": {"expires_at": utcnow() - timedelta(seconds=1)}})
    expired = await complete(auth, link_token(auth, second))
    unknown = await complete(auth, link_token(auth, "no-such-request"))
    bodies = [r.json() for r in (superseded, expired, unknown)]
    assert [r.status_code for r in (superseded, expired, unknown)] == [400] * 3
    assert bodies[0] == bodies[1] == bodies[2], bodies
    assert (await auth.login(user["email"], auth.password)).status_code == 200


async def test_reset_mails_per_account_are_capped_and_inactive_accounts_get_none(
        auth: Any) -> None:
    user, _ = await auth.patient()
    answers = [await ask_reset(auth, user["email"]) for _ in range(5)]
    assert {r.status_code for r in answers} == {202}
    assert len({r.text for r in answers}) == 1
    cap = auth.settings.password_resets_per_hour
    assert len(await auth.events("auth.password_reset_requested", user["id"])) == cap

    staff = await auth.staff("nurse")
    deactivated = await auth.http.post(f"/api/v1/users/{staff['id']}/deactivate",
                                       headers=auth.admin)
    assert deactivated.status_code == 200
    assert (await ask_reset(auth, staff["email"])).status_code == 202
    assert await auth.events("auth.password_reset_requested", staff["id"]) == []
