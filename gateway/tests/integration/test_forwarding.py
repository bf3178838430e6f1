"""Forwarding through a real gateway to a real upstream: headers, identity, ids, traces."""

from __future__ import annotations

import re
import socket

import httpx
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

from healthflow.common.errors import PROBLEM_JSON

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def test_identity_is_verified_forged_headers_dropped_and_forwarded(gateway, platform):
    headers = platform.tokens.headers("user-42", ["patient"]) | {
        "X-User-Id": "admin-1",
        "X-User-Roles": "admin",
        "X-User-Permissions": "audit:read",
        "X-Forwarded-User": "admin",
        "X-HealthFlow-Identity-Claims": "forged",
        "X-Forwarded-For": "6.6.6.6",
    }
    response = httpx.post(gateway.url + "/api/v1/patients/echo?x=1&y=two", headers=headers,
                          json={"a": 1})
    assert response.status_code == 200, response.text
    seen = response.json()
    got = seen["headers"]
    assert seen["path"] == "/api/v1/patients/echo" and seen["query"] == "x=1&y=two"
    assert seen["method"] == "POST" and seen["body_size"] == len(b'{"a":1}')
    assert got["x-user-id"] == ["user-42"]
    assert got["x-user-roles"] == ["patient"]
    assert "x-user-permissions" not in got and "x-forwarded-user" not in got
    assert not [k for k in got if k.startswith("x-healthflow-identity")]
    # the original token travels on, so the service can verify it itself
    assert got["authorization"] == [headers["Authorization"]]
    # the client's own X-Forwarded-For is not trusted (no proxy in front)
    assert got["x-forwarded-for"] == ["127.0.0.1"]
    assert got["x-forwarded-proto"] == ["http"]
    # response headers of the upstream pass back, its own request id does not
    assert response.headers["x-upstream"] == "patient"
    assert response.headers["x-request-id"] != "upstream-own-id"


def test_request_id_is_generated_when_absent_and_propagated_when_given(gateway, platform):
    auth = platform.tokens.headers(roles=["patient"])
    generated = httpx.get(gateway.url + "/api/v1/patients/echo", headers=auth)
    request_id = generated.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f-]{36}", request_id)
    assert generated.json()["headers"]["x-request-id"] == [request_id]

    given = httpx.get(gateway.url + "/api/v1/patients/echo",
                      headers=auth | {"X-Request-ID": "client-chosen-17"})
    assert given.headers["x-request-id"] == "client-chosen-17"
    assert given.json()["headers"]["x-request-id"] == ["client-chosen-17"]


def test_traceparent_continues_the_callers_trace(gateway, platform):
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    # The test is the client, not a traced process: this process's httpx is instrumented
    # (the gateway under test runs in it) and would send a span of its own instead.
    with suppress_http_instrumentation():
        response = httpx.get(gateway.url + "/api/v1/patients/echo",
                             headers=platform.tokens.headers() | {"traceparent": traceparent})
    forwarded = response.json()["headers"]["traceparent"]
    assert len(forwarded) == 1
    version, trace_id, parent_id, flags = forwarded[0].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    assert parent_id != PARENT_ID and re.fullmatch(r"[0-9a-f]{16}", parent_id)


def test_unknown_route_is_404_problem_json(gateway, platform):
    response = httpx.get(gateway.url + "/api/v1/nothing-here",
                         headers=platform.tokens.headers())
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == 404 and body["type"].endswith("/not-found")
    assert "x-request-id" in response.headers
    # a prefix only matches at a path-segment boundary
    assert httpx.get(gateway.url + "/api/v1/patientsX/echo",
                     headers=platform.tokens.headers()).status_code == 404


def test_public_routes_need_no_token_and_jwks_is_served(gateway):
    token = httpx.post(gateway.url + "/api/v1/auth/token/echo",
                       data={"username": "a@b.example", "password": "pw"})
    assert token.status_code == 200
    assert "x-user-id" not in token.json()["headers"]
    jwks = httpx.get(gateway.url + "/.well-known/jwks.json")
    assert jwks.status_code == 200 and jwks.json()["keys"]


def test_livez_and_readyz_report_upstreams(gateway, platform):
    assert httpx.get(gateway.url + "/livez").json()["status"] == "ok"
    ready = httpx.get(gateway.url + "/readyz")
    # hospital and doctor point at a port where nothing listens
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["auth"] == "ok" and checks["patient"] == "ok"
    assert checks["hospital"] == "unreachable"


def test_readyz_is_ready_when_the_required_upstreams_are(start_gateway):
    gateway = start_gateway(readiness_requires=["auth", "patient"])
    ready = httpx.get(gateway.url + "/readyz")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks.pop("revocations")["entries"] == 0  # informational, never "not ready"
    assert checks == {"auth": "ok", "patient": "ok", "ratelimit": "per-process"}


def test_metrics_are_prometheus_text(gateway, platform):
    httpx.get(gateway.url + "/api/v1/patients/echo", headers=platform.tokens.headers())
    metrics = httpx.get(gateway.url + "/metrics")
    assert metrics.status_code == 200
    assert "healthflow_gateway_upstream_requests_total" in metrics.text


def test_dot_segments_cannot_hop_from_a_public_route_to_a_protected_one(gateway):
    # httpx would normalise the path itself, so the request is written by hand
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(b"GET /api/v1/auth/token/../../users HTTP/1.1\r\n"
                     b"Host: gateway\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"400", answer[:300]
    assert b"application/problem+json" in rest
