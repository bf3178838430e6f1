"""Issue 17: the profile's name and contact details come from the sealed
``user.registered`` (opened with the person key); ``user.erased`` removes every
demographic of the person, and a registration whose key is gone stores none."""

from __future__ import annotations

import uuid

import bson

from .conftest import PERSON_KEYS, PatientService

NAME, EMAIL_DOMAIN, PHONE = "Octavia Brightwater", "erase.example.org", "+4930987654"


async def raw_text(psvc: PatientService) -> bytes:
    db = psvc.runtime.db
    chunks = []
    for name in await db.list_collection_names():
        chunks += [bson.encode(doc) async for doc in db[name].find({})]
    return b"".join(chunks)


async def test_erasure_removes_the_demographics_and_keeps_the_chart(
        psvc: PatientService) -> None:
    pid = f"pat-{uuid.uuid4().hex[:8]}"
    email = f"{pid}@{EMAIL_DOMAIN}"
    await psvc.register(pid, email=email, phone=PHONE, full_name=NAME)
    me = psvc.tokens.headers(pid, roles=["patient"])
    patch = {"birth_date": "1911-04-02", "gender": "female",
             "allergies": [{"code": {"text": "Penicillin"}, "criticality": "high"}],
             "emergency_contacts": [{"name": "Rufus Brightwater", "relationship": "brother",
                                     "phone": "+12025550199"}]}
    assert (await psvc.client.patch("/api/v1/patients/me", json=patch,
                                    headers=me)).status_code == 200
    assert (await psvc.client.get("/api/v1/patients/me", headers=me)).json()["name"][
        "text"] == NAME
    assert email.encode() in await raw_text(psvc)

    PERSON_KEYS.erase(pid)
    await psvc.deliver("user.erased", {"user_id": pid, "erased_by": "admin-1"})
    after = await raw_text(psvc)
    for value in (email, PHONE, NAME, "Rufus Brightwater", "+12025550199", "1911-04-02"):
        assert value.encode() not in after, value
    chart = (await psvc.client.get("/api/v1/patients/me", headers=me)).json()
    assert chart["name"]["text"] is None and chart["telecom"] == {"email": None,
                                                                   "phone": None}
    assert chart["allergies"][0]["code"]["text"] == "Penicillin"  # care data stays


async def test_a_registration_whose_key_is_gone_stores_nothing_personal(
        psvc: PatientService) -> None:
    pid = f"pat-{uuid.uuid4().hex[:8]}"
    data = PERSON_KEYS.registered(pid, email=f"{pid}@{EMAIL_DOMAIN}", phone=PHONE,
                                  full_name=NAME, roles=["patient"])
    PERSON_KEYS.erase(pid)
    await psvc.deliver("user.registered", data)
    after = await raw_text(psvc)
    assert NAME.encode() not in after and f"{pid}@{EMAIL_DOMAIN}".encode() not in after
