"""The authorization matrix (issue 3): every operation of the platform's merged OpenAPI
document × every role, through the gateway.

The access each operation demands is read from the document itself
(``x-healthflow-access``, written from the route's permission dependency), never
from a second, hand-written table; what each role holds comes from
:data:`healthflow.common.permissions.ROLE_PERMISSIONS`. Path parameters are random
UUIDs and bodies are ``{}``: the permission check comes before any lookup or
validation, so a role lacking the permission must get 403, not 404 or 422.

A second hospital (issue 16): every route of a ``*_any`` permission enforced per hospital
(:data:`PER_HOSPITAL`), called by the staff of hospital A on an appointment of hospital B,
answers exactly as for one that does not exist, and B's appointment is in none of their
listings and takes none of their bookings; so do the patient and record routes
(:data:`PER_HOSPITAL_PATIENTS`) on a patient seen only at B.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from healthflow.common.errors import PROBLEM_JSON
from healthflow.common.permissions import STAFF_ROLES, Permission, Role, permissions_for
from healthflow.common.tenancy import PLATFORM_ROLES
from healthflow.devkit.testing import RunningPlatform, eventually

from .conftest import (
    BERLIN,
    User,
    assign_staff,
    create_doctor,
    create_staff,
    gather_limited,
    login,
    ok,
    publish_availability,
    register_hospital,
    register_patient,
    weekly_hours,
)

SESSION_ENDING = {"POST /api/v1/auth/logout"}
"""Operations that end the calling token's session everywhere: each role calls them with
a session of its own, so the role's other cells keep a valid token."""

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
ABBREVIATIONS = {Role.ADMIN: "adm", Role.PATIENT: "pat", Role.DOCTOR: "doc",
                 Role.PATIENT_CARE: "pcare", Role.PARAMEDIC: "para",
                 Role.DISPATCHER: "disp",
                 Role.COMPLIANCE_OFFICER: "comp", Role.NURSE: "nurse",
                 Role.RECEPTIONIST: "recep", Role.RADIOGRAPHER: "radio",
                 Role.ACCOUNTANT: "acct", Role.PHARMACIST: "pharm"}
ANONYMOUS = "-"
PUBLIC = {"GET /api/v1/prescriptions/keys", "GET /api/v1/prescriptions/verify/{prescription_id}",
          "GET /.well-known/jwks.json", "GET /app/teleconsultation/",
          "GET /app/teleconsultation/client.js", "POST /api/v1/teleconsultations/guest/redeem"}
"""Operations anyone may call without a token (a printed prescription is checked by
whoever holds it, against the published keys; the video client's page and script carry
no data: its API calls carry the token)."""


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    access: dict[str, Any]
    has_body: bool

    @property
    def name(self) -> str:
        return f"{self.method.upper()} {self.path}"

    def allows(self, role: Role) -> bool:
        """Whether ``role``'s permissions satisfy the declared ``all`` and ``any``."""
        held = permissions_for([role])
        return (all(p in held for p in self.access["all"])
                and (not self.access["any"] or any(p in held for p in self.access["any"])))


