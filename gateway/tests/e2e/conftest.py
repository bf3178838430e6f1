"""The whole platform for the end-to-end suite, and clients that use it the way apps do.

One ``healthflow-run --multi-process --replicas appointment=2`` process serves the
whole session (every service and the gateway as their own processes over RabbitMQ
on the session's virtual host, SecantusDB, free ports). Tests talk to the gateway
only, with :class:`httpx.AsyncClient`: patients register themselves, staff accounts
are created by the first admin through ``POST /api/v1/users``, everyone logs in with
the OAuth2 password form. No test calls a service directly or mints a token it
could use (the forged-token cases build tokens the platform must refuse).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from healthflow.common.errors import PROBLEM_BASE, PROBLEM_JSON
from healthflow.devkit.testing import (
    RunningPlatform,
    eventually,
    platform_process,
    rabbitmq_vhost,
)

TRACES_ENV = {"OTEL_BSP_SCHEDULE_DELAY": "200"}
"""Every process exports its spans to ``<workdir>/traces/<service>-<pid>.jsonl``, flushed
every 200 ms (the SDK's batch processor), for ``test_tracing``."""


def traces_dir(workdir: Path) -> Path:
    return workdir / "traces"


PASSWORD = "Amber-Kestrel-Orchard-2291"
"""Every e2e account's password (passes the policy; Argon2 is cheap in this platform)."""


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """The platform for the whole e2e session, with two appointment-service processes.

    On a virtual host of its own: other suites' services of the same names declare
    their queues with other settings in the session's shared one.
    """
    workdir: Path = tmp_path_factory.mktemp("platform")
    began = time.monotonic()
    with rabbitmq_vhost() as amqp_url, platform_process(
            workdir, amqp_url, "--replicas", "appointment=2",
            env=TRACES_ENV | {"TRACES_FILE": str(traces_dir(workdir) / "{service}-{pid}.jsonl")},
    ) as running:
        print(f"\n[e2e] platform up in {time.monotonic() - began:.1f} s at "
              f"{running.gateway_url} (workdir {workdir})")
        yield running


# --------------------------------------------------------------------------- assertions


def assert_problem(response: httpx.Response, status: int, slug: str | None = None) -> dict:
    """``response`` is an RFC 9457 problem with ``status`` (and type ``…/problems/<slug>``)."""
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path}: expected {status}, got "
        f"{response.status_code}: {response.text[:500]}")
    assert response.headers.get("content-type", "").startswith(PROBLEM_JSON), (
        f"{response.request.method} {response.request.url.path}: not problem+json: "
        f"{response.headers.get('content-type')!r} {response.text[:200]}")
    body = response.json()
    assert body["status"] == status and body.get("title") and body.get("type"), body
    if slug is not None:
        assert body["type"] == PROBLEM_BASE + slug, body
    return body


def ok(response: httpx.Response, status: int = 200) -> Any:
    """The JSON body of a ``status`` answer (the body is shown when the status differs)."""
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url}: expected {status}, got "
        f"{response.status_code}: {response.text[:800]}")
    return response.json() if response.content else None


# --------------------------------------------------------------------------- users


@dataclass
class User:
    """An account, as a client app holds it after logging in."""

    id: str
    email: str
    roles: list[str]
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def new_email(label: str) -> str:
    return f"{label}.{uuid.uuid4().hex[:12]}@example.org"


def new_phone() -> str:
    """A random valid E.164 UK mobile number (+44 7400 …)."""
    return f"+447400{uuid.uuid4().int % 1_000_000:06d}"


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD
                ) -> dict[str, Any]:
    """``POST /api/v1/auth/token`` (OAuth2 password form); the token response."""
    tokens = ok(await client.post("/api/v1/auth/token",
                                  data={"username": email, "password": password}))
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] > 0, tokens
    return tokens


async def me(client: httpx.AsyncClient, access_token: str) -> dict[str, Any]:
    return ok(await client.get("/api/v1/auth/me",
                               headers={"Authorization": f"Bearer {access_token}"}))


async def register_patient(client: httpx.AsyncClient, label: str = "patient") -> User:
    """Self-register a patient through the gateway and log them in."""
    email = new_email(label)
    created = ok(await client.post("/api/v1/auth/register", json={
        "email": email, "password": PASSWORD, "full_name": f"{label.title()} Example",
        "phone": new_phone()}), 201)
    assert created["roles"] == ["patient"], created
    tokens = await login(client, email)
    return User(created["id"], email, ["patient"], tokens["access_token"],
                tokens["refresh_token"])


