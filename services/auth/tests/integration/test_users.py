"""Accounts: registration input, admin routes and their permissions, activation, roles."""

from __future__ import annotations

import pytest

from healthflow.auth.store import SESSIONS, USERS

ADMIN_ROUTES = [
    ("GET", "/api/v1/users", None),
    ("POST", "/api/v1/users", {"email": "x@example.org", "password": "Quiet-Harbour-Lantern-73",
                               "full_name": "X", "roles": ["doctor"]}),
    ("GET", "/api/v1/users/{id}", None),
    ("POST", "/api/v1/users/{id}/deactivate", None),
    ("POST", "/api/v1/users/{id}/activate", None),
    ("PUT", "/api/v1/users/{id}/roles/doctor", None),
    ("DELETE", "/api/v1/users/{id}/roles/patient", None),
    ("GET", "/api/v1/auth/keys", None),
    ("POST", "/api/v1/auth/keys/rotate", None),
]


async def test_admin_routes_refuse_a_patient(auth) -> None:
    user, issued = await auth.patient()
    for method, path, body in ADMIN_ROUTES:
        response = await auth.http.request(method, path.format(id=user["id"]), json=body,
                                           headers=auth.bearer(issued["access_token"]))
        assert response.status_code == 403, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    # …and answer 401 to nobody at all.
    for method, path, body in ADMIN_ROUTES:
        response = await auth.http.request(method, path.format(id=user["id"]), json=body)
        assert response.status_code == 401, (method, path)
    stored = await auth.db[USERS].find_one({"_id": user["id"]})
    assert stored["status"] == "active" and stored["roles"] == ["patient"]


async def test_compliance_officers_read_users_but_change_nothing(auth) -> None:
    officer = await auth.staff("compliance_officer")
    token = (await auth.tokens(officer["email"]))["access_token"]
    listed = await auth.http.get("/api/v1/users", headers=auth.bearer(token))
    assert listed.status_code == 200
    one = await auth.http.get(f"/api/v1/users/{officer['id']}", headers=auth.bearer(token))
    assert one.status_code == 200 and one.json()["roles"] == ["compliance_officer"]
    denied = await auth.http.post(f"/api/v1/users/{officer['id']}/deactivate",
                                  headers=auth.bearer(token))
    assert denied.status_code == 403


async def test_list_search_and_paginate(auth) -> None:
    doctors = [await auth.staff("doctor", email=auth.email(f"doc{i}")) for i in range(3)]
    nurse = await auth.staff("nurse", email=auth.email("Nightingale"))
    by_role = (await auth.http.get("/api/v1/users", params={"role": "doctor"},
                                   headers=auth.admin)).json()
    assert [u["id"] for u in by_role["items"]] == [d["id"] for d in doctors]
    assert by_role["next_cursor"] is None

    page1 = (await auth.http.get("/api/v1/users", params={"role": "doctor", "limit": 2},
                                 headers=auth.admin)).json()
    assert len(page1["items"]) == 2 and page1["next_cursor"]
    page2 = (await auth.http.get("/api/v1/users", params={"role": "doctor", "limit": 2,
                                                          "cursor": page1["next_cursor"]},
                                 headers=auth.admin)).json()
    assert [u["id"] for u in page1["items"] + page2["items"]] == [d["id"] for d in doctors]
    assert page2["next_cursor"] is None

    by_email = (await auth.http.get("/api/v1/users", params={"email": "NIGHTINGALE"},
                                    headers=auth.admin)).json()
    assert [u["id"] for u in by_email["items"]] == [nurse["id"]]
    by_name = (await auth.http.get("/api/v1/users", params={"name": "sam st"},
                                   headers=auth.admin)).json()
    assert {u["id"] for u in by_name["items"]} == {d["id"] for d in doctors} | {nurse["id"]}
    regex_chars = (await auth.http.get("/api/v1/users", params={"name": ".*"},
                                       headers=auth.admin)).json()
    assert regex_chars["items"] == []  # searched literally

    bad = await auth.http.get("/api/v1/users", params={"cursor": "!!garbage"},
                              headers=auth.admin)
    assert bad.status_code == 400
    bad_role = await auth.http.get("/api/v1/users", params={"role": "wizard"},
                                   headers=auth.admin)
    assert bad_role.status_code == 422
    missing = await auth.http.get("/api/v1/users/no-such-id", headers=auth.admin)
    assert missing.status_code == 404