def operations_of(document: dict[str, Any]) -> tuple[list[Operation], list[str]]:
    """Every operation of ``document`` and the names of those without a valid annotation."""
    found: list[Operation] = []
    unannotated: list[str] = []
    for path, item in document["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            access = operation.get("x-healthflow-access")
            if not (isinstance(access, dict)
                    and isinstance(access.get("authenticated"), bool)
                    and isinstance(access.get("all"), list)
                    and isinstance(access.get("any"), list)):
                unannotated.append(f"{method.upper()} {path}: {access!r}")
                continue
            found.append(Operation(method, path, access, "requestBody" in operation))
    return found, unannotated


def concrete(path: str) -> str:
    """``path`` with every ``{parameter}`` replaced by a fresh random UUID."""
    parts = []
    for segment in path.split("/"):
        parts.append(str(uuid.uuid4()) if segment.startswith("{") else segment)
    return "/".join(parts)


@dataclass
class Outcome:
    status: int
    problem: bool
    text: str


async def call(api: httpx.AsyncClient, operation: Operation, user: User | None) -> Outcome:
    """Send ``operation`` as ``user`` (``None``: no token); an event stream is not read."""
    headers = user.headers if user else {}
    kwargs: dict[str, Any] = {"json": {}} if operation.has_body else {}
    async with api.stream(operation.method.upper(), concrete(operation.path),
                          headers=headers, **kwargs) as response:
        content_type = response.headers.get("content-type", "")
        text = "" if content_type.startswith("text/event-stream") else (
            (await response.aread()).decode(errors="replace"))
        return Outcome(response.status_code, content_type.startswith(PROBLEM_JSON), text[:200])


@pytest.fixture(scope="module")
async def accounts(platform: RunningPlatform, admin: User) -> dict[Role, User]:
    """One logged-in account per role: staff created by the admin, a self-registered patient."""
    async with platform.client() as api:
        users = {role: await create_staff(api, admin, [role]) for role in sorted(STAFF_ROLES)}
        users[Role.PATIENT] = await register_patient(api, "matrix")
    assert set(users) == set(Role)
    return users


async def test_every_operation_declares_its_access(platform: RunningPlatform) -> None:
    async with platform.client() as api:
        document = ok(await api.get("/openapi.json"))
    assert "Incomplete" not in document["info"]["description"], document["info"]
    operations, unannotated = operations_of(document)
    assert not unannotated, ("operations without x-healthflow-access = {authenticated, all, "
                             "any}:\n  " + "\n  ".join(unannotated))
    assert len(operations) >= 50, len(operations)
    prefixes = {"/api/v1/auth", "/api/v1/users", "/api/v1/audit", "/api/v1/hospitals",
                "/api/v1/doctors", "/api/v1/patients", "/api/v1/appointments",
                "/api/v1/slots", "/api/v1/notifications", "/api/v1/encounters",
                "/api/v1/records", "/api/v1/fhir", "/api/v1/prescriptions",
                "/api/v1/care-plans", "/api/v1/procedures", "/api/v1/documents",
                "/api/v1/imaging", "/api/v1/emergencies", "/api/v1/paramedics",
                "/api/v1/teleconsultations", "/api/v1/teleconsultations/guest",
                "/app/teleconsultation", "/.well-known"}
    covered = {p for p in prefixes if any(o.path.startswith(p) for o in operations)}
    assert covered == prefixes, prefixes - covered
    public = {o.name for o in operations if not o.access["authenticated"]}
    assert public >= PUBLIC, PUBLIC - public
    for operation in operations:
        declared = {*operation.access["all"], *operation.access["any"]}
        if declared:
            assert operation.access["authenticated"], operation
        # every permission named is one some role holds (no typo that locks everyone out)
        assert declared <= permissions_for(list(Role)), (operation.name, declared)


async def test_every_operation_against_every_role(platform: RunningPlatform,
                                                  accounts: dict[Role, User]) -> None:
    async with platform.client(limits=httpx.Limits(max_connections=32)) as api:
        document = ok(await api.get("/openapi.json"))
        operations, unannotated = operations_of(document)
        assert not unannotated, "operations without x-healthflow-access:\n  " + "\n  ".join(
            unannotated)
        callers: list[tuple[str, User | None]] = [(ANONYMOUS, None)] + [
            (role.value, accounts[role]) for role in Role]
        spare: dict[str, User] = {}
        for role in Role:
            tokens = await login(api, accounts[role].email)
            spare[role.value] = User(accounts[role].id, accounts[role].email,
                                     accounts[role].roles, tokens["access_token"],
                                     tokens["refresh_token"])
        cells = [(operation, who,
                  spare[who] if user is not None and operation.name in SESSION_ENDING else user)
                 for operation in operations for who, user in callers]
        outcomes = await gather_limited([call(api, op, user) for op, _, user in cells], 16)

    failures: list[str] = []
    table: dict[str, dict[str, int]] = {}
    tally: Counter[str] = Counter()
    for (operation, who, _), outcome in zip(cells, outcomes, strict=True):
        table.setdefault(operation.name, {})[who] = outcome.status
        where = f"{operation.name} as {who}: {outcome.status} {outcome.text}"
        if operation.access.get("credential"):
            # a credential of its own (a guest's X-Guest-Token): refused to every bearer
            # token and to none, 401 problem+json (the guest suite covers its holders)
            tally["401 without its own credential"] += 1
            if outcome.status != 401 or not outcome.problem:
                failures.append(f"{where} (expected 401 problem+json: no "
                                f"{operation.access['credential']})")
            continue
        if who == ANONYMOUS:
            if operation.access["authenticated"]:
                tally["401 without a token"] += 1
                if outcome.status != 401 or not outcome.problem:
                    failures.append(f"{where} (expected 401 problem+json: no token)")
            continue
        role = Role(who)
        if outcome.status >= 500:
            failures.append(f"{where} (a server error)")
        if operation.access["authenticated"] and not operation.allows(role):
            tally["403 lacking the permission"] += 1
            if outcome.status != 403 or not outcome.problem:
                failures.append(f"{where} (expected 403 problem+json: lacks "
                                f"{operation.access})")
        else:
            tally["allowed: never 401"] += 1
            if outcome.status == 401:
                failures.append(f"{where} (a valid token of a permitted role got 401)")

    roles = [ANONYMOUS, *(r.value for r in Role)]
    header = f"{'operation':<58}" + "".join(
        f"{ABBREVIATIONS.get(Role(r), r) if r != ANONYMOUS else 'anon':>6}" for r in roles)
    lines = [header] + [
        f"{name:<58}" + "".join(f"{statuses[r]:>6}" for r in roles)
        for name, statuses in table.items()]
    print(f"\n[e2e] authorization matrix: {len(operations)} operations × {len(roles)} callers "
          f"= {len(cells)} requests; {dict(tally)}\n" + "\n".join(lines))
    assert not failures, f"{len(failures)} cells broke the rules:\n  " + "\n  ".join(failures)


async def test_public_operations_are_public_at_the_edge(platform: RunningPlatform) -> None:
    async with platform.client() as api:
        operations, _ = operations_of(ok(await api.get("/openapi.json")))
        refused = []
        for operation in operations:
            if operation.access["authenticated"] or operation.access.get("credential"):
                continue
            outcome = await call(api, operation, None)
            if outcome.status == 401:
                refused.append(f"{operation.name}: {outcome.text}")
    assert not refused, "public operations refused without a token:\n  " + "\n  ".join(refused)


# --------------------------------------------------------------------------- two hospitals

PER_HOSPITAL = frozenset({Permission.APPOINTMENTS_BOOK_ANY, Permission.APPOINTMENTS_READ_ANY,
                          Permission.APPOINTMENTS_MANAGE_ANY, Permission.NOTIFICATIONS_SEARCH})
"""The appointment ``*_any`` permissions enforced per hospital (issue 16; patients and
records: :data:`PER_HOSPITAL_PATIENTS`; the rest: docs/architecture.md, security)."""

HOSPITAL_STAFF = sorted(r for r in STAFF_ROLES
                        if r.value not in PLATFORM_ROLES and permissions_for([r]) & PER_HOSPITAL)
"""Roles holding a per-hospital permission and reaching only their hospitals."""


def monday_and_tuesday() -> tuple[date, date]:
    """A Berlin Monday at least a week ahead, and the day after."""
    day = datetime.now(ZoneInfo(BERLIN)).date() + timedelta(days=7)
    while day.isoweekday() != 1:
        day += timedelta(days=1)
    return day, day + timedelta(days=1)


def at(day: date, hour: int) -> str:
    return datetime(day.year, day.month, day.day, hour, tzinfo=ZoneInfo(BERLIN)).isoformat()


@pytest.fixture(scope="module")
async def two_hospitals(platform: RunningPlatform, admin: User,
                        accounts: dict[Role, User]) -> dict[str, Any]:
    """Hospitals A and B; one doctor at both (Mondays at A, Tuesdays at B); an appointment at
    each; every :data:`HOSPITAL_STAFF` account of the matrix a member of A, a patient-care
    agent a member of B; returned once every membership reached the appointment service."""
    tag = uuid.uuid4().hex[:6]
    monday, tuesday = monday_and_tuesday()
    async with platform.client() as api:
        a = await register_hospital(api, admin, f"Tenancy A {tag}")
        b = await register_hospital(api, admin, f"Tenancy B {tag}")
        doctor, _ = await create_doctor(api, admin, family=f"Zwei{tag}", affiliations=[
            {"hospital_id": a["id"]}, {"hospital_id": b["id"]}])
        await publish_availability(api, doctor, weekly_hours(a["id"], days=("mon",))
                                   + weekly_hours(b["id"], days=("tue",)))
        patient = await register_patient(api, "tenancy")
        booked: dict[str, dict[str, Any]] = {}

        async def book_both() -> bool:
            for name, day in (("a", monday), ("b", tuesday)):
                if name not in booked:
                    response = await api.post("/api/v1/appointments", headers=patient.headers,
                                              json={"doctor_id": doctor.id, "start": at(day, 9),
                                                    "mode": "in_person"})
                    if response.status_code == 404:  # the schedule has not arrived yet
                        return False
                    booked[name] = ok(response, 201)
            return True

        await eventually(book_both, within=30, interval=0.3,
                         message="the doctor's schedule never reached the appointment service")
        for role in HOSPITAL_STAFF:
            await assign_staff(api, admin, a["id"], accounts[role], role.value)
        agent_b = await create_staff(api, admin, ["patient_care"], label="agent-b")
        await assign_staff(api, admin, b["id"], agent_b, "patient_care")
        readers = [(accounts[r], booked["a"]["id"]) for r in HOSPITAL_STAFF]
        readers.append((agent_b, booked["b"]["id"]))
        for user, appointment_id in readers:
            await eventually(
                lambda u=user, i=appointment_id: _reads(api, u, i), within=30, interval=0.3,
                message=f"{user.roles} never reached their hospital's appointment")
    return {"a": booked["a"], "b": booked["b"], "doctor": doctor, "patient": patient,
            "agent_b": agent_b, "tuesday": tuesday}


async def _reads(api: httpx.AsyncClient, user: User, appointment_id: str) -> bool:
    response = await api.get(f"/api/v1/appointments/{appointment_id}", headers=user.headers)
    return response.status_code == 200


async def _deliveries_refused(api: httpx.AsyncClient, user: User, h: dict[str, Any],
                              where: str) -> list[str]:
    """The delivery log shows A's staff the messages about A's appointment (once the
    notification service has sent them), never those about B's."""
    async def about(appointment_id: str) -> list[Any]:
        page = ok(await api.get("/api/v1/notifications/deliveries", headers=user.headers,
                                params={"appointment_id": appointment_id}))
        return list(page["items"])

    async def shown_for_a() -> bool:
        return bool(await about(h["a"]["id"]))

    await eventually(shown_for_a, within=30, interval=0.3,
                     message=f"{where}: the messages about A's appointment never showed")
    b_items = await about(h["b"]["id"])
    return [f"{where}: {len(b_items)} deliveries about B's appointment"] if b_items else []


BODIES = {"cancel": {"reason_code": "other"}}
"""Valid bodies, so the answer is the lookup's and not validation's."""


async def test_any_routes_stop_at_the_callers_hospitals(
        platform: RunningPlatform, accounts: dict[Role, User],
        two_hospitals: dict[str, Any]) -> None:
    h = two_hospitals
    b_id, missing = h["b"]["id"], str(uuid.uuid4())
    bodies = {**BODIES, "reschedule": {"start": at(h["tuesday"], 10)}}
    failures: list[str] = []
    checked = 0
    async with platform.client() as api:
        operations, _ = operations_of(ok(await api.get("/openapi.json")))
        scoped = [o for o in operations
                  if PER_HOSPITAL & {*o.access["all"], *o.access["any"]}]
        assert len(scoped) >= 9, [o.name for o in scoped]
        for operation in scoped:
            for role in (r for r in HOSPITAL_STAFF if operation.allows(r)):
                user, where = accounts[role], f"{operation.name} as {role.value}"
                checked += 1
                if operation.path.endswith("/{appointment_id}") or "{appointment_id}/" in \
                        operation.path:
                    action = operation.path.rsplit("/", 1)[-1]
                    answers = []
                    for target in (b_id, missing):
                        path = operation.path.replace("{appointment_id}", target)
                        kwargs: dict[str, Any] = ({"json": bodies.get(action, {})}
                                                  if operation.has_body else {})
                        answers.append(await api.request(operation.method.upper(), path,
                                                         headers=user.headers, **kwargs))
                    there, absent = answers
                    if there.status_code not in (403, 404) or \
                            there.status_code != absent.status_code or \
                            there.json().get("type") != absent.json().get("type"):
                        failures.append(f"{where}: B's {there.status_code} {there.text[:120]} "
                                        f"vs missing {absent.status_code}")
                elif operation.name == "GET /api/v1/appointments":
                    items = ok(await api.get("/api/v1/appointments", headers=user.headers,
                                             params={"doctor_id": h["doctor"].id}))["items"]
                    ids = {i["id"] for i in items}
                    if b_id in ids or h["a"]["id"] not in ids:
                        failures.append(f"{where}: listed {sorted(ids)}")
                elif operation.name == "GET /api/v1/notifications/deliveries":
                    failures += await _deliveries_refused(api, user, h, where)
                elif operation.name == "POST /api/v1/appointments":
                    response = await api.post("/api/v1/appointments", headers=user.headers, json={
                        "doctor_id": h["doctor"].id, "start": at(h["tuesday"], 11),
                        "mode": "in_person", "patient_id": h["patient"].id})
                    if response.status_code != 403:
                        failures.append(f"{where}: booked at B: {response.status_code}")
                else:
                    failures.append(f"{where}: a per-hospital route this test does not know")
        after = ok(await api.get(f"/api/v1/appointments/{b_id}", headers=h["agent_b"].headers))
    assert after["status"] == "booked" and len(after["status_history"]) == 1, after
    print(f"\n[e2e] two hospitals: {len(scoped)} per-hospital operations, {checked} "
          f"(operation, role) cells of hospital A's staff on hospital B's data refused")
    assert not failures, "\n  ".join(failures)


PER_HOSPITAL_PATIENTS = frozenset({Permission.PATIENTS_READ_ANY, Permission.RECORDS_READ_ANY,
                                   Permission.ENCOUNTERS_OPEN_ANY})


async def _reads_path(api: httpx.AsyncClient, user: User, path: str) -> bool:
    return (await api.get(path, headers=user.headers)).status_code == 200


def _same_as_missing(where: str, there: httpx.Response, absent: httpx.Response) -> list[str]:
    same = (there.status_code, there.json().get("type")) == (absent.status_code,
                                                             absent.json().get("type"))
    return [] if same and there.status_code in (403, 404) else [
        f"{where}: B's {there.status_code} {there.text[:120]} vs {absent.status_code}"]


async def _walk_in_at_b(api: httpx.AsyncClient, admin: User, h: dict[str, Any]
                        ) -> tuple[User, dict[str, Any]]:
    """A patient seen only at B: a walk-in by a nurse of B, once B's nurse reads the chart."""
    b_hospital = h["b"]["location_id"]
    nurse_b = await create_staff(api, admin, ["nurse"], label="nurse-b")
    await assign_staff(api, admin, b_hospital, nurse_b, "nurse")
    patient = await register_patient(api, "tenancy-b-only")
    opened: dict[str, Any] = {}

    async def walk_in() -> bool:
        response = await api.post("/api/v1/encounters", headers=nurse_b.headers, json={
            "patient_id": patient.id, "practitioner_id": h["doctor"].id,
            "hospital_id": b_hospital})
        if response.status_code not in (403, 422):  # membership, registration to come
            opened.update(ok(response, 201))
        return bool(opened)

    await eventually(walk_in, within=30, interval=0.3,
                     message="B's nurse never opened a walk-in at B")
    await eventually(lambda: _reads_path(api, nurse_b, f"/api/v1/patients/{patient.id}"),
                     within=30, interval=0.3,
                     message="the walk-in never made the patient one of B's")
    return patient, opened


async def test_patient_and_record_routes_stop_at_the_callers_hospitals(
        platform: RunningPlatform, admin: User, accounts: dict[Role, User],
        two_hospitals: dict[str, Any]) -> None:
    """Staff of A on a patient seen only at B: the chart, the search, the record's reads,
    a walk-in at B and finishing B's encounter answer as for missing ones (403 for the
    walk-in: which hospitals exist is public); A's patient stays readable to them."""
    h = two_hospitals
    staff = [r for r in HOSPITAL_STAFF if permissions_for([r]) & PER_HOSPITAL_PATIENTS]
    assert {Role.NURSE, Role.PATIENT_CARE, Role.RECEPTIONIST} <= set(staff), staff
    failures: list[str] = []
    missing = str(uuid.uuid4())
    async with platform.client() as api:
        patient_b, encounter_b = await _walk_in_at_b(api, admin, h)
        pid, eid = patient_b.id, encounter_b["id"]
        reads = {Permission.PATIENTS_READ_ANY: ["/api/v1/patients/{p}"],
                 Permission.RECORDS_READ_ANY: [
                     "/api/v1/encounters/{e}", "/api/v1/encounters?patient_id={p}",
                     "/api/v1/records/encounters/{e}/entries",
                     "/api/v1/care-plans?patient_id={p}", "/api/v1/procedures?patient_id={p}",
                     "/api/v1/documents?patient_id={p}", "/api/v1/fhir/Patient/{p}/$everything"]}
        controls = {Permission.PATIENTS_READ_ANY: f"/api/v1/patients/{h['patient'].id}",
                    Permission.RECORDS_READ_ANY: f"/api/v1/encounters?patient_id="
                                                 f"{h['patient'].id}"}
        checked = 0
        for role in staff:
            user, held = accounts[role], permissions_for([role])
            for permission, paths in reads.items():
                if permission not in held:
                    continue
                await eventually(lambda u=user, p=controls[permission]: _reads_path(api, u, p),
                                 within=30, interval=0.3,
                                 message=f"{role.value} never read A's patient ({permission})")
                for path in paths:
                    checked += 1
                    there = await api.get(path.format(p=pid, e=eid), headers=user.headers)
                    absent = await api.get(path.format(p=missing, e=missing),
                                           headers=user.headers)
                    failures += _same_as_missing(f"GET {path} as {role.value}", there, absent)
            if Permission.PATIENTS_READ_ANY in held:
                checked += 1
                found = ok(await api.get("/api/v1/patients", headers=user.headers,
                                         params={"email": patient_b.email}))["items"]
                if found:
                    failures.append(f"search as {role.value}: found B's patient")
            if Permission.ENCOUNTERS_OPEN_ANY in held:
                checked += 2
                walk_in = await api.post("/api/v1/encounters", headers=user.headers, json={
                    "patient_id": pid, "practitioner_id": h["doctor"].id,
                    "hospital_id": h["b"]["location_id"]})
                if walk_in.status_code != 403:
                    failures.append(f"walk-in at B as {role.value}: {walk_in.status_code}")
                failures += _same_as_missing(
                    f"finish B's encounter as {role.value}",
                    await api.post(f"/api/v1/encounters/{eid}/finish", headers=user.headers),
                    await api.post(f"/api/v1/encounters/{missing}/finish",
                                   headers=user.headers))
    print(f"\n[e2e] two hospitals, patients and records: {checked} (route, role) cells of "
          f"hospital A's staff on a patient of hospital B refused")
    assert not failures, "\n  ".join(failures)