async def create_staff(client: httpx.AsyncClient, admin: User, roles: Sequence[str],
                       label: str | None = None) -> User:
    """An admin creates a staff account (``POST /api/v1/users``); it logs in."""
    label = label or "-".join(roles).replace("_", "-")
    email = new_email(label)
    created = ok(await client.post("/api/v1/users", headers=admin.headers, json={
        "email": email, "password": PASSWORD, "full_name": f"{label.title()} Staff",
        "phone": new_phone(), "roles": list(roles)}), 201)
    assert sorted(created["roles"]) == sorted(roles), created
    tokens = await login(client, email)
    return User(created["id"], email, sorted(roles), tokens["access_token"],
                tokens["refresh_token"])


async def assign_staff(client: httpx.AsyncClient, admin: User, hospital_id: str, user: User,
                       staff_role: str, department_id: str | None = None) -> dict[str, Any]:
    """The admin gives ``user`` a staff membership at ``hospital_id`` (``staff.assigned``):
    staff use their ``*_any`` permissions only where they work (issue 16). The services
    learn of it through the bus; callers retry their first action until it has arrived."""
    return ok(await client.post(f"/api/v1/hospitals/{hospital_id}/staff", headers=admin.headers,
                                json={"user_id": user.id, "staff_role": staff_role,
                                      "department_id": department_id}), 201)


async def as_admin(client: httpx.AsyncClient, platform: RunningPlatform) -> User:
    tokens = await login(client, platform.admin_email, platform.admin_password)
    account = await me(client, tokens["access_token"])
    return User(account["id"], platform.admin_email, account["roles"],
                tokens["access_token"], tokens["refresh_token"])


# --------------------------------------------------------------------------- mailbox


async def mail_to(platform: RunningPlatform, address: str) -> list[dict[str, Any]]:
    """Every e-mail the local mailbox received for ``address``, oldest first
    (``{received_at, from, to, subject, message_id, text}``)."""
    async with httpx.AsyncClient(base_url=platform.mailbox_url, timeout=10.0) as mailbox:
        return ok(await mailbox.get("/mail", params={"to": address}))


async def wait_for_mail(platform: RunningPlatform, address: str, subject: str, *,
                        count: int = 1, within: float = 30.0) -> list[dict[str, Any]]:
    """The e-mails with ``subject`` to ``address`` once there are ``count`` of them."""
    found: list[dict[str, Any]] = []

    async def arrived() -> bool:
        nonlocal found
        found = [m for m in await mail_to(platform, address) if m["subject"] == subject]
        return len(found) >= count

    await eventually(arrived, within=within,
                     message=f"no {count} e-mail(s) {subject!r} to {address} in {within} s")
    return found


# --------------------------------------------------------------------------- audit


async def audit_events(client: httpx.AsyncClient, reader: User, *, max_pages: int = 200,
                       **filters: str) -> list[dict[str, Any]]:
    """Every audit entry matching ``filters`` (``type``, ``subject``, ``actor``,
    ``patient``…), newest first, paging with ``next_cursor``."""
    params: dict[str, Any] = {"limit": 200, **filters}
    entries: list[dict[str, Any]] = []
    for _ in range(max_pages):
        page = ok(await client.get("/api/v1/audit/events", params=params,
                                   headers=reader.headers))
        entries += page["items"]
        if not page["next_cursor"]:
            return entries
        params["cursor"] = page["next_cursor"]
    raise AssertionError(f"more than {max_pages} pages of audit entries for {filters}")


async def assert_chain_ok(client: httpx.AsyncClient, reader: User) -> dict[str, Any]:
    """``GET /api/v1/audit/verify`` reports the whole chain intact."""
    report = ok(await client.get("/api/v1/audit/verify", headers=reader.headers))
    assert report["ok"] is True and report["first_broken_index"] is None, report
    assert report["checked"] >= 1, report
    return report


# --------------------------------------------------------------------------- session users


@pytest.fixture(scope="session")
async def gateway(platform: RunningPlatform) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the gateway for fixtures shared by the session."""
    async with platform.client() as client:
        yield client


@pytest.fixture(scope="session")
async def admin(gateway: httpx.AsyncClient, platform: RunningPlatform) -> User:
    """The first admin (created by the runner from HEALTHFLOW_ADMIN_*), logged in."""
    return await as_admin(gateway, platform)


@pytest.fixture(scope="session")
async def compliance(gateway: httpx.AsyncClient, admin: User) -> User:
    """A compliance officer the admin created, logged in."""
    return await create_staff(gateway, admin, ["compliance_officer"])


async def gather_limited(coroutines: Sequence[Any], limit: int) -> list[Any]:
    """Run ``coroutines`` with at most ``limit`` at a time; results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(coroutine: Any) -> Any:
        async with gate:
            return await coroutine

    return await asyncio.gather(*(one(c) for c in coroutines))


