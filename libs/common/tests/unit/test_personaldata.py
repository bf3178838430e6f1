"""Sealing personal values under a person key (issue 17): bound to subject, field and
key; never shown by a key's repr."""

from __future__ import annotations

import pytest

from healthflow.common.personaldata import (
    SealedValueError,
    new_person_key,
    open_sealed,
    person_key_from_json,
    person_key_json,
    person_keys_url,
    seal,
)
from healthflow.contracts.sealed import SealedValue


def test_a_sealed_value_opens_only_for_its_key_subject_and_field() -> None:
    key = new_person_key()
    sealed = seal(key, "user-1", "email", "ada@example.org")
    assert "ada" not in sealed.model_dump_json()
    assert open_sealed(key, "user-1", "email", sealed) == "ada@example.org"
    for subject, field in (("user-2", "email"), ("user-1", "phone")):
        with pytest.raises(SealedValueError):
            open_sealed(key, subject, field, sealed)
    with pytest.raises(SealedValueError, match="another key"):
        open_sealed(new_person_key(), "user-1", "email", sealed)
    other_bytes = new_person_key()
    with pytest.raises(SealedValueError, match="does not open"):  # same id, other bytes
        open_sealed(type(key)(key.key_id, other_bytes.key), "user-1", "email", sealed)
    tampered = SealedValue(key_id=sealed.key_id, nonce=sealed.nonce,
                           ciphertext=("A" if sealed.ciphertext[0] != "A" else "B")
                           + sealed.ciphertext[1:])
    with pytest.raises(SealedValueError):
        open_sealed(key, "user-1", "email", tampered)


def test_two_seals_of_one_value_differ_and_the_key_round_trips() -> None:
    key = new_person_key()
    assert seal(key, "u", "email", "x@y.z") != seal(key, "u", "email", "x@y.z")  # nonces
    assert person_key_from_json(person_key_json(key)) == key
    assert key.key.hex() not in repr(key) and key.key_id in repr(key)
    with pytest.raises(ValueError):
        person_key_from_json({"key_id": "pk-1", "key": "c2hvcnQ"})


def test_the_route_sits_next_to_the_jwks() -> None:
    assert (person_keys_url("http://auth:8101/.well-known/jwks.json")
            == "http://auth:8101/internal/person-keys")
