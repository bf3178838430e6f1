"""Issue 16, account lifecycle: the owner changes their e-mail address or phone number with
the current password (and a fresh authenticator code when they have one); a new address
changes only once the link sent to it is redeemed; ``user.contact_changed`` carries the
new values sealed under the person key, an address that is taken gets the same answer
(and its owner a notice), code guesses spend the failed-login budget, requests are
capped, and nothing is published after an erasure."""

from __future__ import annotations

from typing import Any

from healthflow.auth.store import CONTACT_LINKS, USERS
from healthflow.common.links import account_link_token, token_digest
from healthflow.common.personaldata import open_sealed, person_key_from_json
from healthflow.common.servicecredentials import DEVELOPMENT_KEY, authorization
from healthflow.contracts.auth import CONTACT_REVERT_PURPOSE, EMAIL_CHANGE_PURPOSE
from healthflow.contracts.sealed import SealedValue

from .test_mfa import enrol

NEW_PHONE = "+447911123999"


async def change(auth: Any, access_token: str, **body: Any) -> Any:
    return await auth.http.patch("/api/v1/auth/me/contact", headers=auth.bearer(access_token),
                                 json={"current_password": auth.password} | body)


def confirm_token(auth: Any, change_id: str) -> str:
    """What the notification service puts in the link it mails to the new address."""
    secret = auth.settings.account_link_secret.get_secret_value().encode()
    return account_link_token(secret, EMAIL_CHANGE_PURPOSE, change_id)


async def confirm(auth: Any, token: str) -> Any:
    return await auth.http.post("/api/v1/auth/contact/confirm", json={"token": token})


async def me(auth: Any, tokens: dict[str, Any]) -> dict[str, Any]:
    return (await auth.http.get("/api/v1/auth/me",
                                headers=auth.bearer(tokens["access_token"]))).json()


async def test_changing_the_address_and_number_publishes_them_sealed(auth: Any) -> None:
    user, tokens = await auth.patient()
    new_email = auth.email("moved")

    done = await change(auth, tokens["access_token"], email=new_email, phone="+44 7911 123999")
    assert done.status_code == 202, done.text
    assert done.headers["cache-control"] == "no-store"
    # the number changes now; the address only once the link sent there is redeemed
    assert (await me(auth, tokens))["email"] == user["email"]
    [number] = await auth.events("user.contact_changed", user["id"])
    assert number["data"]["changed"] == ["phone"]
    [requested] = await auth.events("auth.email_change_requested", user["id"])
    data = requested["data"]
    assert new_email not in repr(data)
    key = person_key_from_json((await auth.http.get(
        f"/internal/person-keys/{user['id']}",
        headers=authorization(DEVELOPMENT_KEY, "notification"))).json())
    assert open_sealed(key, user["id"], "email", SealedValue(**data["email"])) == new_email
    token = confirm_token(auth, data["change_id"])
    stored = await auth.db[CONTACT_LINKS].find_one({"link_id": data["change_id"]})
    assert stored["_id"] == token_digest(token) and token not in repr(stored)

    assert (await confirm(auth, token)).status_code == 204
    assert (await confirm(auth, token)).status_code == 400  # once
    me_after = await me(auth, tokens)
    assert me_after["email"] == new_email and me_after["phone"] == NEW_PHONE
    [_, event] = await auth.events("user.contact_changed", user["id"])
    data = event["data"]
    assert data["changed"] == ["email"]
    assert new_email not in repr(data) and "123999" not in repr(data)
    assert open_sealed(key, user["id"], "email", SealedValue(**data["email"])) == new_email
    assert open_sealed(key, user["id"], "phone", SealedValue(**data["phone"])) == NEW_PHONE
    # the new address logs in; the old one no longer does; the session goes on
    assert (await auth.login(new_email)).status_code == 200
    assert (await auth.login(user["email"])).status_code == 400