# --------------------------------------------------------------------------- care directory

BERLIN = "Europe/Berlin"
WORKDAYS = ("mon", "tue", "wed", "thu", "fri")


async def register_hospital(api: httpx.AsyncClient, admin: User, name: str, *,
                            departments: Sequence[str] = (), verify: bool = True,
                            time_zone: str = BERLIN) -> dict[str, Any]:
    """An admin registers a hospital (and departments), and verifies it when ``verify``.

    Returns the hospital as the API answered, plus ``departments``: name → id.
    """
    hospital = ok(await api.post("/api/v1/hospitals", headers=admin.headers, json={
        "name": name, "time_zone": time_zone, "services": ["cardiology", "neurology"],
        "address": {"lines": ["Charitéplatz 1"], "city": "Berlin", "postal_code": "10117",
                    "country": "DE"},
        "contacts": [{"system": "phone", "value": "+49 30 450 50"}],
        "position": {"type": "Point", "coordinates": [13.3777, 52.5251]}}), 201)
    assert hospital["status"] == "pending" and hospital["time_zone"] == time_zone, hospital
    hospital["departments"] = {}
    for department in departments:
        created = ok(await api.post(f"/api/v1/hospitals/{hospital['id']}/departments",
                                    headers=admin.headers,
                                    json={"name": department,
                                          "services": [department.lower()]}), 201)
        hospital["departments"][department] = created["id"]
    if verify:
        verified = ok(await api.post(f"/api/v1/hospitals/{hospital['id']}/verify",
                                     headers=admin.headers))
        assert verified["status"] == "verified", verified
        hospital["status"] = "verified"
    return hospital


async def create_doctor(api: httpx.AsyncClient, admin: User, *, family: str,
                        affiliations: Sequence[dict[str, str]],
                        specialties: Sequence[str] = ("cardiology",),
                        verify: bool = True, modes: Sequence[str] = ("in_person",)
                        ) -> tuple[User, dict[str, Any]]:
    """An admin creates a doctor account; the doctor registers their Practitioner profile
    (retrying while the doctor service has not yet heard of the hospital); the admin
    verifies the licence when ``verify``."""
    doctor = await create_staff(api, admin, ["doctor"], label=f"dr-{family.lower()}")
    body = {
        "name": {"prefix": "Dr.", "given": ["Alex"], "family": family},
        "licence": {"number": f"LIC-{uuid.uuid4().hex[:10]}", "issuer": "Ärztekammer Berlin",
                    "country": "DE"},
        "qualifications": [{"code": "MD", "issuer": "Charité", "year": 2010}],
        "specialties": list(specialties), "languages": ["de", "en"],
        "affiliations": list(affiliations), "modes": list(modes),
        "fee": {"amount": 6000, "currency": "EUR"}, "time_zone": BERLIN,
    }
    profile: dict[str, Any] = {}

    async def registered() -> bool:
        nonlocal profile
        response = await api.post("/api/v1/doctors", headers=doctor.headers, json=body)
        if response.status_code == 422 and "unknown" in response.text:
            return False  # the hospital's events have not reached the doctor service yet
        profile = ok(response, 201)
        return True

    await eventually(registered, within=20, interval=0.2,
                     message=f"the doctor service never learned of {affiliations}")
    assert profile["id"] == doctor.id and profile["status"] == "pending", profile
    if verify:
        profile = ok(await api.post(f"/api/v1/doctors/{doctor.id}/verify",
                                    headers=admin.headers))
        assert profile["status"] == "verified", profile
    return doctor, profile


def weekly_hours(hospital_id: str, days: Sequence[str] = WORKDAYS, start: str = "09:00",
                 end: str = "12:00", breaks: Sequence[dict[str, str]] = ()
                 ) -> list[dict[str, Any]]:
    return [{"location": f"hospital:{hospital_id}", "day": day, "start": start, "end": end,
             "breaks": list(breaks)} for day in days]


async def publish_availability(api: httpx.AsyncClient, doctor: User,
                               weekly: list[dict[str, Any]], slot_minutes: int = 30,
                               leave: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The doctor replaces their weekly hours (``PUT /api/v1/doctors/{id}/availability``)."""
    return ok(await api.put(f"/api/v1/doctors/{doctor.id}/availability", headers=doctor.headers,
                            json={"slot_minutes": slot_minutes, "weekly": weekly,
                                  "leave": list(leave)}))
