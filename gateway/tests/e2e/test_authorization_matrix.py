"""The authorization matrix (issue 3): every operation of the platform's merged OpenAPI
document × every role, through the gateway.

The access each operation demands is read from the document itself
(``x-healthflow-access``, written from the route's permission dependency), never
from a second, hand-written table; what each role holds comes from
:data:`healthflow.common.permissions.ROLE_PERMISSIONS`. Path parameters are random
UUIDs and bodies are ``{}``: the permission check comes before any lookup or
validation, so a role lacking the permission must get 403, not 404 or 422.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from healthflow.common.errors import PROBLEM_JSON
from healthflow.common.permissions import STAFF_ROLES, Role, permissions_for
from healthflow.devkit.testing import RunningPlatform

from .conftest import User, create_staff, gather_limited, login, ok, register_patient

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
