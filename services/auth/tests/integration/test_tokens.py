"""The service verifies access tokens itself: forged, expired and misdirected tokens get
401 problem+json; key rotation logs nobody out."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64json(value: dict[str, Any]) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def valid_claims(auth, user_id: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": "healthflow-auth", "aud": "healthflow", "sub": user_id, "iat": now,
            "exp": now + 300, "jti": str(uuid.uuid4()), "client_id": "healthflow",
            "roles": ["patient"], "permissions": ["profile:read_own"]} | overrides


async def assert_401(auth, token: str | None) -> dict[str, Any]:
    headers = {} if token is None else auth.bearer(token)
    response = await auth.http.get("/api/v1/auth/me", headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["status"] == 401 and body["type"].endswith("/unauthorized")
    return dict(body)


async def test_a_genuine_token_passes_the_same_checks(auth) -> None:
    """The control for every forgery below: the same claims, properly signed, are accepted."""
    user, _ = await auth.patient()
    token = auth.app.state.keys.sign(valid_claims(auth, user["id"]))
    response = await auth.http.get("/api/v1/auth/me", headers=auth.bearer(token))
    assert response.status_code == 200


async def test_no_token(auth) -> None:
    await assert_401(auth, None)


async def test_malformed_token(auth) -> None:
    await assert_401(auth, "not-a-jwt")


async def test_expired_token(auth) -> None:
    user, _ = await auth.patient()
    past = int(time.time()) - 3600
    token = auth.app.state.keys.sign(valid_claims(auth, user["id"], iat=past - 900, exp=past))
    body = await assert_401(auth, token)
    assert "expired" in body["detail"]


async def test_token_not_valid_yet(auth) -> None:
    user, _ = await auth.patient()
    future = int(time.time()) + 3600
    token = auth.app.state.keys.sign(valid_claims(auth, user["id"], iat=future, nbf=future,
                                                  exp=future + 900))
    await assert_401(auth, token)


async def test_wrong_signature_another_key_with_the_same_kid(auth) -> None:
    user, _ = await auth.patient()
    forged = jwt.encode(valid_claims(auth, user["id"]), Ed25519PrivateKey.generate(),
                        algorithm="EdDSA",
                        headers={"kid": auth.app.state.keys.signing_kid, "typ": "at+jwt"})
    await assert_401(auth, forged)


async def test_alg_none(auth) -> None:
    user, _ = await auth.patient()
    header = {"alg": "none", "typ": "at+jwt", "kid": auth.app.state.keys.signing_kid}
    token = f"{b64json(header)}.{b64json(valid_claims(auth, user['id']))}."
    await assert_401(auth, token)


async def test_hs256_signed_with_the_public_key(auth) -> None:
    """The algorithm-confusion attack: HMAC keyed with the published public key."""
    import hashlib
    import hmac

    user, _ = await auth.patient()
    jwk = next(k for k in (await auth.http.get("/.well-known/jwks.json")).json()["keys"]
               if k["kid"] == auth.app.state.keys.signing_kid)
    public_key_bytes = base64.urlsafe_b64decode(jwk["x"] + "==")
    for secret in (public_key_bytes, json.dumps(jwk).encode(), jwk["x"].encode()):
        signing_input = (f"{b64json({'alg': 'HS256', 'typ': 'at+jwt', 'kid': jwk['kid']})}."
                         f"{b64json(valid_claims(auth, user['id']))}")
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        await assert_401(auth, f"{signing_input}.{b64(mac)}")


@pytest.mark.parametrize("claim", [{"aud": "another-api"}, {"iss": "https://evil.example"}])
async def test_wrong_audience_or_issuer(auth, claim: dict[str, str]) -> None:
    user, _ = await auth.patient()
    token = auth.app.state.keys.sign(valid_claims(auth, user["id"], **claim))
    await assert_401(auth, token)


async def test_tampered_roles_claim(auth) -> None:
    _, issued = await auth.patient()
    header, payload, signature = issued["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["admin"]
    claims["permissions"] = sorted({*claims["permissions"], "users:manage", "users:read"})
    tampered = f"{header}.{b64json(claims)}.{signature}"
    await assert_401(auth, tampered)
    response = await auth.http.get("/api/v1/users", headers=auth.bearer(tampered))
    assert response.status_code == 401


async def test_a_token_from_another_issuers_key_is_refused(auth, tokens) -> None:
    """The shared test minter's key is not in this service's JWKS."""
    await assert_401(auth, tokens.mint(roles=["admin"]))


async def test_rotation_keeps_old_tokens_valid_and_publishes_both_keys(auth, subscriber) -> None:
    user, before = await auth.patient()
    old_kid = jwt.get_unverified_header(before["access_token"])["kid"]
    jwks_before = {k["kid"] for k in (await auth.http.get("/.well-known/jwks.json")).json()["keys"]}
    keys_before = (await auth.http.get("/api/v1/auth/keys", headers=auth.admin)).json()
    upcoming = next(k["kid"] for k in keys_before if k["state"] == "next")
    assert upcoming in jwks_before  # published before it signs

    rotated = await auth.http.post("/api/v1/auth/keys/rotate", headers=auth.admin)
    assert rotated.status_code == 200, rotated.text
    rotation = rotated.json()
    assert rotation["activated_kid"] == upcoming and rotation["retired_kid"] == old_kid

    jwks = (await auth.http.get("/.well-known/jwks.json")).json()
    kids = {k["kid"] for k in jwks["keys"]}
    assert {old_kid, upcoming, rotation["next_kid"]} <= kids
    assert all("d" not in k for k in jwks["keys"])  # public keys only

    me = await auth.http.get("/api/v1/auth/me", headers=auth.bearer(before["access_token"]))
    assert me.status_code == 200  # signed before the rotation, still accepted
    after = await auth.tokens(user["email"])
    assert jwt.get_unverified_header(after["access_token"])["kid"] == upcoming
    me = await auth.http.get("/api/v1/auth/me", headers=auth.bearer(after["access_token"]))
    assert me.status_code == 200

    states = {k["kid"]: k for k in
              (await auth.http.get("/api/v1/auth/keys", headers=auth.admin)).json()}
    assert states[old_kid]["state"] == "retired" and states[old_kid]["remove_after"]
    assert states[upcoming]["state"] == "active"
    assert all("private" not in json.dumps(k) for k in states.values())
    await subscriber.wait_for(lambda e: e.type == "auth.signing_key_rotated"
                              and e.data["activated_kid"] == upcoming)


async def test_retired_keys_are_removed_once_their_tokens_expired(auth) -> None:
    from healthflow.auth.store import SIGNING_KEYS
    from healthflow.common.mongo import utcnow

    old_kid = auth.app.state.keys.signing_kid
    await auth.http.post("/api/v1/auth/keys/rotate", headers=auth.admin)
    await auth.db[SIGNING_KEYS].update_one({"_id": old_kid},
                                           {"$set": {"remove_after": utcnow()}})
    await auth.app.state.keys.reload()
    kids = {k["kid"] for k in (await auth.http.get("/.well-known/jwks.json")).json()["keys"]}
    assert old_kid not in kids
    removed = await auth.db[SIGNING_KEYS].find_one({"_id": old_kid})
    assert removed["state"] == "removed" and removed["private_key"] is None


async def test_only_admins_rotate_keys(auth) -> None:
    _, issued = await auth.patient()
    response = await auth.http.post("/api/v1/auth/keys/rotate",
                                    headers=auth.bearer(issued["access_token"]))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
