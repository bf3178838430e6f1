"""A signing key the service generated is kept only as an envelope (issue 17): the raw
stored document holds no seed in any encoding, a clear seed of an older release is
wrapped at start and keeps signing, and a wrong KEK refuses to start naming the record."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient

from healthflow.common.keywrap import KeyUnwrapError, new_kek
from healthflow.common.mongo import utcnow
from healthflow.devkit.testing import TokenFactory, running_app
from healthflow.prescription import keys, store
from healthflow.prescription.app import create_app
from healthflow.prescription.printed import KEY_CONTEXT

from .conftest import settings_for


async def started(mongodb_url: str, unique_name: str, tokens: TokenFactory, kek: str
                  ) -> tuple[list[dict[str, Any]], bytes, dict[str, Any]]:
    """Start the service with the KEK ``id:key`` ``kek``: (its published key set, the
    raw BSON of the kept key, the kept document)."""
    app = create_app(settings_for(mongodb_url, unique_name, transport="inprocess",
                                  key_encryption_keys=kek))
    app.state.verifier = tokens.verifier()
    async with running_app(app) as client:
        published = (await client.get("/api/v1/prescriptions/keys")).json()["keys"]
        db = app.state.runtime.db
        raw = db.get_collection(store.SIGNING_KEYS,
                                codec_options=CodecOptions(document_class=RawBSONDocument))
        [kept_raw] = await raw.find({}).to_list()
        kept = await db[store.SIGNING_KEYS].find_one({"_id": store.SIGNING_KEY_ID})
        assert kept is not None
        return published, bytes(kept_raw.raw), kept


def assert_no_clear_seed(raw: bytes, seed: bytes) -> None:
    assert seed not in raw and keys.b64url(seed).encode() not in raw
    assert base64.b64encode(seed) not in raw and seed.hex().encode() not in raw
    assert b"seed" not in raw


async def test_the_generated_key_is_kept_wrapped_and_survives_a_restart(
        mongodb_url: str, unique_name: str, tokens: TokenFactory) -> None:
    kek = new_kek()
    published, raw, kept = await started(mongodb_url, unique_name, tokens, f"k1:{kek}")
    assert kept["private_key"]["kek_id"] == "k1"
    settings = settings_for(mongodb_url, unique_name, key_encryption_keys=f"k1:{kek}")
    seed = await settings.key_wrapper().unwrap(kept["private_key"], KEY_CONTEXT)
    assert published == [keys.from_seed(seed).jwk()]  # the kept key is the one that signs
    assert_no_clear_seed(raw, seed)
    again, raw_again, _ = await started(mongodb_url, unique_name, tokens, f"k1:{kek}")
    assert again == published and raw_again == raw  # nothing re-made, nothing re-wrapped


async def test_a_clear_seed_of_an_older_release_is_wrapped_at_start_and_still_signs(
        mongodb_url: str, unique_name: str, tokens: TokenFactory) -> None:
    seed = keys.new_seed()
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongodb_url)
    try:
        await client[f"prescription_{unique_name}"][store.SIGNING_KEYS].insert_one(
            {"_id": store.SIGNING_KEY_ID, "seed": keys.b64url(seed), "created_at": utcnow()})
    finally:
        await client.close()
    published, raw, kept = await started(mongodb_url, unique_name, tokens, f"k1:{new_kek()}")
    assert published == [keys.from_seed(seed).jwk()]
    assert kept["private_key"]["kek_id"] == "k1" and "seed" not in kept
    assert_no_clear_seed(raw, seed)


async def test_the_kek_rotates_and_a_wrong_one_refuses_to_start_naming_the_record(
        mongodb_url: str, unique_name: str, tokens: TokenFactory) -> None:
    old, new, wrong = new_kek(), new_kek(), new_kek()
    published, _, _ = await started(mongodb_url, unique_name, tokens, f"a:{old}")
    rotated, _, kept = await started(mongodb_url, unique_name, tokens, f"b:{new},a:{old}")
    assert rotated == published and kept["private_key"]["kek_id"] == "b"
    with pytest.raises(KeyUnwrapError) as refused:
        await started(mongodb_url, unique_name, tokens, f"b:{wrong}")
    message = str(refused.value)
    assert "record=signing_keys/current" in message and "service=prescription" in message
    assert wrong not in message and new not in message


async def test_a_configured_key_destroys_a_clear_seed_of_an_older_release(
        mongodb_url: str, unique_name: str, tokens: TokenFactory) -> None:
    """With ``PRESCRIPTION_SIGNING_KEY`` set the kept seed signs nothing more: it is not
    left in clear (it is destroyed, its public key kept so its signatures verify)."""
    seed, configured = keys.new_seed(), keys.new_seed()
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongodb_url)
    db = client[f"prescription_{unique_name}"]
    try:
        await db[store.SIGNING_KEYS].insert_one(
            {"_id": store.SIGNING_KEY_ID, "seed": keys.b64url(seed), "created_at": utcnow()})
        app = create_app(settings_for(mongodb_url, unique_name, transport="inprocess",
                                      signing_key=keys.b64url(configured)))
        app.state.verifier = tokens.verifier()
        async with running_app(app) as http:
            published = (await http.get("/api/v1/prescriptions/keys")).json()["keys"]
        assert [k["kid"] for k in published] == [keys.from_seed(configured).kid,
                                                 keys.from_seed(seed).kid]
        assert await db[store.SIGNING_KEYS].count_documents({}) == 0
    finally:
        await client.close()
