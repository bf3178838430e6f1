"""The merged platform OpenAPI document, Swagger UI, and CORS at the edge."""

from __future__ import annotations

import httpx

from healthflow.common.errors import PROBLEM_JSON

ALLOWED = "https://app.healthflow.example"


def test_openapi_merges_the_routed_paths_of_two_upstreams(gateway):
    response = httpx.get(gateway.url + "/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    paths = doc["paths"]
    # paths from two upstreams, only those the gateway routes to each
    assert "/api/v1/auth/echo" in paths and "/api/v1/users/things" in paths
    assert "/api/v1/patients/things" in paths and "/api/v1/audit/echo" in paths
    assert "/internal/secret" not in paths and "/livez" not in paths
    assert "/api/v1/platform/status" in paths
    # "Thing" means different things upstream: both survive, references follow
    schemas = doc["components"]["schemas"]
    renamed = [name for name in schemas if name.endswith("__Thing")]
    assert "Thing" in schemas and len(renamed) == 1
    thing_refs = {
        paths[p]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        ["items"]["$ref"]
        for p in ("/api/v1/auth/things", "/api/v1/patients/things")
    }
    assert thing_refs == {"#/components/schemas/Thing", f"#/components/schemas/{renamed[0]}"}
    identical = [n for n in schemas if n.endswith("HTTPValidationError")]
    assert identical == ["HTTPValidationError"]  # the same definition is kept once
    flow = doc["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"]
    assert flow["tokenUrl"] == "/api/v1/auth/token"
    # upstreams that do not answer are left out and named
    assert "doctor" in doc["info"]["description"] and "hospital" in doc["info"]["description"]


def test_asyncapi_document_is_served_beside_openapi(gateway):
    response = httpx.get(gateway.url + "/asyncapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["channels"]["appointment.booked"]["address"] == "appointment.booked"
    assert doc["operations"]["appointment.send.appointment.booked"]["action"] == "send"


def test_swagger_ui_is_served(gateway):
    docs = httpx.get(gateway.url + "/docs")
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text and "/openapi.json" in docs.text


def test_cors_preflight_for_an_allowed_origin(gateway):
    response = httpx.options(gateway.url + "/api/v1/patients/echo", headers={
        "Origin": ALLOWED, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
    })
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "Idempotency-Key" in response.headers["access-control-allow-headers"]
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-credentials"] == "true"


def test_cors_preflight_for_another_origin_is_refused(gateway):
    response = httpx.options(gateway.url + "/api/v1/patients/echo", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
    })
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM_JSON
    assert "access-control-allow-origin" not in response.headers


def test_cors_headers_on_actual_responses_expose_the_ratelimit_fields(gateway, platform):
    response = httpx.get(gateway.url + "/api/v1/patients/echo",
                         headers=platform.tokens.headers() | {"Origin": ALLOWED})
    assert response.headers["access-control-allow-origin"] == ALLOWED
    exposed = response.headers["access-control-expose-headers"].lower()
    assert "ratelimit" in exposed and "x-request-id" in exposed
    other = httpx.get(gateway.url + "/api/v1/patients/echo",
                      headers=platform.tokens.headers() | {"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
