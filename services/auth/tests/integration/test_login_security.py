"""Failed-login throttling (429 + Retry-After, per (account, client) pair, the account's
ceiling and per address, in memory and in Redis), no user enumeration, rehashing on login."""

from __future__ import annotations

import asyncio
import math
import time
import uuid

import pytest

from healthflow.auth.app import create_app
from healthflow.auth.passwords import PasswordHasher
from healthflow.auth.store import USERS
from healthflow.devkit.embedded import port_open
from healthflow.devkit.testing import running_app

WRONG = "Wrong-Password-Entirely-1"


def assert_429(response) -> int:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 24 * 3600
    assert response.json()["status"] == 429
    return retry_after


async def test_unknown_email_and_wrong_password_get_the_same_answer(auth) -> None:
    user = await auth.register()
    wrong = await auth.login(user["email"], WRONG)
    unknown = await auth.login(auth.email("nobody"), WRONG)
    assert wrong.status_code == unknown.status_code == 400
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"] == "invalid_grant"
    assert wrong.headers["content-type"] == unknown.headers["content-type"]
    # A deactivated account with its right password answers the same too.
    await auth.http.post(f"/api/v1/users/{user['id']}/deactivate", headers=auth.admin)
    inactive = await auth.login(user["email"])
    assert inactive.status_code == 400 and inactive.json() == wrong.json()

    failures = await auth.events("auth.login_failed")
    reasons = [(e["data"]["user_id"], e["data"]["reason"]) for e in failures]
    assert (user["id"], "bad_password") in reasons
    assert (None, "unknown_account") in reasons
    assert (user["id"], "account_inactive") in reasons
    for event in failures:  # no password, no email in clear
        assert WRONG not in str(event) and "@" not in str(event["data"])
        assert event["data"]["client_ip"] == "127.0.0.1"


async def test_unknown_email_costs_as_much_as_a_wrong_password(settings_factory) -> None:
    """Timing: the unknown-email path verifies a dummy hash made with the same Argon2
    parameters (checked exactly), so it does the same work (checked by time: the fastest
    of interleaved runs of each, so that other load on the machine cannot tip it)."""
    hasher = PasswordHasher(settings_factory("unused", argon2_time_cost=2,
                                             argon2_memory_cost=19_456))
    stored = await hasher.hash("Quiet-Harbour-Lantern-73")
    assert not hasher.needs_rehash(hasher._dummy_hash)  # the same parameters as real hashes

    async def timed(password_hash: str | None) -> float:
        started = time.perf_counter()
        assert await hasher.verify(password_hash, WRONG) is False
        return time.perf_counter() - started

    known: list[float] = []
    unknown: list[float] = []
    for _ in range(7):
        known.append(await timed(stored))
        unknown.append(await timed(None))
    assert 0.5 < min(unknown) / min(known) < 2.0, (known, unknown)
    assert min(known) > 0.005  # real Argon2 work was done


async def test_failures_per_account_and_client_are_throttled(settings_factory, unique_name,
                                                             outbox) -> None:
    settings = settings_factory(f"auth_{unique_name}", login_failures_per_client=["3/15 minutes"],
                                login_failures_per_ip="100/15 minutes")
    app = create_app(settings)
    async with running_app(app) as http:
        from healthflow.auth.cli import ensure_first_admin_async

        email = f"victim.{uuid.uuid4().hex[:6]}@example.org"
        admin_id = await ensure_first_admin_async(settings, email, "Velvet-Orbit-Meadow-9128")
        form = {"username": email, "password": WRONG}
        for _ in range(3):
            assert (await http.post("/api/v1/auth/token", data=form)).status_code == 400
        refused = await http.post("/api/v1/auth/token", data=form)
        assert_429(refused)
        assert "this client for this account" in refused.json()["detail"]
        # The right password waits too, from this client: its budget here is spent.
        right = {"username": email, "password": "Velvet-Orbit-Meadow-9128"}
        assert_429(await http.post("/api/v1/auth/token", data=right))
        # Unknown accounts are throttled alike (no enumeration through the throttle).
        ghost = {"username": f"ghost.{uuid.uuid4().hex[:6]}@example.org", "password": WRONG}
        for _ in range(3):
            assert (await http.post("/api/v1/auth/token", data=ghost)).status_code == 400
        assert_429(await http.post("/api/v1/auth/token", data=ghost))
        throttled = await outbox(app.state.runtime.db, {
            "type": "auth.login_failed", "envelope.data.reason": "throttled_account"})
        # One event per account, client and window, however many refusals
        assert len(throttled) == 2
        # The known account is named by id (the ghost by nothing); never by email.
        assert sorted(str(e["data"]["user_id"]) for e in throttled) == sorted(
            [admin_id, "None"])
        assert all(e["data"]["earlier_refusals"] == 0 for e in throttled)
        assert all("@" not in str(e["data"]) for e in throttled)


