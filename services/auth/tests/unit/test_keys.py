"""Signing keys and access tokens without a database: what the JWKS and tokens look like."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from healthflow.auth.domain import KeyState, access_token_claims
from healthflow.auth.keys import key_context, key_summary, new_key_document, thumbprint
from healthflow.common.auth import TokenVerifier
from healthflow.common.errors import Unauthorized
from healthflow.common.keywrap import LocalKeyWrapper
from healthflow.common.permissions import permissions_for

WRAPPER = LocalKeyWrapper({"test": os.urandom(32)}, "test")


async def new_doc(state: KeyState) -> dict:
    return await new_key_document(state, datetime.now(UTC), WRAPPER)


async def sign(doc: dict, claims: dict, kid: str | None = None) -> str:
    der = await WRAPPER.unwrap(doc["private_key"], key_context(doc["_id"]))
    key = serialization.load_der_private_key(der, password=None)
    return jwt.encode(claims, key, algorithm="EdDSA",  # type: ignore[arg-type]
                      headers={"kid": kid or doc["_id"], "typ": "at+jwt"})


def claims(now: datetime, **kw: object) -> dict:
    roles = ["doctor"]
    return access_token_claims(
        user_id="u1", roles=roles, permissions=permissions_for(roles), session_id="s1",
        client_id="healthflow", issuer="healthflow-auth", audience="healthflow", now=now,
        ttl=900) | kw


async def test_key_ids_are_rfc_7638_thumbprints_and_jwks_hold_no_private_member() -> None:
    doc = await new_doc(KeyState.NEXT)
    jwk = doc["public_jwk"]
    assert doc["_id"] == jwk["kid"] == thumbprint(jwk)
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519" and jwk["alg"] == "EdDSA"
    assert "d" not in jwk  # the private scalar
    assert "private_key" not in key_summary(doc) and "private_pem" not in doc
    assert "PRIVATE KEY" not in json.dumps(key_summary(doc), default=str)
    other = await new_doc(KeyState.NEXT)
    assert other["_id"] != doc["_id"]


async def test_a_signed_token_verifies_with_the_shared_verifier() -> None:
    doc = await new_doc(KeyState.ACTIVE)
    verifier = TokenVerifier(issuer="healthflow-auth", audience="healthflow",
                             jwks={"keys": [doc["public_jwk"]]})
    token = await sign(doc, claims(datetime.now(UTC)))
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    principal = await verifier.verify(token)
    assert principal.subject == "u1" and principal.roles == {"doctor"}
    assert principal.has("schedule:manage_own") and not principal.has("users:manage")


async def test_a_token_signed_by_a_key_outside_the_jwks_is_refused() -> None:
    published = await new_doc(KeyState.ACTIVE)
    stranger = await new_doc(KeyState.ACTIVE)
    verifier = TokenVerifier(issuer="healthflow-auth", audience="healthflow",
                             jwks={"keys": [published["public_jwk"]]})
    with pytest.raises(Unauthorized):
        # same kid, other key
        await verifier.verify(await sign(stranger, claims(datetime.now(UTC)),
                                         kid=published["_id"]))
