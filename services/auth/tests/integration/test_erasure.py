"""Issue 17: personal values leave auth sealed under the person's key; erasure destroys
the key, anonymises the account, ends its sessions and publishes ``user.erased``."""

from __future__ import annotations

import bson
import pytest

from healthflow.auth.store import PERSON_KEYS, USERS
from healthflow.common.personaldata import (
    SealedValueError,
    open_sealed,
    person_key_from_json,
)
from healthflow.common.servicecredentials import DEVELOPMENT_KEY, authorization
from healthflow.contracts.sealed import SealedValue

NAME = "Pat Example"
AS_NOTIFICATION = authorization(DEVELOPMENT_KEY, "notification")


async def raw_bson(db, collection: str) -> bytes:
    return b"".join([bson.encode(doc) async for doc in db[collection].find({})])


async def test_registration_seals_the_personal_values_under_the_person_key(auth) -> None:
    user = await auth.register(phone="+447911123456")
    event = (await auth.events("user.registered", user["id"]))[0]
    assert event["dataschema"].endswith(":v2")
    data = event["data"]
    text = repr(data)
    assert user["email"] not in text and NAME not in text and "7911123456" not in text

    answer = await auth.http.get(f"/internal/person-keys/{user['id']}", headers=AS_NOTIFICATION)
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    key = person_key_from_json(answer.json())
    assert open_sealed(key, user["id"], "email", SealedValue(**data["email"])) == user["email"]
    assert open_sealed(key, user["id"], "full_name", SealedValue(**data["full_name"])) == NAME
    assert open_sealed(key, user["id"], "phone", SealedValue(**data["phone"])) == "+447911123456"
    # bound to subject and field: a value moved to another person or field does not open
    with pytest.raises(SealedValueError):
        open_sealed(key, "someone-else", "email", SealedValue(**data["email"]))
    with pytest.raises(SealedValueError):
        open_sealed(key, user["id"], "full_name", SealedValue(**data["email"]))
    # the key is stored wrapped by the KEK, never in clear
    assert key.key not in await raw_bson(auth.db, PERSON_KEYS)


async def test_erasure_destroys_the_key_and_anonymises_the_account(auth) -> None:
    user, tokens = await auth.patient()
    bearer = auth.bearer(tokens["access_token"])
    assert (await auth.http.post(f"/api/v1/users/{user['id']}/erasure",
                                 headers=bearer)).status_code == 403  # not their own to run

    erased = await auth.http.post(f"/api/v1/users/{user['id']}/erasure", headers=auth.admin)
    assert erased.status_code == 200, erased.text
    body = erased.json()
    assert body["email"] == "" and body["full_name"] == "" and body["phone"] is None
    assert body["status"] == "inactive" and body["erased_at"]

    gone = await auth.http.get(f"/internal/person-keys/{user['id']}", headers=AS_NOTIFICATION)
    assert gone.status_code == 404
    assert gone.headers["content-type"] == "application/problem+json"
    assert await auth.db[PERSON_KEYS].count_documents({"_id": user["id"]}) == 0
    users = await raw_bson(auth.db, USERS)
    assert user["email"].encode() not in users and b"7911123456" not in users
    assert (await auth.http.get("/api/v1/auth/me", headers=bearer)).status_code == 401
    assert (await auth.login(user["email"])).status_code == 400
    assert [e["data"] for e in await auth.events("user.erased", user["id"])] == [
        {"user_id": user["id"], "erased_by": (await auth.http.get(
            "/api/v1/auth/me", headers=auth.admin)).json()["id"]}]

    again = await auth.http.post(f"/api/v1/users/{user['id']}/erasure", headers=auth.admin)
    assert again.status_code == 200 and len(await auth.events("user.erased", user["id"])) == 1
    revived = await auth.http.post(f"/api/v1/users/{user['id']}/activate", headers=auth.admin)
    assert revived.status_code == 409 and "erased" in revived.json()["detail"]
    # the address is free again
    assert (await auth.register(email=user["email"]))["id"] != user["id"]


async def test_erasing_an_unknown_account_or_the_last_admin_is_refused(auth) -> None:
    missing = await auth.http.post("/api/v1/users/nobody/erasure", headers=auth.admin)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    me = (await auth.http.get("/api/v1/auth/me", headers=auth.admin)).json()
    last = await auth.http.post(f"/api/v1/users/{me['id']}/erasure", headers=auth.admin)
    assert last.status_code == 409 and "last active admin" in last.json()["detail"]
    assert await auth.db[PERSON_KEYS].count_documents({"_id": me["id"]}) == 1