async def test_an_attacker_cannot_lock_the_owner_out(settings_factory, unique_name) -> None:
    """Issue 16: an attacker's failures slow the attacker; the owner, from another address
    and with the right password, logs in at once (and from the attacker's address the
    waits grow as the failures go on)."""
    settings = settings_factory(f"auth_{unique_name}",
                                login_failures_per_client=["3/15 minutes", "5/day"],
                                login_failures_per_ip="100/15 minutes",
                                trusted_proxies=["127.0.0.1"])
    async with running_app(create_app(settings)) as http:
        body = {"email": f"owner.{uuid.uuid4().hex[:6]}@example.org",
                "password": "Quiet-Harbour-Lantern-73", "full_name": "O", "phone": "+447911123456"}
        assert (await http.post("/api/v1/auth/register", json=body)).status_code == 201
        attacker = {"X-Forwarded-For": "203.0.113.66"}
        wrong = {"username": body["email"], "password": WRONG}
        statuses = [(await http.post("/api/v1/auth/token", data=wrong, headers=attacker)
                     ).status_code for _ in range(8)]
        assert statuses == [400] * 3 + [429] * 5, statuses
        first_wait = assert_429(await http.post("/api/v1/auth/token", data=wrong,
                                                headers=attacker))
        assert first_wait <= 15 * 60
        right = {"username": body["email"], "password": body["password"]}
        owner = await http.post("/api/v1/auth/token", data=right,
                                headers={"X-Forwarded-For": "198.51.100.20"})
        assert owner.status_code == 200, owner.text
        # and the attacker's right guess from its own address is still refused
        assert_429(await http.post("/api/v1/auth/token", data=right, headers=attacker))


async def test_progressive_waits_per_client(settings_factory, unique_name) -> None:
    """Past the short window's budget the longer windows rule: the wait grows."""
    from healthflow.auth.throttle import LoginThrottle

    throttle = LoginThrottle(settings_factory(
        f"auth_{unique_name}", login_failures_per_client=["2/2 seconds", "3/hour"]))
    owner, attacker = "owner@example.org", "203.0.113.5"

    async def attempts(count: int) -> list[int | None]:
        waits: list[int | None] = []
        for _ in range(count):
            refused = await throttle.admit(owner, attacker)
            if refused is None:
                await throttle.failed(owner, attacker)
            waits.append(None if refused is None else refused.retry_after)
        return waits

    first = await attempts(3)
    assert first[:2] == [None, None] and first[2] is not None and first[2] <= 2, first
    await asyncio.sleep(2.5)  # the short window has passed: one more guess, then an hour
    second = await attempts(2)
    assert second[0] is None and second[1] is not None and second[1] > 60, second
    # another address is not affected
    assert await throttle.admit(owner, "198.51.100.9") is None


