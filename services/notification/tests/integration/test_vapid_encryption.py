"""The stored VAPID key is envelope-encrypted (issue 17): nothing in clear in the
database, a clear key of an older release is wrapped at start, the KEK rotates by
re-wrapping, a wrong KEK is refused at start with a clear message."""

from __future__ import annotations

import base64

import bson
import pytest
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from healthflow.common.keywrap import KeyUnwrapError, new_kek
from healthflow.common.mongo import utcnow
from healthflow.devkit.testing import TokenFactory, running_app
from healthflow.notification import store
from healthflow.notification.app import create_app
from healthflow.notification.settings import Settings
from healthflow.notification.vapid import CONTEXT, vapid_pair

BASE = "/api/v1/notifications"


def _with(settings: Settings, keks: str) -> Settings:
    return settings.model_copy(update={"key_encryption_keys": SecretStr(keks)})


def _der(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


async def _start(settings: Settings, tokens: TokenFactory) -> tuple[str, str, bytes]:
    """Start notification on ``settings``: (the public key it serves, the stored KEK id,
    the raw BSON of the stored record)."""
    app = create_app(settings)
    app.state.verifier = tokens.verifier()
    async with running_app(app) as http:
        response = await http.get(f"{BASE}/push/vapid-public-key")
        assert response.status_code == 200, response.text
        db = app.state.runtime.db
        stored = await db[store.SERVICE_KEYS].find_one({"_id": "vapid"})
        raw = await db.get_collection(
            store.SERVICE_KEYS, codec_options=CodecOptions(document_class=RawBSONDocument)
        ).find_one({"_id": "vapid"})
        return response.json()["public_key"], stored["private_key"]["kek_id"], raw.raw


async def test_the_generated_key_is_stored_wrapped(settings: Settings,
                                                   tokens: TokenFactory) -> None:
    public, kek_id, raw = await _start(settings, tokens)
    assert kek_id == "test-kek"
    envelope = bson.decode(raw)["private_key"]
    der = await settings.key_wrapper().unwrap(envelope, CONTEXT)
    assert vapid_pair(der)[1] == public  # the envelope holds the served key's private half
    scalar = serialization.load_der_private_key(der, password=None)
    assert isinstance(scalar, ec.EllipticCurvePrivateKey)
    secret = scalar.private_numbers().private_value.to_bytes(32, "big")
    for encoded in (der, secret, base64.urlsafe_b64encode(der).rstrip(b"="), b"PRIVATE KEY"):
        assert encoded not in raw
    with pytest.raises(KeyUnwrapError, match="another record"):  # bound to its record
        await settings.key_wrapper().unwrap(envelope, CONTEXT | {"record": "service_keys/x"})


async def test_a_clear_key_of_an_older_release_is_wrapped_and_kept(
        settings: Settings, tokens: TokenFactory) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    der = _der(key)
    app = create_app(settings)
    await app.state.runtime.db[store.SERVICE_KEYS].insert_one({
        "_id": "vapid", "private_key": base64.urlsafe_b64encode(der).decode().rstrip("="),
        "created_at": utcnow()})
    public, kek_id, raw = await _start(settings, tokens)
    assert public == vapid_pair(der)[1]  # the same key: browsers' subscriptions stay valid
    assert kek_id == "test-kek" and der not in raw
    assert base64.urlsafe_b64encode(der).rstrip(b"=") not in raw


async def test_the_kek_rotates_and_a_wrong_one_is_refused(settings: Settings,
                                                         tokens: TokenFactory) -> None:
    kek_a, kek_b = new_kek(), new_kek()
    public, kek_id, _ = await _start(_with(settings, f"a:{kek_a}"), tokens)
    assert kek_id == "a"
    rotated, kek_id, _ = await _start(_with(settings, f"b:{kek_b},a:{kek_a}"), tokens)
    assert (rotated, kek_id) == (public, "b")  # re-wrapped at start
    only_b, kek_id, _ = await _start(_with(settings, f"b:{kek_b}"), tokens)
    assert (only_b, kek_id) == (public, "b")
    wrong = new_kek()
    app = create_app(_with(settings, f"b:{wrong}"))
    with pytest.raises(KeyUnwrapError) as refused:
        async with running_app(app):
            pass
    message = str(refused.value)
    assert "does not unwrap with KEK 'b'" in message and wrong not in message
