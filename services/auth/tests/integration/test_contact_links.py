"""Issue 16, security review of the e-mail change links: a hijacker's "this wasn't me" link
cannot void the owner's older one (H1), a pending change dies with a password change,
reset, deactivation or erasure (M1, M2), a link is used up only with what it applies
and a taken old address is a clear 409 (L1), and a revert voids pending password
resets (H2)."""

from __future__ import annotations

from typing import Any

import pytest

from healthflow.auth import personal
from healthflow.auth.store import CONTACT_LINKS, USERS

from .test_contact import change, confirm, confirm_token, revert_token
from .test_passwords import NEW_PASSWORD, ask_reset, complete, link_token


async def revert(auth: Any, revert_id: str) -> Any:
    return await auth.http.post("/api/v1/auth/contact/revert",
                                json={"token": revert_token(auth, revert_id)})


async def move(auth: Any, user: dict[str, Any], access_token: str, email: str) -> str:
    """Change ``user``'s address to ``email`` and redeem the link; the revert link's id."""
    assert (await change(auth, access_token, email=email)).status_code == 202
    requested = (await auth.events("auth.email_change_requested", user["id"]))[-1]
    assert (await confirm(auth, confirm_token(auth, requested["data"]["change_id"]))
            ).status_code == 204
    moved = (await auth.events("user.contact_changed", user["id"]))[-1]
    return str(moved["data"]["revert_id"])


async def pending(auth: Any, user: dict[str, Any], access_token: str) -> str:
    """Ask for an address change and leave it pending; the confirmation token."""
    done = await change(auth, access_token, email=auth.email("pending"))
    assert done.status_code == 202, done.text
    requested = (await auth.events("auth.email_change_requested", user["id"]))[-1]
    return confirm_token(auth, requested["data"]["change_id"])


async def address(auth: Any, user: dict[str, Any]) -> str:
    return str((await auth.db[USERS].find_one({"_id": user["id"]}))["email"])


async def test_a_later_revert_link_cannot_void_the_owners_older_one(auth: Any) -> None:
    user, tokens = await auth.patient()
    first = await move(auth, user, tokens["access_token"], auth.email("b"))   # A -> B
    second = await move(auth, user, tokens["access_token"], auth.email("c"))  # B -> C
    # the hijacker undoes their own second step with the link mailed to B ...
    assert (await revert(auth, second)).status_code == 204
    # ... and the owner's link, mailed to A, still brings the account home
    home = await revert(auth, first)
    assert home.status_code == 204, home.text
    assert await address(auth, user) == user["email"]
    # the owner's revert voids the later one (already used here) and nothing is left open
    assert await auth.db[CONTACT_LINKS].count_documents(
        {"user_id": user["id"], "used_at": None}) == 0


async def test_a_password_change_voids_a_pending_address_change(auth: Any) -> None:
    user, tokens = await auth.patient()
    token = await pending(auth, user, tokens["access_token"])
    changed = await auth.http.post(
        "/api/v1/auth/password", headers=auth.bearer(tokens["access_token"]),
        json={"current_password": auth.password, "new_password": NEW_PASSWORD})
    assert changed.status_code == 204, changed.text
    assert (await confirm(auth, token)).status_code == 400
    assert await address(auth, user) == user["email"]


async def test_a_password_reset_voids_a_pending_address_change(auth: Any) -> None:
    user, tokens = await auth.patient()
    token = await pending(auth, user, tokens["access_token"])
    assert (await ask_reset(auth, user["email"])).status_code == 202
    [event] = await auth.events("auth.password_reset_requested", user["id"])
    assert (await complete(auth, link_token(auth, event["data"]["reset_id"]))
            ).status_code == 204
    assert (await confirm(auth, token)).status_code == 400
    assert await address(auth, user) == user["email"]


async def test_deactivation_voids_a_pending_address_change(auth: Any) -> None:
    user, tokens = await auth.patient()
    token = await pending(auth, user, tokens["access_token"])
    for step in ("deactivate", "activate"):
        done = await auth.http.post(f"/api/v1/users/{user['id']}/{step}", headers=auth.admin)
        assert done.status_code == 200, done.text
    assert (await confirm(auth, token)).status_code == 400
    assert await address(auth, user) == user["email"]


async def test_erasure_deletes_the_contact_links(auth: Any) -> None:
    user, tokens = await auth.patient()
    await move(auth, user, tokens["access_token"], auth.email("moved"))
    await pending(auth, user, tokens["access_token"])
    assert await auth.db[CONTACT_LINKS].count_documents({"user_id": user["id"]}) == 3
    erased = await auth.http.post(f"/api/v1/users/{user['id']}/erasure", headers=auth.admin)
    assert erased.status_code == 200, erased.text
    assert await auth.db[CONTACT_LINKS].count_documents({"user_id": user["id"]}) == 0


async def test_a_failed_confirmation_leaves_the_link_usable(
        auth: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    user, tokens = await auth.patient()
    token = await pending(auth, user, tokens["access_token"])

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("simulated failure while applying the change")

    with monkeypatch.context() as patched:
        patched.setattr(personal, "contact_changed_event", broken)
        failed = await confirm(auth, token)
    assert failed.status_code == 500, failed.text
    assert await address(auth, user) == user["email"]
    assert (await confirm(auth, token)).status_code == 204
    assert await address(auth, user) != user["email"]


async def test_a_revert_to_a_taken_address_ends_the_sessions_and_says_so(auth: Any) -> None:
    user, tokens = await auth.patient()
    moved_to = auth.email("hijack")
    revert_id = await move(auth, user, tokens["access_token"], moved_to)
    await auth.register(email=user["email"])  # the old address is free, and taken meanwhile

    refused = await revert(auth, revert_id)
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert await address(auth, user) == moved_to
    [revoked] = await auth.events("auth.user_tokens_revoked", user["id"])
    assert revoked["data"]["reason"] == "logout"
    refreshed = await auth.http.post("/api/v1/auth/refresh",
                                     json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 400, refreshed.text
    assert (await revert(auth, revert_id)).status_code == 400  # used up


async def test_a_revert_voids_a_reset_link_mailed_to_the_hijackers_address(
        auth: Any) -> None:
    user, tokens = await auth.patient()
    hijacker = auth.email("hijack")
    revert_id = await move(auth, user, tokens["access_token"], hijacker)
    assert (await ask_reset(auth, hijacker)).status_code == 202
    [event] = await auth.events("auth.password_reset_requested", user["id"])

    assert (await revert(auth, revert_id)).status_code == 204
    late = await complete(auth, link_token(auth, event["data"]["reset_id"]))
    assert late.status_code == 400, late.text
    assert (await auth.login(user["email"])).status_code == 200