async def test_deactivated_users_cannot_log_in_or_refresh(auth, subscriber) -> None:
    user, issued = await auth.patient()
    second = await auth.tokens(user["email"])
    off = await auth.http.post(f"/api/v1/users/{user['id']}/deactivate", headers=auth.admin)
    assert off.status_code == 200 and off.json()["status"] == "inactive"

    assert (await auth.login(user["email"])).status_code == 400
    for tokens in (issued, second):
        refresh = await auth.http.post("/api/v1/auth/refresh",
                                       json={"refresh_token": tokens["refresh_token"]})
        assert refresh.status_code == 400
    me = await auth.http.get("/api/v1/auth/me", headers=auth.bearer(issued["access_token"]))
    assert me.status_code == 401
    sessions = await auth.db[SESSIONS].find({"user_id": user["id"]}).to_list()
    assert len(sessions) == 2 and {s["status"] for s in sessions} == {"revoked"}
    event = await subscriber.wait_for(lambda e: e.type == "user.deactivated"
                                      and e.subject == user["id"])
    assert event.data == {"user_id": user["id"], "sessions_revoked": 2}
    assert event.actor != user["id"]  # the admin did it

    # Idempotent: deactivating again changes and publishes nothing.
    await auth.http.post(f"/api/v1/users/{user['id']}/deactivate", headers=auth.admin)
    assert len(await auth.events("user.deactivated", user["id"])) == 1

    on = await auth.http.post(f"/api/v1/users/{user['id']}/activate", headers=auth.admin)
    assert on.status_code == 200 and on.json()["status"] == "active"
    assert (await auth.login(user["email"])).status_code == 200
    assert len(await auth.events("user.activated", user["id"])) == 1


async def test_roles_are_assigned_and_removed_by_admins(auth, subscriber) -> None:
    staff = await auth.staff("nurse")
    added = await auth.http.put(f"/api/v1/users/{staff['id']}/roles/doctor", headers=auth.admin)
    assert added.status_code == 200 and added.json()["roles"] == ["doctor", "nurse"]
    again = await auth.http.put(f"/api/v1/users/{staff['id']}/roles/doctor", headers=auth.admin)
    assert again.status_code == 200
    removed = await auth.http.delete(f"/api/v1/users/{staff['id']}/roles/nurse",
                                     headers=auth.admin)
    assert removed.json()["roles"] == ["doctor"]
    changes = [e["data"] for e in await auth.events("user.role_changed", staff["id"])]
    assert changes == [
        {"user_id": staff["id"], "role": "doctor", "change": "assigned",
         "roles": ["doctor", "nurse"]},
        {"user_id": staff["id"], "role": "nurse", "change": "removed", "roles": ["doctor"]},
    ]
    await subscriber.wait_for(lambda e: e.type == "user.role_changed"
                              and e.data["change"] == "removed")
    patient = await auth.http.put(f"/api/v1/users/{staff['id']}/roles/patient",
                                  headers=auth.admin)
    assert patient.status_code == 422
    unknown = await auth.http.put(f"/api/v1/users/{staff['id']}/roles/wizard",
                                  headers=auth.admin)
    assert unknown.status_code == 422


async def test_the_last_admin_cannot_be_removed(auth) -> None:
    admin_id = (await auth.http.get("/api/v1/auth/me", headers=auth.admin)).json()["id"]
    for method, path in (("POST", f"/api/v1/users/{admin_id}/deactivate"),
                         ("DELETE", f"/api/v1/users/{admin_id}/roles/admin")):
        response = await auth.http.request(method, path, headers=auth.admin)
        assert response.status_code == 409, response.text
    second = await auth.staff("admin")
    response = await auth.http.delete(f"/api/v1/users/{admin_id}/roles/admin",
                                      headers=auth.admin)
    assert response.status_code == 200 and "admin" not in response.json()["roles"]
    assert second["roles"] == ["admin"]


async def test_staff_accounts_carry_staff_roles_only(auth) -> None:
    body = {"email": auth.email(), "password": auth.password, "full_name": "N",
            "roles": ["patient"]}
    response = await auth.http.post("/api/v1/users", json=body, headers=auth.admin)
    assert response.status_code == 422
    body["roles"] = []
    assert (await auth.http.post("/api/v1/users", json=body,
                                 headers=auth.admin)).status_code == 422
    body["roles"] = ["doctor", "doctor", "nurse"]
    created = await auth.http.post("/api/v1/users", json=body, headers=auth.admin)
    assert created.status_code == 201 and created.json()["roles"] == ["doctor", "nurse"]
    event = (await auth.events("user.registered", created.json()["id"]))[0]
    assert event["data"]["self_registered"] is False and event["data"]["phone"] is None


