"""The generated checkpoint signing key (local runs) is stored envelope-encrypted (issue 17),
as auth's signing keys are: the raw document holds no seed, the key survives a restart,
a clear seed of an older release is wrapped at start and still signs, KEK rotation
re-wraps it, and a wrong KEK refuses start-up naming the record."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pydantic import SecretStr

from healthflow.audit import note, store
from healthflow.audit.app import create_app
from healthflow.audit.checkpoints import KEY_CONTEXT
from healthflow.audit.settings import Settings
from healthflow.common.keywrap import KeyUnwrapError, new_kek
from healthflow.common.mongo import utcnow
from healthflow.devkit.testing import TokenFactory, running_app


def _with(settings: Settings, keks: str) -> Settings:
    return settings.model_copy(update={"key_encryption_keys": SecretStr(keks)})


async def _published(settings: Settings, tokens: TokenFactory) -> tuple[str, bytes, Any]:
    """Start audit on ``settings``: (its verifier key, the raw BSON of the kept key, the
    kept document as read with the plain driver)."""
    app = create_app(settings)
    app.state.verifier = tokens.verifier()
    async with running_app(app) as client:
        key = (await client.get("/api/v1/audit/checkpoints/key",
                                headers=tokens.headers(roles=["admin"]))).json()
        db = app.state.runtime.db
        raw = db.get_collection(store.SIGNING_KEYS,
                                codec_options=CodecOptions(document_class=RawBSONDocument))
        [kept] = await raw.find({}).to_list()
        document = await db[store.SIGNING_KEYS].find_one({"_id": store.SIGNING_KEY_ID})
        return str(key["verifier_key"]), bytes(kept.raw), document


def _assert_no_clear_seed(raw: bytes, seed: bytes) -> None:
    assert seed not in raw and note.b64url(seed).encode() not in raw
    assert base64.b64encode(seed) not in raw and seed.hex().encode() not in raw
    assert b"seed" not in raw


async def test_the_generated_key_is_wrapped_and_survives_a_restart(
        settings: Settings, tokens: TokenFactory) -> None:
    verifier_key, raw, kept = await _published(settings, tokens)
    assert kept["private_key"]["kek_id"] == "test-kek"
    seed = await settings.key_wrapper().unwrap(kept["private_key"], KEY_CONTEXT)
    assert note.signer_from_seed(settings.checkpoint_origin, seed).verifier_key == verifier_key
    _assert_no_clear_seed(raw, seed)
    again, raw_again, _ = await _published(settings, tokens)  # a restart
    assert again == verifier_key
    assert raw_again == raw  # nothing re-made, nothing re-wrapped


async def test_a_clear_seed_of_an_older_release_is_wrapped_at_start(
        settings: Settings, tokens: TokenFactory) -> None:
    seed = note.new_seed()
    verifier_key, raw, kept = await _published_after_insert(settings, tokens, seed)
    assert verifier_key == note.signer_from_seed(settings.checkpoint_origin,
                                                 seed).verifier_key  # the same key signs
    _assert_no_clear_seed(raw, seed)
    assert kept["private_key"]["kek_id"] == "test-kek" and "seed" not in kept


async def _published_after_insert(settings: Settings, tokens: TokenFactory,
                                   seed: bytes) -> tuple[str, bytes, Any]:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[Any] = AsyncMongoClient(settings.mongodb_url)
    try:
        await client[settings.database_name][store.SIGNING_KEYS].insert_one(
            {"_id": "checkpoint", "seed": note.b64url(seed), "created_at": utcnow()})
    finally:
        await client.close()
    return await _published(settings, tokens)


async def test_the_kek_rotates_and_a_wrong_one_is_refused_naming_the_record(
        settings: Settings, tokens: TokenFactory) -> None:
    kek_a, kek_b = new_kek(), new_kek()
    verifier_key, _, kept = await _published(_with(settings, f"a:{kek_a}"), tokens)
    assert kept["private_key"]["kek_id"] == "a"
    rotated = await _published(_with(settings, f"b:{kek_b},a:{kek_a}"), tokens)
    assert (rotated[0], rotated[2]["private_key"]["kek_id"]) == (verifier_key, "b")
    only_b = await _published(_with(settings, f"b:{kek_b}"), tokens)
    assert (only_b[0], only_b[2]["private_key"]["kek_id"]) == (verifier_key, "b")
    wrong = new_kek()
    with pytest.raises(KeyUnwrapError) as refused:
        async with running_app(create_app(_with(settings, f"b:{wrong}"))):
            pass
    message = str(refused.value)
    assert "record=signing_keys/checkpoint" in message and "service=audit" in message
    assert "does not unwrap with KEK 'b'" in message and "KEY_ENCRYPTION_KEYS" in message
    assert wrong not in message and kek_b not in message
    with pytest.raises(KeyUnwrapError, match="'b', which is not configured"):
        async with running_app(create_app(_with(settings, f"c:{wrong}"))):
            pass


def test_production_needs_a_kek_only_to_keep_a_generated_key() -> None:
    generated = Settings(healthflow_env="production", allow_generated_signing_key=True)
    assert any(p.startswith("AUDIT_KEY_ENCRYPTION_KEYS: production needs")
               for p in generated.own_production_problems())
    configured = Settings(healthflow_env="production",
                          checkpoint_signing_key=SecretStr(note.b64url(note.new_seed())))
    assert not any("KEY_ENCRYPTION" in p for p in configured.own_production_problems())
