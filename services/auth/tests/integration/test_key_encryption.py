"""Signing keys are stored envelope-encrypted (issue 17): no private key in the database,
records bound to their kid, clear records of older releases migrated, KEK rotation by
re-wrapping at start, a wrong KEK refused at start with a clear message."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from healthflow.auth.app import create_app
from healthflow.auth.domain import KeyState
from healthflow.auth.keys import key_context
from healthflow.auth.settings import Settings
from healthflow.auth.store import SIGNING_KEYS
from healthflow.common.keywrap import KeyUnwrapError, new_kek
from healthflow.common.mongo import utcnow
from healthflow.devkit.testing import running_app


def _with(settings: Settings, keks: str) -> Settings:
    return settings.model_copy(update={"key_encryption_keys": SecretStr(keks)})


async def _raw_keys(db: Any) -> list[bytes]:
    raw = db.get_collection(SIGNING_KEYS,
                            codec_options=CodecOptions(document_class=RawBSONDocument))
    return [doc.raw for doc in await raw.find({}).to_list()]


async def _signs_and_verifies(settings: Settings) -> tuple[str, set[str]]:
    """Start auth on ``settings``; a token it signs verifies; (the signing kid, the KEK
    ids of the stored envelopes)."""
    app = create_app(settings)
    async with running_app(app) as http:
        token = app.state.keys.sign({"iss": settings.jwt_issuer, "aud": settings.jwt_audience,
                                     "sub": "u-1", "iat": int(utcnow().timestamp()),
                                     "exp": int(utcnow().timestamp()) + 60, "jti": "j-1"})
        principal = await app.state.verifier.verify(token)
        assert principal.subject == "u-1"
        assert (await http.get("/.well-known/jwks.json")).status_code == 200
        docs = await app.state.runtime.db[SIGNING_KEYS].find({}).to_list()
        return str(app.state.keys.signing_kid), {d["private_key"]["kek_id"] for d in docs}


async def test_no_private_key_is_stored_in_clear(auth) -> None:
    ring = auth.app.state.keys
    der = ring._signing_key.private_bytes(serialization.Encoding.DER,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())
    seed = ring._signing_key.private_bytes(serialization.Encoding.Raw,
                                           serialization.PrivateFormat.Raw,
                                           serialization.NoEncryption())
    docs = await _raw_keys(auth.db)
    assert len(docs) >= 2
    for raw in docs:
        assert b"PRIVATE KEY" not in raw and der not in raw and seed not in raw
        assert base64.b64encode(seed) not in raw and b"private_pem" not in raw
    stored = await auth.db[SIGNING_KEYS].find_one({"_id": ring.signing_kid})
    assert stored["private_key"]["kek_id"] == "test-kek"
    user, issued = await auth.patient()  # tokens still sign and verify
    me = await auth.http.get("/api/v1/auth/me", headers=auth.bearer(issued["access_token"]))
    assert me.status_code == 200 and me.json()["email"] == user["email"]


async def test_an_envelope_swapped_between_keys_does_not_open(auth) -> None:
    ring = auth.app.state.keys
    active = await auth.db[SIGNING_KEYS].find_one({"state": "active"})
    upcoming = await auth.db[SIGNING_KEYS].find_one({"state": "next"})
    await auth.db[SIGNING_KEYS].update_one({"_id": active["_id"]},
                                           {"$set": {"private_key": upcoming["private_key"]}})
    swapped = await auth.db[SIGNING_KEYS].find_one({"_id": active["_id"]})
    with pytest.raises(KeyUnwrapError, match="another record"):
        await ring.wrapper.unwrap(swapped["private_key"], key_context(active["_id"]))


async def test_a_clear_key_of_an_older_release_is_wrapped_at_start(settings: Settings) -> None:
    from healthflow.auth.keys import thumbprint

    private = Ed25519PrivateKey.generate()
    import json

    from jwt.algorithms import OKPAlgorithm

    jwk = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
    kid = thumbprint(jwk)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    app = create_app(settings)
    now = utcnow()
    await app.state.runtime.db[SIGNING_KEYS].insert_one({
        "_id": kid, "alg": "EdDSA", "state": str(KeyState.ACTIVE), "private_pem": pem,
        "public_jwk": jwk | {"kid": kid, "use": "sig", "alg": "EdDSA"}, "created_at": now,
        "activated_at": now, "retired_at": None, "remove_after": None, "removed_at": None})
    async with running_app(app):
        assert app.state.keys.signing_kid == kid  # the old key still signs
        docs = await _raw_keys(app.state.runtime.db)
        assert all(b"PRIVATE KEY" not in raw and b"private_pem" not in raw for raw in docs)
        stored = await app.state.runtime.db[SIGNING_KEYS].find_one({"_id": kid})
        assert stored["private_key"]["kek_id"] == "test-kek"


async def test_the_kek_rotates_by_rewrapping_at_start(settings: Settings) -> None:
    kek_a, kek_b = new_kek(), new_kek()
    with_a = _with(settings, f"a:{kek_a}")
    kid, keks = await _signs_and_verifies(with_a)
    assert keks == {"a"}
    both = _with(settings, f"b:{kek_b},a:{kek_a}")
    assert await _signs_and_verifies(both) == (kid, {"b"})  # re-wrapped at start
    only_b = _with(settings, f"b:{kek_b}")
    assert await _signs_and_verifies(only_b) == (kid, {"b"})  # A is gone: still works


async def test_a_wrong_kek_is_refused_at_start_naming_the_fix(settings: Settings) -> None:
    await _signs_and_verifies(settings)
    wrong = new_kek()
    app = create_app(_with(settings, f"test-kek:{wrong}"))
    with pytest.raises(KeyUnwrapError) as refused:
        async with running_app(app):
            pass
    message = str(refused.value)
    assert "does not unwrap with KEK 'test-kek'" in message and "KEY_ENCRYPTION_KEYS" in message
    assert wrong not in message and "PRIVATE" not in message
    missing = create_app(_with(settings, f"x:{wrong}"))
    with pytest.raises(KeyUnwrapError, match="'test-kek', which is not configured"):
        async with running_app(missing):
            pass


async def test_the_process_exits_with_ex_config_on_a_wrong_kek(settings: Settings) -> None:
    """As an operator sees it: one clear line, exit 78 (the runner does not restart it),
    no key material in the output."""
    import asyncio
    import os
    import subprocess
    import sys

    from healthflow.common.http import EX_CONFIG
    from healthflow.devkit.embedded import free_port

    await _signs_and_verifies(settings)
    wrong = new_kek()
    right = settings.key_encryption_keys.get_secret_value()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "KEY_ENC"))} | {
        "AUTH_MONGODB_URL": settings.mongodb_url,
        "AUTH_MONGODB_DATABASE": settings.database_name, "AUTH_TRANSPORT": "inprocess",
        "AUTH_PORT": str(free_port()), "AUTH_REDIS_URL": "",
        "AUTH_KEY_ENCRYPTION_KEYS": f"test-kek:{wrong}"}
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "healthflow.auth"], env=env,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == EX_CONFIG, output[-2000:]
    assert "start-up refused" in output and "does not unwrap with KEK 'test-kek'" in output
    assert wrong not in output and right.split(":")[1] not in output
    assert "PRIVATE KEY" not in output


def test_the_rewrap_command_after_a_kek_rotation(monkeypatch, capsys, settings: Settings) -> None:
    from healthflow.auth import cli

    kek_a, kek_b = new_kek(), new_kek()
    for name, value in {"AUTH_MONGODB_URL": settings.mongodb_url,
                        "AUTH_MONGODB_DATABASE": settings.database_name,
                        "AUTH_TRANSPORT": "inprocess",
                        "AUTH_KEY_ENCRYPTION_KEYS": f"a:{kek_a}"}.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["rotate-keys"]) == 0  # makes the first keys, wrapped with A
    monkeypatch.setenv("AUTH_KEY_ENCRYPTION_KEYS", f"b:{kek_b},a:{kek_a}")
    capsys.readouterr()
    assert cli.main(["rewrap-keys"]) == 0
    out = capsys.readouterr().out
    assert "wrapped 0 clear key(s), re-wrapped " in out and "with KEK b" in out
    assert "re-wrapped 0 " not in out
    assert cli.main(["rewrap-keys"]) == 0
    assert "re-wrapped 0 " in capsys.readouterr().out  # nothing left under A
    monkeypatch.setenv("AUTH_KEY_ENCRYPTION_KEYS", f"b:{new_kek()}")
    assert cli.main(["rewrap-keys"]) == 2
    err = capsys.readouterr().err
    assert "does not unwrap with KEK 'b'" in err and kek_b not in err
