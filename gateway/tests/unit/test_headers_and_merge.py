"""Header rules, RateLimit field syntax and the OpenAPI merge (no I/O)."""

from __future__ import annotations

from healthflow.common.auth import Principal
from healthflow.gateway.openapi import merge_documents
from healthflow.gateway.proxy import client_address, forward_headers, response_headers
from healthflow.gateway.ratelimit import LimitState, fields, storage_uri
from healthflow.gateway.routes import RouteTable


def _principal() -> Principal:
    return Principal(subject="u1", roles=frozenset({"doctor", "admin"}),
                     permissions=frozenset(), token_id="j", token="t", claims={})


def test_forward_headers_drop_hop_by_hop_identity_and_connection_named():
    raw = [(k.encode(), v.encode()) for k, v in [
        ("Host", "gw"), ("Connection", "keep-alive, X-Secret-Hop"), ("X-Secret-Hop", "1"),
        ("Keep-Alive", "timeout=5"), ("TE", "trailers"), ("X-User-Id", "forged"),
        ("X-HealthFlow-Identity-Roles", "admin"), ("Authorization", "Bearer abc"),
        ("Accept", "application/json"), ("X-Request-ID", "client"), ("traceparent", "x"),
    ]]
    out = dict(forward_headers(raw, principal=_principal(), peer="10.0.0.9",
                               scheme="https", host="api.example", request_id="rid",
                               trusted_hops=0))
    assert out["authorization"] == "Bearer abc" and out["accept"] == "application/json"
    assert out["x-user-id"] == "u1" and out["x-user-roles"] == "admin,doctor"
    assert out["x-request-id"] == "rid"
    assert out["x-forwarded-for"] == "10.0.0.9" and out["x-forwarded-proto"] == "https"
    assert out["x-forwarded-host"] == "api.example"
    for gone in ("host", "connection", "x-secret-hop", "keep-alive", "te",
                 "x-healthflow-identity-roles"):
        assert gone not in out


def test_forwarded_for_chain_is_kept_only_behind_trusted_proxies():
    raw = [(b"x-forwarded-for", b"203.0.113.7")]
    common = {"principal": None, "peer": "10.0.0.2", "scheme": "http", "host": None,
              "request_id": "r"}
    untrusted = dict(forward_headers(raw, trusted_hops=0, **common))
    trusted = dict(forward_headers(raw, trusted_hops=1, **common))
    assert untrusted["x-forwarded-for"] == "10.0.0.2"
    assert trusted["x-forwarded-for"] == "203.0.113.7, 10.0.0.2"
    assert "x-user-id" not in trusted


def test_client_address_trusts_only_the_configured_proxy_hops():
    peer = ("10.0.0.1", 5000)
    assert client_address(peer, "6.6.6.6", 0) == "10.0.0.1"
    assert client_address(peer, "6.6.6.6, 203.0.113.7", 1) == "203.0.113.7"
    assert client_address(peer, "6.6.6.6, 203.0.113.7", 2) == "6.6.6.6"
    assert client_address(None, None, 0) == "unknown"


def test_response_headers_keep_cookies_and_drop_hop_by_hop():
    raw = [(b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2"), (b"Transfer-Encoding", b"chunked"),
           (b"X-Request-ID", b"upstream"), (b"Content-Length", b"10")]
    assert response_headers(raw) == [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"),
                                     (b"content-length", b"10")]


def test_ratelimit_fields_are_structured_field_lists():
    states = [LimitState("default-subject", 300, 60, 299, 60),
              LimitState("default-ip", 3000, 60, 2990, 58)]
    assert fields(states) == [
        ("RateLimit-Policy", '"default-subject";q=300;w=60, "default-ip";q=3000;w=60'),
        ("RateLimit", '"default-subject";r=299;t=60, "default-ip";r=2990;t=58'),
    ]
    assert fields([]) == []
    assert storage_uri("redis://h:6379/0") == "async+redis://h:6379/0"


def _doc(schema_name: str, schema: dict, path: str) -> dict:
    ref = {"$ref": f"#/components/schemas/{schema_name}"}
    return {"openapi": "3.1.0", "paths": {
        path: {"get": {"security": [{"OAuth2PasswordBearer": []}],
                       "responses": {"200": {"content": {"application/json": {"schema": ref}}}}}},
        "/internal/x": {"get": {"responses": {}}},
    }, "components": {"schemas": {schema_name: schema},
                      "securitySchemes": {"Other": {"type": "http", "scheme": "bearer"}}}}


def test_merge_filters_paths_and_renames_colliding_schemas():
    docs = {
        "auth": _doc("Item", {"type": "object", "title": "A"}, "/api/v1/users/{id}"),
        "patient": _doc("Item", {"type": "object", "title": "P"}, "/api/v1/patients/{id}"),
        "doctor": _doc("Item", {"type": "object", "title": "A"}, "/api/v1/doctors/{id}"),
    }
    merged = merge_documents(docs, RouteTable(), missing=["hospital"])
    assert set(merged["paths"]) == {"/api/v1/users/{id}", "/api/v1/patients/{id}",
                                    "/api/v1/doctors/{id}"}
    schemas = merged["components"]["schemas"]
    assert schemas == {"Item": {"type": "object", "title": "A"},
                       "Patient__Item": {"type": "object", "title": "P"}}

    def ref(path: str) -> str:
        return (merged["paths"][path]["get"]["responses"]["200"]["content"]
                ["application/json"]["schema"]["$ref"])

    assert ref("/api/v1/patients/{id}") == "#/components/schemas/Patient__Item"
    assert ref("/api/v1/doctors/{id}") == "#/components/schemas/Item"
    assert set(merged["components"]["securitySchemes"]) == {"OAuth2PasswordBearer"}
    assert "hospital" in merged["info"]["description"]
