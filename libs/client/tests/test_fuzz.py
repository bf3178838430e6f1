"""API fuzzing with Schemathesis against the gateway's merged OpenAPI document.

Every operation of ``GET /openapi.json`` gets Hypothesis-generated requests
(``HEALTHFLOW_FUZZ_EXAMPLES`` per operation, default 5; ``make fuzz`` asks for
many more), each sent once without a token and once with a real token of each
role (users the first admin creates; a patient who signed up). Every answer must:

* not be a 5xx (Schemathesis' ``not_a_server_error``);
* match its documented response schema (``response_schema_conformance``);
* carry no stack trace (``Traceback``, ``File "``);
* be 401 or 403 whenever the caller lacks what the operation's
  ``x-healthflow-access`` declares (authentication, ``all`` and ``any`` permissions).

The Server-Sent Events stream is left out (it never ends by design); a failure
names the role and prints the request as a curl command to replay.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from healthflow.common.permissions import permissions_for
from healthflow.devkit.testing import RunningPlatform, platform_process, rabbitmq_vhost

EXAMPLES = int(os.environ.get("HEALTHFLOW_FUZZ_EXAMPLES", "5"))
ROLES = ("admin", "patient", "doctor", "patient_care", "compliance_officer", "nurse",
         "receptionist")
EXCLUDED = {
    ("GET", "/api/v1/notifications/stream"),  # SSE: an endless response by design
    # Ends the role's session everywhere within seconds: every later case would be a 401.
    ("POST", "/api/v1/auth/logout"),
}
STACK_TRACE_MARKS = ("Traceback", 'File "')
STOW_BOUNDARY = "healthflow-fuzz"


@schemathesis.serializer("multipart/related")
def multipart_related(ctx: Any, value: Any) -> bytes:
    """STOW-RS bodies (RFC 2387 ``multipart/related``; DICOM PS3.18 §10.5): the generated
    value as the one ``application/dicom`` part, so the service's parser and checks get
    the fuzzing, not the serializer."""
    data = value if isinstance(value, bytes) else str(value).encode()
    return (f"--{STOW_BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + data + f"\r\n--{STOW_BOUNDARY}--\r\n".encode())


@dataclass
class Fuzzable:
    platform: RunningPlatform
    tokens: dict[str, str]  # role → access token
    permissions: dict[str, frozenset[str]]


@pytest.fixture(scope="module")
def fuzzable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzable]:
    """A platform of its own and a signed-in user of every role."""
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    env = {"AUTH_ACCESS_TOKEN_TTL": "3600"}
    with rabbitmq_vhost() as amqp, platform_process(workdir, amqp, env=env) as platform:
        tokens: dict[str, str] = {}
        with httpx.Client(base_url=platform.gateway_url, timeout=30) as http:
            def login(email: str, password: str) -> str:
                answer = http.post("/api/v1/auth/token",
                                   data={"username": email, "password": password})
                assert answer.status_code == 200, answer.text
                return str(answer.json()["access_token"])

            tokens["admin"] = admin = login(platform.admin_email, platform.admin_password)
            tag = secrets.token_hex(4)
            password = "Fuzz-" + secrets.token_urlsafe(16)
            for role in ROLES[2:]:
                email = f"fuzz.{role}.{tag}@example.org"
                made = http.post("/api/v1/users", headers={"Authorization": f"Bearer {admin}"},
                                 json={"email": email, "password": password, "roles": [role],
                                       "full_name": f"Fuzz {role}"})
                assert made.status_code == 201, made.text
                tokens[role] = login(email, password)
            email = f"fuzz.patient.{tag}@example.org"
            made = http.post("/api/v1/auth/register", json={
                "email": email, "password": password, "full_name": "Fuzz Patient",
                "phone": "+4915100000042"})
            assert made.status_code == 201, made.text
            tokens["patient"] = login(email, password)
        yield Fuzzable(platform, tokens,
                       {role: permissions_for([role]) for role in ROLES})


def may_call(access: dict[str, Any] | None, permissions: frozenset[str] | None) -> bool:
    """Whether a caller with ``permissions`` (None: no token) meets ``access``."""
    if not access or not access.get("authenticated"):
        return True
    if permissions is None:
        return False
    needed_all, needed_any = set(access.get("all", [])), set(access.get("any", []))
    return needed_all <= permissions and (not needed_any or bool(needed_any & permissions))


def check_case(case: Any, fuzzable: Fuzzable) -> None:
    """Send ``case`` anonymously and as every role; assert the four properties."""
    access = case.operation.definition.raw.get("x-healthflow-access")
    base_url = fuzzable.platform.gateway_url
    callers: list[tuple[str, str | None]] = [("anonymous", None), *fuzzable.tokens.items()]
    for role, token in callers:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if (case.media_type or "").startswith("multipart/related"):  # name our boundary
            headers["Content-Type"] = f"{case.media_type}; boundary={STOW_BOUNDARY}"
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        replay = case.as_curl_command(headers=headers, base_url=base_url)
        where = f"as {role}: {case.operation.label} → {response.status_code}\n{replay}"
        body = response.text
        assert not any(mark in body for mark in STACK_TRACE_MARKS), \
            f"a stack trace in the body {where}\n{body[:2000]}"
        permissions = fuzzable.permissions.get(role) if token else None
        if not may_call(access, permissions):
            assert response.status_code in (401, 403), \
                f"reachable without the declared access {access} {where}\n{body[:500]}"
        try:
            case.validate_response(response, checks=[not_a_server_error,
                                                      response_schema_conformance])
        except (AssertionError, BaseExceptionGroup) as exc:  # Schemathesis' failures
            raise AssertionError(f"{exc}\n{where}") from None


def test_the_api_survives_fuzzing_as_every_role(fuzzable: Fuzzable) -> None:
    document = httpx.get(f"{fuzzable.platform.gateway_url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in EXCLUDED:
            continue
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            check_case(case, fuzzable)

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label}: {type(exc).__name__}: {exc}")
    assert operations > 50
    assert not failures, "\n\n".join(failures)


def test_every_operation_declares_its_access(fuzzable: Fuzzable) -> None:
    document = httpx.get(f"{fuzzable.platform.gateway_url}/openapi.json", timeout=30).json()
    missing = [f"{method.upper()} {path}" for path, ops in document["paths"].items()
               for method, op in ops.items()
               if method in ("get", "post", "put", "patch", "delete")
               and not isinstance(op.get("x-healthflow-access"), dict)]
    assert not missing, missing
