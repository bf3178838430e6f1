"""TOTP keys are stored envelope-encrypted (issue 17), like the signing keys: the raw
documents hold neither the base32 key nor its bytes, enrolment and login still work,
a clear factor of an older release is wrapped at start and still verifies, KEK
rotation re-wraps them, a wrong KEK is refused naming the record, and
``rewrap-keys`` covers them."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pydantic import SecretStr

from healthflow.auth import otp
from healthflow.auth.app import create_app
from healthflow.auth.keys import factor_context, protect_factors
from healthflow.auth.settings import Settings
from healthflow.auth.store import MFA_FACTORS
from healthflow.common.keywrap import KeyUnwrapError, LocalKeyWrapper, new_kek, parse_keks
from healthflow.common.mongo import utcnow
from healthflow.devkit.testing import running_app

from ..conftest import AuthClient
from .test_mfa import Authenticator, challenge_of, enrol, second_step


async def _raw_factor(db: Any, user_id: str) -> bytes:
    raw = db.get_collection(MFA_FACTORS,
                            codec_options=CodecOptions(document_class=RawBSONDocument))
    doc = await raw.find_one({"_id": user_id})
    assert doc is not None
    return bytes(doc.raw)


def _assert_no_clear_secret(raw: bytes, secret: str) -> None:
    key = base64.b32decode(secret)
    assert secret.encode() not in raw and secret.lower().encode() not in raw
    assert key not in raw and base64.b64encode(key) not in raw


def _with(settings: Settings, keks: str) -> Settings:
    return settings.model_copy(update={"key_encryption_keys": SecretStr(keks)})


async def _clear_factor(auth: AuthClient) -> tuple[dict[str, Any], str, list[str]]:
    """A patient with an active factor stored as an older release did (base32 in clear)."""
    user = await auth.register()
    secret, codes = otp.new_totp_secret(), otp.new_recovery_codes(2)
    await auth.db[MFA_FACTORS].insert_one({
        "_id": user["id"], "method": "totp", "secret": secret, "status": "active",
        "created_at": utcnow(), "confirmed_at": utcnow(),
        "last_step": otp.totp_step(utcnow()) - 10,  # its confirmation, minutes ago
        "recovery_codes": dict.fromkeys(otp.hash_recovery_code(c) for c in codes)})
    return user, secret, codes


async def test_the_totp_key_is_not_stored_in_clear_and_logins_work(auth: AuthClient) -> None:
    user, tokens = await auth.patient()
    started = await auth.http.post("/api/v1/auth/mfa/totp",
                                   headers=auth.bearer(tokens["access_token"]))
    secret = started.json()["secret"]
    _assert_no_clear_secret(await _raw_factor(auth.db, user["id"]), secret)  # pending
    app = Authenticator(secret)
    confirmed = await auth.http.post("/api/v1/auth/mfa/totp/confirm",
                                     headers=auth.bearer(tokens["access_token"]),
                                     json={"code": app.code()})
    assert confirmed.status_code == 200, confirmed.text
    raw = await _raw_factor(auth.db, user["id"])
    _assert_no_clear_secret(raw, secret)
    assert not any(code.encode() in raw for code in confirmed.json()["recovery_codes"])
    stored = await auth.db[MFA_FACTORS].find_one({"_id": user["id"]})
    assert stored["secret"]["kek_id"] == "test-kek" and stored["status"] == "active"
    done = await second_step(auth, challenge_of(await auth.login(user["email"])),
                             code=app.code())
    assert done.status_code == 200, done.text


async def test_an_envelope_copied_to_another_factor_does_not_open(auth: AuthClient) -> None:
    first, first_tokens = await auth.patient()
    second, second_tokens = await auth.patient()
    await enrol(auth, first_tokens["access_token"])
    await enrol(auth, second_tokens["access_token"])
    mine = await auth.db[MFA_FACTORS].find_one({"_id": first["id"]})
    await auth.db[MFA_FACTORS].update_one({"_id": second["id"]},
                                          {"$set": {"secret": mine["secret"]}})
    with pytest.raises(KeyUnwrapError, match="another record"):
        await auth.app.state.keys.wrapper.unwrap(mine["secret"], factor_context(second["id"]))
    # the copied key does not let the first user's codes log the second one in
    response = await auth.http.post("/api/v1/auth/token/mfa", json={
        "mfa_token": challenge_of(await auth.login(second["email"])),
        "code": Authenticator(await _secret_of(auth, first["id"])).code()})
    assert response.status_code == 500, response.text  # tampering: an error, no login


async def _secret_of(auth: AuthClient, user_id: str) -> str:
    doc = await auth.db[MFA_FACTORS].find_one({"_id": user_id})
    return (await auth.app.state.keys.wrapper.unwrap(
        doc["secret"], factor_context(user_id))).decode()


async def test_a_clear_factor_of_an_older_release_is_wrapped_at_start(
        auth: AuthClient) -> None:
    user, secret, codes = await _clear_factor(auth)
    async with running_app(create_app(auth.settings)):  # a replica of this release starts
        pass
    _assert_no_clear_secret(await _raw_factor(auth.db, user["id"]), secret)
    stored = await auth.db[MFA_FACTORS].find_one({"_id": user["id"]})
    assert stored["secret"]["kek_id"] == "test-kek"
    app = Authenticator(secret)  # the phone enrolled before the upgrade still works
    done = await second_step(auth, challenge_of(await auth.login(user["email"])),
                             code=app.code())
    assert done.status_code == 200, done.text
    recovered = await second_step(auth, challenge_of(await auth.login(user["email"])),
                                  recovery_code=codes[0])
    assert recovered.status_code == 200, recovered.text


async def test_the_kek_rotates_and_a_wrong_one_is_refused_naming_the_record(
        settings: Settings) -> None:
    kek_a, kek_b = new_kek(), new_kek()
    app = create_app(_with(settings, f"a:{kek_a}"))
    async with running_app(app) as http:
        client = AuthClient(http=http, app=app, settings=app.state.auth.settings)
        user, tokens = await client.patient()
        phone, _ = await enrol(client, tokens["access_token"])
    async with running_app(create_app(_with(settings, f"b:{kek_b},a:{kek_a}"))):
        pass  # re-wraps with B at start
    rotated = create_app(_with(settings, f"b:{kek_b}"))  # A dropped
    async with running_app(rotated) as http:
        client = AuthClient(http=http, app=rotated, settings=rotated.state.auth.settings)
        db = client.db
        assert (await db[MFA_FACTORS].find_one({"_id": user["id"]}))["secret"]["kek_id"] == "b"
        _assert_no_clear_secret(await _raw_factor(db, user["id"]), phone.totp.secret)
        done = await second_step(client, challenge_of(await client.login(user["email"])),
                                 code=phone.code())
        assert done.status_code == 200, done.text
        wrong = _wrapper(f"c:{new_kek()},b:{new_kek()}")  # B's id, another key
        with pytest.raises(KeyUnwrapError) as refused:
            await protect_factors(db, wrong)
        message = str(refused.value)
        assert f"record=mfa_factors/{user['id']}" in message
        assert "does not unwrap with KEK 'b'" in message
        assert phone.totp.secret not in message and kek_b not in message
        with pytest.raises(KeyUnwrapError, match="'b', which is not configured"):
            await protect_factors(db, _wrapper(f"c:{new_kek()}"))


def _wrapper(keks: str) -> LocalKeyWrapper:
    return LocalKeyWrapper(*parse_keks(keks, "KEY_ENCRYPTION_KEYS"))


def test_the_rewrap_command_covers_totp_keys(monkeypatch, capsys, settings: Settings) -> None:
    import asyncio

    from pymongo import AsyncMongoClient

    from healthflow.auth import cli

    kek_a, kek_b = new_kek(), new_kek()
    for name, value in {"AUTH_MONGODB_URL": settings.mongodb_url,
                        "AUTH_MONGODB_DATABASE": settings.database_name,
                        "AUTH_TRANSPORT": "inprocess",
                        "AUTH_KEY_ENCRYPTION_KEYS": f"a:{kek_a}"}.items():
        monkeypatch.setenv(name, value)
    secret = otp.new_totp_secret()

    async def insert_clear() -> None:
        client: AsyncMongoClient[Any] = AsyncMongoClient(settings.mongodb_url)
        try:
            await client[settings.database_name][MFA_FACTORS].insert_one({
                "_id": "u-legacy", "method": "totp", "secret": secret, "status": "active",
                "created_at": utcnow(), "confirmed_at": utcnow(), "last_step": None,
                "recovery_codes": {}})
        finally:
            await client.close()

    asyncio.run(insert_clear())
    assert cli.main(["rewrap-keys"]) == 0
    assert "TOTP keys: 1 clear wrapped, 0 re-wrapped" in capsys.readouterr().out
    monkeypatch.setenv("AUTH_KEY_ENCRYPTION_KEYS", f"b:{kek_b},a:{kek_a}")
    assert cli.main(["rewrap-keys"]) == 0
    assert "TOTP keys: 0 clear wrapped, 1 re-wrapped" in capsys.readouterr().out
    monkeypatch.setenv("AUTH_KEY_ENCRYPTION_KEYS", f"b:{new_kek()}")
    assert cli.main(["rewrap-keys"]) == 2
    err = capsys.readouterr().err
    assert "does not unwrap with KEK 'b'" in err and kek_b not in err and secret not in err
