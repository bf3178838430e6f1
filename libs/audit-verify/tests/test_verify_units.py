"""The offline verifier's parts with keys and notes made here (no HealthFlow service)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from healthflow.auditverify import chain, note, proofs, witness
from healthflow.auditverify.cli import main
from healthflow.auditverify.witness_cli import main as witness_main

NAME = "example.org/log"


def _key() -> tuple[Ed25519PrivateKey, str, bytes]:
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
    key_id = hashlib.sha256(NAME.encode() + b"\n\x01" + public).digest()[:4]
    encoded = base64.b64encode(b"\x01" + public).decode()
    vkey = f"{NAME}+{key_id.hex()}+{encoded}"
    return private, vkey, key_id


def _sign(private: Ed25519PrivateKey, key_id: bytes, body: str, name: str = NAME) -> str:
    signature = base64.b64encode(key_id + private.sign(body.encode())).decode()
    return f"{body}\n\u2014 {name} {signature}\n"


def test_a_checkpoint_opens_with_its_key_among_witness_signatures() -> None:
    private, vkey, key_id = _key()
    root = hashlib.sha256(b"root").digest()
    body = f"{NAME}\n7\n{base64.b64encode(root).decode()}\n"
    witness, _, witness_id = _key()
    text = _sign(private, key_id, body) + _sign(witness, witness_id, body,
                                                "witness.example")[len(body) + 1:]
    checkpoint = note.open_checkpoint(text, note.parse_verifier_key(vkey))
    assert (checkpoint.origin, checkpoint.size, checkpoint.root) == (NAME, 7, root)


def test_malformed_keys_and_notes_are_refused() -> None:
    private, vkey, key_id = _key()
    name, hex_id, key = vkey.split("+", 2)
    with pytest.raises(note.NoteError, match="ID does not match"):
        note.parse_verifier_key(f"other.org+{hex_id}+{key}")
    with pytest.raises(note.NoteError, match="verifier key is"):
        note.parse_verifier_key(name)
    parsed = note.parse_verifier_key(vkey)
    with pytest.raises(note.NoteError, match="no blank line"):
        note.open_note(f"{NAME}\n1\n", parsed)
    with pytest.raises(note.NoteError, match="decimal"):
        note.open_checkpoint(_sign(private, key_id, f"{NAME}\n01\nAAAA\n"), parsed)
    with pytest.raises(note.NoteError, match="32 bytes"):
        note.open_checkpoint(_sign(private, key_id, f"{NAME}\n1\nAAAA\n"), parsed)


def _entries(count: int) -> list[dict[str, object]]:
    entries = []
    prev = chain.GENESIS_HASH
    for seq in range(count):
        envelope = {"id": f"e{seq}", "type": "record.accessed", "source": "/services/record",
                    "subject": f"record/r-{seq}", "actor": "user/u-1", "patientid": "p-1",
                    "time": "2026-11-21T10:00:00.5Z", "data": {"n": seq}}
        entry = {"seq": seq, "appended_at": "2026-11-21T10:00:00.123000+00:00",
                 "event_id": envelope["id"], "type": envelope["type"],
                 "subject": envelope["subject"], "actor": envelope["actor"],
                 "patientid": envelope["patientid"], "source": envelope["source"],
                 "time": "2026-11-21T10:00:00.500000+00:00", "envelope": envelope,
                 "prev_hash": prev}
        entry["hash"] = prev = chain.entry_hash(prev, entry)
        entries.append(entry)
    return entries


def test_the_chain_names_the_first_broken_entry() -> None:
    entries: list[dict[str, Any]] = _entries(4)
    leaves = chain.check_chain(entries)
    assert leaves[0] == proofs.leaf_hash(bytes.fromhex(entries[0]["hash"]))
    entries[2]["envelope"]["data"] = {"n": 99}
    with pytest.raises(chain.ChainError, match="entry 2: its hash"):
        chain.check_chain(entries)
    with pytest.raises(chain.ChainError, match="entry 1 is missing"):
        chain.check_chain([entries[0], entries[2]])


@pytest.mark.parametrize(("name", "value"), [
    ("actor", "user/someone-else"), ("patientid", "p-2"), ("type", "record.updated"),
    ("subject", "record/r-9"), ("source", "/services/other"), ("event_id", "e9"),
    ("time", "2026-11-21T09:00:00.500000+00:00")])
def test_a_copied_attribute_that_differs_from_the_envelope_breaks_the_chain(
        name: str, value: str) -> None:
    entries: list[dict[str, Any]] = _entries(3)
    entries[1][name] = value  # the hash covers the envelope only: it still matches
    with pytest.raises(chain.ChainError, match=f"entry 1: its {name} differs"):
        chain.check_chain(entries)


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--key", "nothing", "--checkpoint", "/nonexistent", "--entries", "/none"])
    assert exited.value.code == 2
    assert "verifier key is" in capsys.readouterr().err


def test_a_cosignature_verifies_and_binds_its_timestamp(tmp_path: Path) -> None:
    private, vkey, key_id = _key()
    log_key = note.parse_verifier_key(vkey)
    root = proofs.root_of([proofs.leaf_hash(b"a")])
    text = _sign(private, key_id, f"{NAME}\n1\n{base64.b64encode(root).decode()}\n")
    me = witness.witness_from_seed("w.example", Ed25519PrivateKey.generate().private_bytes_raw())
    cosigned = witness.cosign(me, log_key, text, tmp_path / "state", lambda a, b: [], now=1700)
    key = note.parse_verifier_key(me.verifier_key, witness.COSIGNATURE)
    assert witness.verify_cosignature(cosigned, key) == 1700
    payload = cosigned.splitlines()[-1].split(" ")[2]
    raw = base64.b64decode(payload)
    shifted = raw[:4] + (1701).to_bytes(8, "big") + raw[12:]
    forged = cosigned.replace(payload, base64.b64encode(shifted).decode())
    with pytest.raises(note.NoteError, match="does not verify"):
        witness.verify_cosignature(forged, key)
    with pytest.raises(note.NoteError, match="signature type 0x04"):
        note.parse_verifier_key(vkey, witness.COSIGNATURE)
    smaller = _sign(private, key_id, f"{NAME}\n0\n{base64.b64encode(root).decode()}\n")
    with pytest.raises(witness.Refused, match="smaller"):
        witness.cosign(me, log_key, smaller, tmp_path / "state", lambda a, b: [])


def test_a_new_witness_seed_is_owner_only_and_never_replaces_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed = tmp_path / "witness.seed"
    witness_main(["--name", "witness.example", "--seed-file", str(seed), "--new-seed"])
    assert seed.stat().st_mode & 0o777 == 0o600
    kept = seed.read_bytes()
    with pytest.raises(SystemExit) as refused:
        witness_main(["--name", "witness.example", "--seed-file", str(seed), "--new-seed"])
    assert refused.value.code == 2 and "cannot create the seed file" in capsys.readouterr().err
    assert seed.read_bytes() == kept
