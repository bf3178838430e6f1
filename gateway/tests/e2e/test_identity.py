"""Identity through the gateway (issue 3): the account lifecycle and its audit trail, the
tokens the edge refuses, forged identity headers, refresh-token reuse, and admin routes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymongo import MongoClient

from healthflow.common.keywrap import LocalKeyWrapper, parse_keks
from healthflow.common.permissions import Role, permissions_for
from healthflow.devkit.supervisor import KEK_FILE
from healthflow.devkit.testing import RunningPlatform, eventually

from .conftest import (
    PASSWORD,
    User,
    assert_chain_ok,
    assert_problem,
    audit_events,
    login,
    me,
    new_email,
    new_phone,
    ok,
    register_patient,
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return json.loads(unb64url(header)), json.loads(unb64url(payload)), signature


def compact(header: dict[str, Any], payload: dict[str, Any], signature: bytes | str) -> str:
    head = b64url(json.dumps(header, separators=(",", ":")).encode())
    body = b64url(json.dumps(payload, separators=(",", ":")).encode())
    sig = signature if isinstance(signature, str) else b64url(signature)
    return f"{head}.{body}.{sig}"


def hs256(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    """An HS256 JWS made by hand (PyJWT refuses key material that looks asymmetric)."""
    unsigned = compact(header, payload, b"").rsplit(".", 1)[0]
    return unsigned + "." + b64url(hmac.new(secret, unsigned.encode(), hashlib.sha256).digest())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_register_login_refresh_logout_and_the_audit_trail(
    platform: RunningPlatform, compliance: User
) -> None:
    async with platform.client() as api:
        email = new_email("lifecycle")
        registered = ok(await api.post("/api/v1/auth/register", json={
            "email": email, "password": PASSWORD, "full_name": "Life Cycle",
            "phone": new_phone()}), 201)
        user_id = registered["id"]
        assert registered["roles"] == ["patient"] and registered["status"] == "active"

        first = await login(api, email)
        # a protected route, with the token the login gave
        account = await me(api, first["access_token"])
        assert account["id"] == user_id and account["email"] == email
        assert "patients:read_own" in account["permissions"]
        assert "users:read" not in account["permissions"]

        refreshed = ok(await api.post("/api/v1/auth/refresh",
                                      json={"refresh_token": first["refresh_token"]}))
        assert refreshed["refresh_token"] != first["refresh_token"]
        assert (await me(api, refreshed["access_token"]))["id"] == user_id

        logout = await api.post("/api/v1/auth/logout", headers=bearer(refreshed["access_token"]))
        assert logout.status_code == 204, logout.text
        refused = await api.post("/api/v1/auth/refresh",
                                 json={"refresh_token": refreshed["refresh_token"]})
        assert_problem(refused, 400)
        assert refused.json().get("error") == "invalid_grant"

        # the audit log holds every step, about this user and done by this user
        wanted = {"user.registered", "auth.login_succeeded", "auth.token_refreshed",
                  "auth.logged_out"}
        by_subject: list[dict[str, Any]] = []

        async def all_recorded() -> bool:
            nonlocal by_subject
            by_subject = await audit_events(api, compliance, subject=user_id)
            return wanted <= {e["type"] for e in by_subject}

        await eventually(all_recorded, within=20,
                         message=f"audit lacks some of {sorted(wanted)} for {user_id}")
        for entry in by_subject:
            assert entry["subject"] == user_id, entry
            assert entry["envelope"]["type"] == entry["type"], entry
            assert "password" not in json.dumps(entry["envelope"]).lower(), entry
        registered_entry = next(e for e in by_subject if e["type"] == "user.registered")
        assert registered_entry["envelope"]["data"]["user_id"] == user_id
        assert registered_entry["envelope"]["data"]["self_registered"] is True
        acted = {e["type"] for e in await audit_events(api, compliance, actor=user_id)}
        assert {"auth.login_succeeded", "auth.logged_out"} <= acted, acted
        # one seq each, newest first: the log is a chain, not a bag
        seqs = [e["seq"] for e in by_subject]
        assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)

        await assert_chain_ok(api, compliance)


async def active_signing_key(platform: RunningPlatform) -> tuple[str, Ed25519PrivateKey]:
    """The auth service's active signing key, read from its database and unwrapped with
    the KEK the runner generated for this platform (``var/secrets/key-encryption-keys``;
    the database alone holds only its envelope, :mod:`healthflow.common.keywrap`).

    Only the wrong-audience and expired cases need it: a token the platform itself
    could have signed is the only way to show that those claims (not the signature)
    are what the edge refuses.
    """
    with MongoClient(platform.mongodb_url, serverSelectionTimeoutMS=10_000) as client:
        doc = client["healthflow_auth"]["signing_keys"].find_one({"state": "active"})
    assert doc is not None, "the auth service has no active signing key"
    assert "private_pem" not in doc, "the signing key is stored in clear"
    kek_file = platform.workdir / "var" / KEK_FILE
    wrapper = LocalKeyWrapper(*parse_keks(kek_file.read_text(), str(kek_file)))
    der = await wrapper.unwrap(doc["private_key"],
                               {"service": "auth", "record": f"signing_keys/{doc['_id']}"})
    key = serialization.load_der_private_key(der, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return doc["_id"], key


async def test_forged_and_altered_tokens_get_401_problem_json(
    platform: RunningPlatform, admin: User
) -> None:
    async with platform.client() as api:
        patient = await register_patient(api, "forger")
        header, claims, _ = segments(patient.access_token)
        jwks = ok(await api.get("/.well-known/jwks.json"))
        published = {k["kid"]: k for k in jwks["keys"]}
        kid = header["kid"]
        assert header["alg"] == "EdDSA" and kid in published, (header, list(published))
        public_x = unb64url(published[kid]["x"])
        public_pem = jwt.PyJWK.from_dict(published[kid]).key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

        admin_claims = claims | {"roles": ["admin"],
                                 "permissions": sorted(permissions_for([Role.ADMIN]))}
        stranger = Ed25519PrivateKey.generate()
        real_kid, real_key = await active_signing_key(platform)
        now = int(time.time())
        fresh = claims | {"iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}

        cases: dict[str, dict[str, str]] = {
            "no token": {},
            "not a JWT": bearer("not-a-token"),
            "alg none": bearer(compact(header | {"alg": "none"}, admin_claims, b"")),
            "alg none, original claims": bearer(compact({"alg": "none", "typ": "JWT"}, claims,
                                                        "")),
            "HS256 with the JWKS public key bytes": bearer(
                hs256(header | {"alg": "HS256"}, admin_claims, public_x)),
            "HS256 with the public key PEM": bearer(
                hs256(header | {"alg": "HS256"}, admin_claims, public_pem)),
            "own Ed25519 key, real kid": bearer(jwt.encode(
                admin_claims, stranger, algorithm="EdDSA",
                headers={"kid": kid, "typ": "at+jwt"})),
            "tampered role claim": bearer(compact(header, admin_claims,
                                                  patient.access_token.rsplit(".", 1)[1])),
            "wrong audience": bearer(jwt.encode(
                fresh | {"aud": "another-api"}, real_key, algorithm="EdDSA",
                headers={"kid": real_kid, "typ": "at+jwt"})),
            "wrong issuer": bearer(jwt.encode(
                fresh | {"iss": "https://evil.example"}, real_key, algorithm="EdDSA",
                headers={"kid": real_kid, "typ": "at+jwt"})),
            "expired": bearer(jwt.encode(
                fresh | {"iat": now - 3600, "exp": now - 600}, real_key, algorithm="EdDSA",
                headers={"kid": real_kid, "typ": "at+jwt"})),
        }
        reasons = {"wrong audience": "audience", "wrong issuer": "issuer",
                   "expired": "expired"}
        # the control: the same real key and claims, unaltered, are accepted
        control = jwt.encode(fresh, real_key, algorithm="EdDSA",
                             headers={"kid": real_kid, "typ": "at+jwt"})
        assert (await me(api, control))["id"] == patient.id

        for name, headers in cases.items():
            for method, path in (("GET", "/api/v1/auth/me"), ("GET", "/api/v1/users"),
                                 ("GET", "/api/v1/appointments")):
                response = await api.request(method, path, headers=headers)
                try:
                    body = assert_problem(response, 401, "unauthorized")
                except AssertionError as exc:
                    raise AssertionError(f"{name}: {exc}") from None
                if name in reasons:
                    assert reasons[name] in body["detail"], (name, body)


async def test_forged_identity_headers_are_ignored(platform: RunningPlatform,
                                                   admin: User) -> None:
    async with platform.client() as api:
        patient = await register_patient(api, "spoofer")
        forged = patient.headers | {
            "X-User-Id": admin.id, "X-User-Roles": "admin",
            "X-User-Permissions": "users:read,users:manage", "X-Forwarded-User": admin.id,
            "X-HealthFlow-Identity-Roles": "admin"}
        assert_problem(await api.get("/api/v1/users", headers=forged), 403, "forbidden")
        assert_problem(await api.post("/api/v1/users", headers=forged, json={
            "email": new_email("sneaky"), "password": PASSWORD, "full_name": "Sneaky",
            "roles": ["admin"]}), 403, "forbidden")
        account = ok(await api.get("/api/v1/auth/me", headers=forged))
        assert account["id"] == patient.id and account["roles"] == ["patient"], account
        # without a token, identity headers alone are nothing
        assert_problem(await api.get("/api/v1/auth/me", headers={
            "X-User-Id": admin.id, "X-User-Roles": "admin"}), 401, "unauthorized")


async def test_a_replayed_refresh_token_revokes_the_family(
    platform: RunningPlatform, compliance: User
) -> None:
    async with platform.client() as api:
        patient = await register_patient(api, "replay")
        second = ok(await api.post("/api/v1/auth/refresh",
                                   json={"refresh_token": patient.refresh_token}))
        third = ok(await api.post("/api/v1/auth/refresh",
                                  json={"refresh_token": second["refresh_token"]}))
        # the first token again: reuse
        replay = await api.post("/api/v1/auth/refresh",
                                json={"refresh_token": patient.refresh_token})
        assert_problem(replay, 400)
        assert replay.json().get("error") == "invalid_grant"
        # ... and the newest token of the family is dead too
        newest = await api.post("/api/v1/auth/refresh",
                                json={"refresh_token": third["refresh_token"]})
        assert_problem(newest, 400)
        assert newest.json().get("error") == "invalid_grant"
        # another session of the same user is untouched
        other = await login(api, patient.email)
        ok(await api.post("/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]}))

        async def reuse_recorded() -> bool:
            entries = await audit_events(api, compliance, subject=patient.id,
                                         type="auth.refresh_reuse_detected")
            return len(entries) == 1

        await eventually(reuse_recorded, within=20,
                         message="auth.refresh_reuse_detected is not in the audit log")


async def test_a_patient_cannot_reach_admin_routes(platform: RunningPlatform,
                                                   admin: User) -> None:
    async with platform.client() as api:
        patient = await register_patient(api, "curious")
        denied = [
            ("GET", "/api/v1/users", None),
            ("GET", f"/api/v1/users/{admin.id}", None),
            ("POST", "/api/v1/users", {"email": new_email("x"), "password": PASSWORD,
                                       "full_name": "X", "roles": ["admin"]}),
            ("PUT", f"/api/v1/users/{patient.id}/roles/admin", None),
            ("POST", f"/api/v1/users/{admin.id}/deactivate", None),
            ("GET", "/api/v1/auth/keys", None),
            ("POST", "/api/v1/auth/keys/rotate", None),
            ("GET", "/api/v1/audit/events", None),
            ("GET", "/api/v1/audit/verify", None),
            ("GET", "/api/v1/platform/status", None),
            ("POST", "/api/v1/hospitals", {}),
            ("GET", "/api/v1/notifications/deliveries", None),
        ]
        for method, path, body in denied:
            response = await api.request(method, path, headers=patient.headers, json=body)
            try:
                assert_problem(response, 403, "forbidden")
            except AssertionError as exc:
                raise AssertionError(f"patient {method} {path}: {exc}") from None
        # the admin still is one, and nothing changed for the patient
        assert (await me(api, patient.access_token))["roles"] == ["patient"]
        ok(await api.get(f"/api/v1/users/{admin.id}", headers=admin.headers))


async def test_problem_answers_are_uniform_for_bad_logins(platform: RunningPlatform) -> None:
    """An unknown email and a wrong password get the same 400 invalid_grant (no enumeration)."""
    async with platform.client() as api:
        patient = await register_patient(api, "enum")
        answers = []
        for username in (patient.email, new_email("nobody")):
            response = await api.post("/api/v1/auth/token",
                                      data={"username": username, "password": "Wrong-" + PASSWORD})
            body = assert_problem(response, 400)
            answers.append({k: v for k, v in body.items() if k != "instance"})
        assert answers[0] == answers[1], answers