async def test_the_current_password_is_required(auth: Any) -> None:
    user, tokens = await auth.patient()
    wrong = await change(auth, tokens["access_token"], current_password="Not-The-Password-55",
                         phone=NEW_PHONE)
    assert wrong.status_code == 403, wrong.text
    assert wrong.headers["content-type"] == "application/problem+json"
    nothing = await auth.http.patch("/api/v1/auth/me/contact",
                                    headers=auth.bearer(tokens["access_token"]),
                                    json={"current_password": auth.password})
    assert nothing.status_code == 422, nothing.text
    anonymous = await auth.http.patch("/api/v1/auth/me/contact",
                                      json={"current_password": auth.password,
                                            "phone": NEW_PHONE})
    assert anonymous.status_code == 401, anonymous.text
    assert (await auth.db[USERS].find_one({"_id": user["id"]}))["phone"] != NEW_PHONE
    assert await auth.events("user.contact_changed", user["id"]) == []


async def test_a_taken_address_gets_the_same_answer_and_changes_nothing(auth: Any) -> None:
    other = await auth.register()
    user, tokens = await auth.patient()
    free = await change(auth, tokens["access_token"], email=auth.email("free"))
    assert (await me(auth, tokens))["email"] == user["email"]  # pending, nothing shown
    taken = await change(auth, tokens["access_token"], email=other["email"].upper())
    assert taken.status_code == free.status_code == 202, taken.text
    assert taken.json() == free.json()
    assert (await me(auth, tokens))["email"] == user["email"]
    assert await auth.events("user.contact_changed", user["id"]) == []
    assert len(await auth.events("auth.email_change_requested", user["id"])) == 1
    # the taken address's owner is told someone tried
    assert len(await auth.events("auth.registration_attempted", other["id"])) == 1
    stored = await auth.db[USERS].find_one({"_id": user["id"]})
    assert stored["email_normalized"] != other["email"].casefold()


async def test_an_address_taken_before_the_link_is_redeemed_changes_nothing(
        auth: Any) -> None:
    user, tokens = await auth.patient()
    wanted = auth.email("wanted")
    assert (await change(auth, tokens["access_token"], email=wanted)).status_code == 202
    [requested] = await auth.events("auth.email_change_requested", user["id"])
    squatter = await auth.register(email=wanted)

    assert (await confirm(auth, confirm_token(auth, requested["data"]["change_id"]))
            ).status_code == 204
    assert (await me(auth, tokens))["email"] == user["email"]
    assert await auth.events("user.contact_changed", user["id"]) == []
    assert len(await auth.events("auth.registration_attempted", squatter["id"])) == 1


async def test_a_newer_request_voids_the_older_link_and_requests_are_capped(
        auth: Any) -> None:
    user, tokens = await auth.patient()
    wanted = [auth.email(f"try{n}") for n in range(4)]
    for address in wanted[:3]:
        done = await change(auth, tokens["access_token"], email=address)
        assert done.status_code == 202, done.text
    capped = await change(auth, tokens["access_token"], email=wanted[3])
    assert capped.status_code == 429, capped.text
    assert capped.headers["content-type"] == "application/problem+json"
    assert int(capped.headers["retry-after"]) > 0
    first, *_, last = await auth.events("auth.email_change_requested", user["id"])
    assert (await confirm(auth, confirm_token(auth, first["data"]["change_id"]))
            ).status_code == 400
    assert (await confirm(auth, confirm_token(auth, last["data"]["change_id"]))
            ).status_code == 204
    assert (await me(auth, tokens))["email"] == wanted[2]