async def test_the_accounts_ceiling_slows_every_client_and_locks_none(settings_factory,
                                                                      unique_name) -> None:
    """Many addresses guessing one account: past the account's ceiling each address gets
    one guess per window instead of its budget, and a client with no failures (the owner)
    is still let in with the right password."""
    settings = settings_factory(f"auth_{unique_name}", login_failures_per_client=["5/hour"],
                                login_failures_account_ceiling="4/hour",
                                login_failures_over_ceiling="1/hour",
                                login_failures_per_ip="100/hour", trusted_proxies=["127.0.0.1"])
    async with running_app(create_app(settings)) as http:
        body = {"email": f"ceil.{uuid.uuid4().hex[:6]}@example.org",
                "password": "Quiet-Harbour-Lantern-73", "full_name": "C", "phone": "+447911123456"}
        assert (await http.post("/api/v1/auth/register", json=body)).status_code == 201
        wrong = {"username": body["email"], "password": WRONG}
        for i in range(4):  # four addresses, one failure each: the ceiling is reached
            response = await http.post("/api/v1/auth/token", data=wrong,
                                       headers={"X-Forwarded-For": f"203.0.113.{i + 1}"})
            assert response.status_code == 400
        # a known address (one failure already) gets no more; a new one gets one guess only
        assert_429(await http.post("/api/v1/auth/token", data=wrong,
                                   headers={"X-Forwarded-For": "203.0.113.1"}))
        bot = {"X-Forwarded-For": "203.0.113.50"}
        assert (await http.post("/api/v1/auth/token", data=wrong, headers=bot)).status_code == 400
        assert_429(await http.post("/api/v1/auth/token", data=wrong, headers=bot))
        right = {"username": body["email"], "password": body["password"]}
        owner = await http.post("/api/v1/auth/token", data=right,
                                headers={"X-Forwarded-For": "198.51.100.7"})
        assert owner.status_code == 200, owner.text


async def test_failures_per_address_are_throttled(settings_factory, unique_name) -> None:
    """Behind the gateway (a trusted proxy) the client address is X-Forwarded-For's."""
    settings = settings_factory(f"auth_{unique_name}", login_failures_per_client=["50/15 minutes"],
                                login_failures_per_ip="4/15 minutes",
                                trusted_proxies=["127.0.0.1"])
    async with running_app(create_app(settings)) as http:
        attacker = {"X-Forwarded-For": "203.0.113.7"}
        for i in range(4):
            form = {"username": f"guess{i}@example.org", "password": WRONG}
            response = await http.post("/api/v1/auth/token", data=form, headers=attacker)
            assert response.status_code == 400
        fresh = {"username": "guess-new@example.org", "password": WRONG}
        assert_429(await http.post("/api/v1/auth/token", data=fresh, headers=attacker))
        # A spoofed extra hop in front does not help: the right-most untrusted address counts.
        spoofed = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
        assert_429(await http.post("/api/v1/auth/token", data=fresh, headers=spoofed))
        # Another client is not affected.
        other = await http.post("/api/v1/auth/token", data=fresh,
                                headers={"X-Forwarded-For": "192.0.2.55"})
        assert other.status_code == 400


async def test_redis_counters_are_shared_by_replicas(settings_factory, unique_name) -> None:
    """Two replicas (two apps, one database, one Redis) spend one budget per account and
    client."""
    if not port_open("127.0.0.1", 6379, timeout=2):
        # A clear failure, not a skip: Redis is part of the platform.
        pytest.fail("Redis is not reachable on 127.0.0.1:6379")
    settings = settings_factory(f"auth_{unique_name}", login_failures_per_client=["4/15 minutes"],
                                redis_url="redis://127.0.0.1:6379/0")
    email = f"shared.{uuid.uuid4().hex[:6]}@example.org"
    form = {"username": email, "password": WRONG}
    async with running_app(create_app(settings)) as one, \
            running_app(create_app(settings)) as two:
        for client in (one, two, one, two):
            assert (await client.post("/api/v1/auth/token", data=form)).status_code == 400
        assert_429(await one.post("/api/v1/auth/token", data=form))
        assert_429(await two.post("/api/v1/auth/token", data=form))


