"""Issue 16, account lifecycle: the owner changes their e-mail address or phone number with
the current password (and a fresh authenticator code when they have one);
``user.contact_changed`` carries the new values sealed under the person key, an address
that is taken gets the same answer, and nothing is published after an erasure."""

from __future__ import annotations

from typing import Any

from healthflow.auth.store import USERS
from healthflow.common.personaldata import open_sealed, person_key_from_json
from healthflow.contracts.sealed import SealedValue

from .test_mfa import enrol

NEW_PHONE = "+447911123999"


async def change(auth: Any, access_token: str, **body: Any) -> Any:
    return await auth.http.patch("/api/v1/auth/me/contact", headers=auth.bearer(access_token),
                                 json={"current_password": auth.password} | body)


async def test_changing_the_address_and_number_publishes_them_sealed(auth: Any) -> None:
    user, tokens = await auth.patient()
    new_email = auth.email("moved")

    done = await change(auth, tokens["access_token"], email=new_email, phone="+44 7911 123999")
    assert done.status_code == 202, done.text
    assert done.headers["cache-control"] == "no-store"

    me = (await auth.http.get("/api/v1/auth/me",
                              headers=auth.bearer(tokens["access_token"]))).json()
    assert me["email"] == new_email and me["phone"] == NEW_PHONE
    [event] = await auth.events("user.contact_changed", user["id"])
    data = event["data"]
    assert data["changed"] == ["email", "phone"]
    assert new_email not in repr(data) and "123999" not in repr(data)
    key = person_key_from_json((await auth.http.get(f"/internal/person-keys/{user['id']}")).json())
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
    taken = await change(auth, tokens["access_token"], email=other["email"].upper())
    assert taken.status_code == free.status_code == 202, taken.text
    assert taken.json() == free.json()
    assert len(await auth.events("user.contact_changed", user["id"])) == 1
    stored = await auth.db[USERS].find_one({"_id": user["id"]})
    assert stored["email_normalized"] != other["email"].casefold()


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


async def test_nothing_is_published_for_an_erased_account(auth: Any) -> None:
    user, tokens = await auth.patient()
    erased = await auth.http.post(f"/api/v1/users/{user['id']}/erasure", headers=auth.admin)
    assert erased.status_code == 200, erased.text
    refused = await change(auth, tokens["access_token"], email=auth.email("ghost"))
    assert refused.status_code == 401, refused.text
    assert await auth.events("user.contact_changed", user["id"]) == []
