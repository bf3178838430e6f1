"""The gateway verifies tokens at the edge (RFC 8725 rules of TokenVerifier) and checks
route-group permissions, answering 401/403 problem+json before any upstream is called."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import httpx
import pytest

from healthflow.common.errors import PROBLEM_JSON
from healthflow.devkit.testing import TokenFactory


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(tokens: TokenFactory, **extra: object) -> dict[str, object]:
    now = int(time.time())
    return {"iss": tokens.issuer, "aud": tokens.audience, "sub": "mallory", "iat": now,
            "exp": now + 300, "jti": str(uuid.uuid4()), "roles": ["admin"],
            "permissions": ["audit:read", "platform:status"]} | extra


def _unsigned(header: dict[str, object], claims: dict[str, object]) -> str:
    return (_b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode()))


def forged_tokens(tokens: TokenFactory) -> dict[str, str | None]:
    """Every way of presenting a bad token that the edge must refuse."""
    impostor = TokenFactory()
    impostor.kid = tokens.kid  # same key id, different private key
    alg_none = _unsigned({"alg": "none", "typ": "JWT", "kid": tokens.kid},
                         _claims(tokens)) + "."
    # HS256 "signed" with the public key (the classic algorithm-confusion attack)
    public_x = tokens.jwks["keys"][0]["x"].encode()
    signing_input = _unsigned({"alg": "HS256", "typ": "JWT", "kid": tokens.kid},
                              _claims(tokens))
    hs256 = signing_input + "." + _b64(
        hmac.new(public_x, signing_input.encode(), hashlib.sha256).digest())
    genuine = tokens.mint("patient-7", ["patient"])
    header, payload, signature = genuine.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["admin"]
    tampered = ".".join([header, _b64(json.dumps(claims).encode()), signature])
    return {
        "no token": None,
        "expired": tokens.mint(ttl=-120),
        "wrong signature": impostor.mint(roles=["admin"]),
        "alg none": alg_none,
        "HS256 with the public key": hs256,
        "wrong audience": tokens.mint(aud="someone-else"),
        "wrong issuer": tokens.mint(iss="evil-issuer"),
        "tampered role claim": tampered,
        "unknown key id": TokenFactory().mint(),
        "not a JWT": "garbage",
    }


CASES = ["no token", "expired", "wrong signature", "alg none", "HS256 with the public key",
         "wrong audience", "wrong issuer", "tampered role claim", "unknown key id",
         "not a JWT"]


@pytest.mark.parametrize("case", CASES)
def test_bad_tokens_are_401_problem_json(gateway, platform, case):
    token = forged_tokens(platform.tokens)[case]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for path in ("/api/v1/patients/echo", "/api/v1/platform/status"):
        response = httpx.get(gateway.url + path, headers=headers)
        assert response.status_code == 401, (case, path, response.text)
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.json()["status"] == 401
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_valid_token_passes(gateway, platform):
    response = httpx.get(gateway.url + "/api/v1/patients/echo",
                         headers=platform.tokens.headers("p-1", ["patient"]))
    assert response.status_code == 200


def test_audit_needs_compliance_officer_or_admin_at_the_edge(gateway, platform):
    url = gateway.url + "/api/v1/audit/echo"
    for role in ("patient", "doctor", "nurse"):
        refused = httpx.get(url, headers=platform.tokens.headers(roles=[role]))
        assert refused.status_code == 403, role
        assert refused.headers["content-type"] == PROBLEM_JSON
    for role in ("compliance_officer", "admin"):
        allowed = httpx.get(url, headers=platform.tokens.headers(roles=[role]))
        assert allowed.status_code == 200, role
        assert allowed.json()["path"] == "/api/v1/audit/echo"


def test_platform_status_is_for_admins_and_reports_every_service(gateway, platform):
    url = gateway.url + "/api/v1/platform/status"
    assert httpx.get(url, headers=platform.tokens.headers(roles=["patient"])).status_code == 403
    response = httpx.get(url, headers=platform.tokens.headers(roles=["admin"]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["services"]) == set(platform.upstreams())
    assert body["services"]["auth"]["ready"] is True
    assert body["services"]["hospital"]["live"] is False
    assert body["services"]["hospital"]["circuit"] == "closed"
    assert body["status"] == "degraded"
    page = httpx.get(gateway.url + "/status")
    assert page.status_code == 200 and "/api/v1/platform/status" in page.text
