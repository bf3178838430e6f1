"""Envelope encryption of stored private keys (issue 17): AES-256-GCM data keys wrapped
with a KEK (RFC 3394), bound to their record, re-wrapped when the KEK rotates."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from healthflow.common.keywrap import (
    DEVELOPMENT_KEK_ID,
    KeyEncryptionSettings,
    KeyUnwrapError,
    LocalKeyWrapper,
    new_kek,
    parse_keks,
    stale,
)
from healthflow.common.settings import ConfigurationError, load_settings
from healthflow.devkit.testing import PRODUCTION_ENV

SECRET = b"-----BEGIN PRIVATE KEY----- not really"
RECORD_A = {"service": "test", "record": "keys/a"}
RECORD_B = {"service": "test", "record": "keys/b"}


def _raw(kek: str) -> bytes:
    return base64.urlsafe_b64decode(kek + "=" * (-len(kek) % 4))


async def test_wrap_round_trips_and_records_the_kek() -> None:
    wrapper = LocalKeyWrapper({"a": os.urandom(32)}, "a")
    envelope = await wrapper.wrap(SECRET, RECORD_A)
    assert envelope["kek_id"] == "a" and envelope["kek_alg"] == "A256KW"
    assert envelope["alg"] == "A256GCM" and len(envelope["nonce"]) == 12
    assert SECRET not in envelope["ciphertext"]
    assert await wrapper.unwrap(envelope, RECORD_A) == SECRET
    again = await wrapper.wrap(SECRET, RECORD_A)
    assert again["wrapped_key"] != envelope["wrapped_key"]  # a data key per record


async def test_an_envelope_does_not_open_on_another_record() -> None:
    wrapper = LocalKeyWrapper({"a": os.urandom(32)}, "a")
    envelope = await wrapper.wrap(SECRET, RECORD_A)
    with pytest.raises(KeyUnwrapError, match="another record"):
        await wrapper.unwrap(envelope, RECORD_B)
    tampered = envelope | {"ciphertext": bytes(len(envelope["ciphertext"]))}
    with pytest.raises(KeyUnwrapError):
        await wrapper.unwrap(tampered, RECORD_A)


async def test_rotation_rewraps_only_the_data_key() -> None:
    kek_a, kek_b = os.urandom(32), os.urandom(32)
    old = LocalKeyWrapper({"a": kek_a}, "a")
    envelope = await old.wrap(SECRET, RECORD_A)
    rotated = LocalKeyWrapper({"b": kek_b, "a": kek_a}, "b")
    assert stale(rotated, envelope)
    rewrapped = await rotated.rewrap(envelope, RECORD_A)
    assert rewrapped["kek_id"] == "b" and not stale(rotated, rewrapped)
    assert rewrapped["ciphertext"] == envelope["ciphertext"]
    assert await LocalKeyWrapper({"b": kek_b}, "b").unwrap(rewrapped, RECORD_A) == SECRET
    with pytest.raises(KeyUnwrapError, match="'a', which is not configured"):
        await LocalKeyWrapper({"b": kek_b}, "b").unwrap(envelope, RECORD_A)
    with pytest.raises(KeyUnwrapError, match="another record"):
        await rotated.rewrap(envelope, RECORD_B)


async def test_a_wrong_kek_under_the_right_id_is_named_not_leaked() -> None:
    envelope = await LocalKeyWrapper({"a": os.urandom(32)}, "a").wrap(SECRET, RECORD_A)
    wrong = os.urandom(32)
    with pytest.raises(KeyUnwrapError) as refused:
        await LocalKeyWrapper({"a": wrong}, "a").unwrap(envelope, RECORD_A)
    message = str(refused.value)
    assert "does not unwrap with KEK 'a'" in message and "record=keys/a" in message
    assert wrong.hex() not in message and base64.urlsafe_b64encode(wrong).decode() not in message
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_parse_keks_reads_ids_and_bare_keys() -> None:
    one, two = new_kek(), new_kek()
    keks, current = parse_keks(f"new:{one}\n{two}", "KEY_ENCRYPTION_KEYS")
    assert current == "new" and keks["new"] == _raw(one)
    assert next(k for k in keks if k != "new").startswith("kek-")
    for bad in ("", "a:short", f"a:{one},a:{two}"):
        with pytest.raises(ConfigurationError, match="KEY_ENCRYPTION_KEYS") as refused:
            parse_keks(bad, "KEY_ENCRYPTION_KEYS")
        assert one not in str(refused.value)


def test_the_kek_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    kek = new_kek()
    from_env = KeyEncryptionSettings(key_encryption_keys=SecretStr(f"env:{kek}")).key_wrapper()
    assert from_env.current_kek_id == "env"
    path = tmp_path / "kek"
    path.write_text(f"file:{kek}\n", encoding="utf-8")
    from_file = KeyEncryptionSettings(key_encryption_keys_file=str(path)).key_wrapper()
    assert from_file.current_kek_id == "file"
    assert DEVELOPMENT_KEK_ID in from_file.kek_ids  # development: the built-in stays readable
    with pytest.raises(ConfigurationError, match="KEY_ENCRYPTION_KEYS_FILE"):
        KeyEncryptionSettings(key_encryption_keys_file=str(tmp_path / "missing")).key_wrapper()
    assert KeyEncryptionSettings().key_wrapper().current_kek_id == DEVELOPMENT_KEK_ID


def test_production_refuses_to_start_without_a_kek(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    for name, value in PRODUCTION_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KEY_ENCRYPTION_KEYS", raising=False)
    monkeypatch.delenv("KEY_ENCRYPTION_KEYS_FILE", raising=False)
    with pytest.raises(ConfigurationError, match="KEY_ENCRYPTION_KEYS: production needs"):
        load_settings(KeyEncryptionSettings)
    monkeypatch.setenv("KEY_ENCRYPTION_KEYS", "prod:not-a-key")
    with pytest.raises(ConfigurationError, match="not 32 bytes"):
        load_settings(KeyEncryptionSettings)
    path = tmp_path / "kek"
    path.write_text(f"prod:{new_kek()}", encoding="utf-8")
    monkeypatch.setenv("KEY_ENCRYPTION_KEYS_FILE", str(path))
    wrapper = load_settings(KeyEncryptionSettings).key_wrapper()
    assert wrapper.kek_ids == ("prod",)  # production never reads with the built-in KEK