async def test_an_account_with_an_authenticator_needs_a_fresh_code(auth: Any) -> None:
    user, tokens = await auth.patient()
    app, _ = await enrol(auth, tokens["access_token"])

    missing = await change(auth, tokens["access_token"], phone=NEW_PHONE)
    assert missing.status_code == 403, missing.text
    wrong = await change(auth, tokens["access_token"], phone=NEW_PHONE, code=app.wrong_code())
    assert wrong.status_code == 403, wrong.text
    assert await auth.events("user.contact_changed", user["id"]) == []

    done = await change(auth, tokens["access_token"], phone=NEW_PHONE, code=app.code())
    assert done.status_code == 202, done.text
    replayed = await change(auth, tokens["access_token"], phone="+447911123888",
                            code=app.used_code())
    assert replayed.status_code == 403, replayed.text
    assert len(await auth.events("user.contact_changed", user["id"])) == 1


async def test_authenticator_codes_cannot_be_guessed_with_the_right_password(
        auth: Any) -> None:
    user, tokens = await auth.patient()
    app, _ = await enrol(auth, tokens["access_token"])
    answers = [(await change(auth, tokens["access_token"], phone=NEW_PHONE,
                             code=app.wrong_code())).status_code for _ in range(6)]
    assert answers == [403] * 5 + [429], answers
    # the right code is refused too until the client's budget recovers
    late = await change(auth, tokens["access_token"], phone=NEW_PHONE, code=app.code())
    assert late.status_code == 429, late.text
    assert await auth.events("user.contact_changed", user["id"]) == []


async def test_nothing_is_published_for_an_erased_account(auth: Any) -> None:
    user, tokens = await auth.patient()
    erased = await auth.http.post(f"/api/v1/users/{user['id']}/erasure", headers=auth.admin)
    assert erased.status_code == 200, erased.text
    refused = await change(auth, tokens["access_token"], email=auth.email("ghost"))
    assert refused.status_code == 401, refused.text
    assert await auth.events("user.contact_changed", user["id"]) == []


def revert_token(auth: Any, revert_id: str) -> str:
    """What the notification service puts in the notice to the old address."""
    secret = auth.settings.account_link_secret.get_secret_value().encode()
    return account_link_token(secret, CONTACT_REVERT_PURPOSE, revert_id)


async def test_the_old_address_undoes_the_change_and_every_session_ends(auth: Any) -> None:
    user, tokens = await auth.patient()
    other_device = await auth.tokens(user["email"])
    new_email = auth.email("hijack")
    assert (await change(auth, tokens["access_token"], email=new_email)).status_code == 202
    [requested] = await auth.events("auth.email_change_requested", user["id"])
    assert (await confirm(auth, confirm_token(auth, requested["data"]["change_id"]))
            ).status_code == 204
    [moved] = await auth.events("user.contact_changed", user["id"])
    revert_id = moved["data"]["revert_id"]
    stored = await auth.db[CONTACT_LINKS].find_one({"link_id": revert_id})
    assert stored["_id"] == token_digest(revert_token(auth, revert_id))
    forged = await auth.http.post("/api/v1/auth/contact/revert",
                                  json={"token": confirm_token(auth, revert_id)})
    assert forged.status_code == 400, forged.text  # another purpose's token

    undone = await auth.http.post("/api/v1/auth/contact/revert",
                                  json={"token": revert_token(auth, revert_id)})
    assert undone.status_code == 204, undone.text
    again = await auth.http.post("/api/v1/auth/contact/revert",
                                 json={"token": revert_token(auth, revert_id)})
    assert again.status_code == 400 and again.headers["content-type"] == (
        "application/problem+json")
    back = await auth.db[USERS].find_one({"_id": user["id"]})
    assert back["email"] == user["email"]
    [_, restored] = await auth.events("user.contact_changed", user["id"])
    assert restored["data"]["changed"] == ["email"] and restored["data"]["revert_id"] is None
    [revoked] = await auth.events("auth.user_tokens_revoked", user["id"])
    assert revoked["data"]["reason"] == "logout"
    for device in (tokens, other_device):
        refreshed = await auth.http.post("/api/v1/auth/refresh",
                                         json={"refresh_token": device["refresh_token"]})
        assert refreshed.status_code == 400, refreshed.text
    assert (await auth.login(new_email)).status_code == 400
    assert (await auth.login(user["email"])).status_code == 200
