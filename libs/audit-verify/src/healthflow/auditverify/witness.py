"""A witness: cosigns a log's checkpoint only once it extends the last one it cosigned.

Cosignatures follow C2SP ``tlog-cosignature`` (v1, Ed25519): a signature line
``— <witness name> base64(key ID ‖ timestamp ‖ signature)`` appended to the
checkpoint note, where key ID = ``SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[:4]``,
timestamp is a big-endian u64 of POSIX seconds, and the signature covers
``"cosignature/v1\\ntime <timestamp>\\n" ‖ checkpoint body``. A witness's verifier
key is ``<name>+<hex key ID>+base64(0x04 ‖ public key)``.

An auditor that requires cosignatures from witnesses the log's operator does not
control is protected from a split view: the log cannot show one history to
the witness and another to the auditor, nor rewrite one the witness saw.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from healthflow.auditverify import note, proofs

COSIGNATURE = 4
"""The signed-note signature type of an Ed25519 ``cosignature/v1``."""


def _message(body: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


@dataclass(frozen=True)
class Witness:
    """A witness's name and Ed25519 key."""

    name: str
    private: Ed25519PrivateKey

    @property
    def public(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.Raw,
                                                      serialization.PublicFormat.Raw)

    @property
    def key_id(self) -> bytes:
        return hashlib.sha256(self.name.encode() + b"\n\x04" + self.public).digest()[:4]

    @property
    def verifier_key(self) -> str:
        encoded = base64.b64encode(bytes([COSIGNATURE]) + self.public).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def cosignature_line(self, body: str, timestamp: int) -> str:
        signature = self.private.sign(_message(body, timestamp))
        payload = self.key_id + timestamp.to_bytes(8, "big") + signature
        return f"\u2014 {self.name} {base64.b64encode(payload).decode()}\n"


def witness_from_seed(name: str, seed: bytes) -> Witness:
    """Raises ValueError unless ``seed`` is 32 bytes."""
    return Witness(name, Ed25519PrivateKey.from_private_bytes(seed))


def verify_cosignature(text: str, key: note.VerifierKey) -> int:
    """The POSIX timestamp of ``key``'s valid cosignature on the note ``text``.

    Raises:
        note.NoteError: no cosignature by ``key``, or one that does not verify.
    """
    body, signatures = note.split_note(text)
    for name, raw in signatures:
        if name != key.name or raw[:4] != key.key_id:
            continue
        if len(raw) != 4 + 8 + 64:
            raise note.NoteError(f"the cosignature by {key.name} is malformed")
        timestamp = int.from_bytes(raw[4:12], "big")
        try:
            Ed25519PublicKey.from_public_bytes(key.public).verify(raw[12:],
                                                                  _message(body, timestamp))
        except InvalidSignature:
            raise note.NoteError(f"the cosignature by witness {key.name} does not "
                                 "verify") from None
        return timestamp
    raise note.NoteError(f"the checkpoint carries no cosignature by witness {key.name}")


class Refused(ValueError):
    """The witness will not cosign: the checkpoint does not extend what it saw."""


ConsistencySource = Callable[[int, int], Sequence[bytes]]
"""``(first, second)`` → the log's RFC 9162 consistency proof between those sizes."""


def cosign(witness: Witness, log_key: note.VerifierKey, text: str, state: Path,
           consistency: ConsistencySource, now: int | None = None) -> str:
    """``text`` with ``witness``'s cosignature appended, once the checkpoint's signature
    by ``log_key`` verifies and it extends the checkpoint kept in ``state`` (the last
    one cosigned; then ``state`` holds this one).

    Raises:
        note.NoteError: the checkpoint or the kept one is not signed by ``log_key``.
        Refused: smaller than the kept one, or not consistent with it.
    """
    latest = note.open_checkpoint(text, log_key)
    if state.exists():
        seen = note.open_checkpoint(state.read_text(encoding="utf-8"), log_key)
        if latest.size < seen.size:
            raise Refused(f"tree size {latest.size} is smaller than the {seen.size} "
                          "already cosigned")
        path = consistency(seen.size, latest.size) if 0 < seen.size < latest.size else []
        try:
            proofs.verify_consistency(seen.size, latest.size, seen.root, latest.root, path)
        except proofs.ProofError as exc:
            raise Refused(f"the checkpoint does not extend the one cosigned at tree size "
                          f"{seen.size}: {exc}") from None
    body, _ = note.split_note(text)
    cosigned = text + witness.cosignature_line(body, int(time.time()) if now is None else now)
    state.parent.mkdir(parents=True, exist_ok=True)
    partial = state.with_suffix(".partial")
    partial.write_text(cosigned, encoding="utf-8")
    partial.replace(state)
    return cosigned