async def test_a_successful_login_forgets_the_accounts_failures(settings_factory,
                                                               unique_name) -> None:
    settings = settings_factory(f"auth_{unique_name}", login_failures_per_client=["3/15 minutes"])
    async with running_app(create_app(settings)) as http:
        body = {"email": f"p.{uuid.uuid4().hex[:6]}@example.org",
                "password": "Quiet-Harbour-Lantern-73", "full_name": "P", "phone": "+447911123456"}
        assert (await http.post("/api/v1/auth/register", json=body)).status_code == 201
        wrong = {"username": body["email"], "password": WRONG}
        right = {"username": body["email"], "password": body["password"]}
        for _ in range(2):
            assert (await http.post("/api/v1/auth/token", data=wrong)).status_code == 400
        assert (await http.post("/api/v1/auth/token", data=right)).status_code == 200
        for _ in range(2):
            assert (await http.post("/api/v1/auth/token", data=wrong)).status_code == 400
        assert (await http.post("/api/v1/auth/token", data=right)).status_code == 200


async def test_changed_argon2_parameters_rehash_at_login(settings_factory, unique_name) -> None:
    database = f"auth_{unique_name}"
    old = settings_factory(database)  # t=1, m=1024
    new = settings_factory(database, argon2_time_cost=2, argon2_memory_cost=2048)
    email = f"re.{uuid.uuid4().hex[:6]}@example.org"
    from healthflow.auth.cli import ensure_first_admin_async

    user_id = await ensure_first_admin_async(old, email, "Velvet-Orbit-Meadow-9128")
    app = create_app(new)
    async with running_app(app) as http:
        db = app.state.runtime.db
        before = (await db[USERS].find_one({"_id": user_id}))["password_hash"]
        assert "m=1024,t=1,p=1" in before
        form = {"username": email, "password": "Velvet-Orbit-Meadow-9128"}
        assert (await http.post("/api/v1/auth/token", data=form)).status_code == 200
        after = (await db[USERS].find_one({"_id": user_id}))["password_hash"]
        assert after.startswith("$argon2id$") and "m=2048,t=2,p=1" in after
        assert (await http.post("/api/v1/auth/token", data=form)).status_code == 200


async def test_parallel_guesses_cannot_overshoot_the_account_budget(settings_factory,
                                                                   unique_name) -> None:
    settings = settings_factory(f"auth_{unique_name}", login_failures_per_client=["3/15 minutes"])
    async with running_app(create_app(settings)) as http:
        form = {"username": f"burst.{uuid.uuid4().hex[:6]}@example.org", "password": WRONG}
        responses = await asyncio.gather(
            *(http.post("/api/v1/auth/token", data=form) for _ in range(10)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [400] * 3 + [429] * 7



async def test_refusals_by_the_throttle_are_counted_not_appended(
        settings_factory, unique_name, outbox) -> None:
    """An anonymous flood past the limit adds one event per address and window; the next
    window's event carries the count of the refusals before it."""
    settings = settings_factory(f"auth_{unique_name}", login_failures_per_client=["50/15 minutes"],
                                login_failures_per_ip="2/15 minutes", login_refusals_window=1.0,
                                trusted_proxies=["127.0.0.1"])
    app = create_app(settings)
    async with running_app(app) as http:
        flood = {"X-Forwarded-For": "203.0.113.99"}
        for i in range(2):
            form = {"username": f"flood{i}@example.org", "password": WRONG}
            assert (await http.post("/api/v1/auth/token", data=form, headers=flood)
                    ).status_code == 400
        form = {"username": "flood-x@example.org", "password": WRONG}
        started = time.monotonic()
        for _ in range(30):
            assert_429(await http.post("/api/v1/auth/token", data=form, headers=flood))
        await asyncio.sleep(1.1)  # a window ends: the next refusal reports the ones before
        assert_429(await http.post("/api/v1/auth/token", data=form, headers=flood))
        elapsed = time.monotonic() - started
        events = await outbox(app.state.runtime.db, {
            "type": "auth.login_failed", "envelope.data.reason": "throttled_ip"})
        # one event per window (however slow this machine), and every refusal accounted for
        assert 2 <= len(events) <= 1 + math.ceil(elapsed / 1.0), len(events)
        assert sum(e["data"]["earlier_refusals"] for e in events) + len(events) == 31
