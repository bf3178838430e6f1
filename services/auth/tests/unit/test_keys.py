"""Signing keys and access tokens without a database: what the JWKS and tokens look like."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from healthflow.auth.domain import KeyState, access_token_claims
from healthflow.auth.keys import key_summary, new_key_document, thumbprint
from healthflow.common.auth import TokenVerifier
from healthflow.common.errors import Unauthorized
from healthflow.common.permissions import permissions_for


def sign(doc: dict, claims: dict) -> str:
    key = serialization.load_pem_private_key(doc["private_pem"].encode(), password=None)
    return jwt.encode(claims, key, algorithm="EdDSA",  # type: ignore[arg-type]
                      headers={"kid": doc["_id"], "typ": "at+jwt"})


def claims(now: datetime, **kw: object) -> dict:
    roles = ["doctor"]
    return access_token_claims(
        user_id="u1", roles=roles, permissions=permissions_for(roles), session_id="s1",
        client_id="healthflow", issuer="healthflow-auth", audience="healthflow", now=now,
        ttl=900) | kw


def test_key_ids_are_rfc_7638_thumbprints_and_jwks_hold_no_private_member() -> None:
    doc = new_key_document(KeyState.NEXT, datetime.now(UTC))
    jwk = doc["public_jwk"]
    assert doc["_id"] == jwk["kid"] == thumbprint(jwk)
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519" and jwk["alg"] == "EdDSA"
    assert "d" not in jwk  # the private scalar
    assert "private_pem" not in key_summary(doc)
    assert "PRIVATE KEY" not in json.dumps(key_summary(doc), default=str)
    other = new_key_document(KeyState.NEXT, datetime.now(UTC))
    assert other["_id"] != doc["_id"]


async def test_a_signed_token_verifies_with_the_shared_verifier() -> None:
    doc = new_key_document(KeyState.ACTIVE, datetime.now(UTC))
    verifier = TokenVerifier(issuer="healthflow-auth", audience="healthflow",
                             jwks={"keys": [doc["public_jwk"]]})
    token = sign(doc, claims(datetime.now(UTC)))
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    principal = await verifier.verify(token)
    assert principal.subject == "u1" and principal.roles == {"doctor"}
    assert principal.has("schedule:manage_own") and not principal.has("users:manage")


async def test_a_token_signed_by_a_key_outside_the_jwks_is_refused() -> None:
    published = new_key_document(KeyState.ACTIVE, datetime.now(UTC))
    stranger = new_key_document(KeyState.ACTIVE, datetime.now(UTC))
    stranger["_id"] = published["_id"]  # same kid, other key
    verifier = TokenVerifier(issuer="healthflow-auth", audience="healthflow",
                             jwks={"keys": [published["public_jwk"]]})
    with pytest.raises(Unauthorized):
        await verifier.verify(sign(stranger, claims(datetime.now(UTC))))