async def test_emails_are_unique_case_insensitively(auth) -> None:
    user = await auth.register()
    again = await auth.http.post("/api/v1/users", headers=auth.admin, json={
        "email": user["email"].upper(), "password": auth.password, "full_name": "Other",
        "roles": ["nurse"]})
    assert again.status_code == 409  # an admin creating staff is told
    assert again.headers["content-type"] == "application/problem+json"
    assert await auth.db[USERS].count_documents({"email_normalized": user["email"]}) == 1
    assert len(await auth.events("user.registered", user["id"])) == 1


async def test_signing_up_with_a_taken_address_answers_as_for_a_new_one(auth) -> None:
    """Issue 16: the answer does not tell whether an address is registered; nothing is
    created or changed, and the owner is told (a few times an hour at most)."""
    user = await auth.register()
    other_password = "Granite-Poppy-Harvest-5521"
    fresh = await auth.http.post("/api/v1/auth/register", json={
        "email": auth.email("fresh"), "password": other_password, "full_name": "Other",
        "phone": "+447911123456"})
    taken = await auth.http.post("/api/v1/auth/register", json={
        "email": user["email"].upper(), "password": other_password, "full_name": "Other",
        "phone": "+447911123456"})
    assert fresh.status_code == taken.status_code == 201, taken.text
    assert set(fresh.json()) == set(taken.json())
    decoy = taken.json()
    assert decoy["id"] != user["id"] and decoy["email"].casefold() == user["email"]
    assert decoy["roles"] == ["patient"] and decoy["status"] == "active"
    assert await auth.db[USERS].count_documents({"email_normalized": user["email"]}) == 1
    assert await auth.db[USERS].count_documents({"_id": decoy["id"]}) == 0
    assert len(await auth.events("user.registered", user["id"])) == 1
    assert (await auth.login(user["email"], other_password)).status_code == 400
    assert (await auth.login(user["email"])).status_code == 200

    for _ in range(4):
        again = await auth.http.post("/api/v1/auth/register", json={
            "email": user["email"], "password": other_password, "full_name": "Other",
            "phone": "+447911123456"})
        assert again.status_code == 201
    notices = await auth.events("auth.registration_attempted", user["id"])
    assert len(notices) == 3  # settings.registration_notices: 3/hour
    assert notices[0]["data"] == {"user_id": user["id"]}


@pytest.mark.parametrize(("content", "headers"), [
    (b'{"email": "a@example.org", "password": ', {"content-type": "application/json"}),
    (b'not json at all', {"content-type": "application/json"}),
    (b'[]', {"content-type": "application/json"}),
])
async def test_malformed_bodies_are_refused(auth, content: bytes,
                                            headers: dict[str, str]) -> None:
    response = await auth.http.post("/api/v1/auth/register", content=content, headers=headers)
    assert response.status_code in (400, 422)
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(("change", "fragment"), [
    ({"role": "admin"}, "extra"),  # unknown field (and an attempt to pick one's role)
    ({"password": "short"}, "password"),
    ({"password": "Password123456!"}, "common"),
    ({"password": "pat.smith-Is-My-Name-42"}, "email address"),
    ({"phone": "07911 123456"}, "international"),
    ({"phone": "+44 12"}, "phone"),
    ({"email": "not-an-email"}, "email"),
    ({"full_name": "   "}, "full_name"),
])
async def test_bad_registrations_write_nothing(auth, outbox, change: dict[str, str],
                                               fragment: str) -> None:
    users_before = await auth.db[USERS].count_documents({})
    outbox_before = len(await outbox(auth.db))
    body = {"email": "pat.smith@example.org", "password": auth.password,
            "full_name": "Pat Smith", "phone": "+447911123456"} | change
    response = await auth.http.post("/api/v1/auth/register", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert fragment in response.text.lower()
    assert body["password"] not in response.text  # the password is never echoed
    assert await auth.db[USERS].count_documents({}) == users_before
    assert len(await outbox(auth.db)) == outbox_before
