"""Open a checkpoint signed as a C2SP signed note, with nothing but the verifier key.

Formats (C2SP ``signed-note`` and ``tlog-checkpoint``):

* verifier key: ``<name>+<key ID, 8 hex>+<base64(0x01 ‖ 32-byte Ed25519 public key)>``,
  where key ID = ``SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]``;
* note: ``<body>\\n<signature lines>``; the body ends in ``\\n`` and holds no empty
  line; a signature line is ``— <name> <base64(key ID ‖ 64-byte signature)>\\n``
  (U+2014); the signature (Ed25519, RFC 8032) covers the body's UTF-8 bytes;
* checkpoint body: origin, tree size (decimal), base64 root hash, then optional
  extension lines.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

_SIZE = re.compile(r"^(0|[1-9][0-9]{0,19})$")


class NoteError(ValueError):
    """The key or the note is malformed, or the signature does not verify."""


@dataclass(frozen=True)
class VerifierKey:
    name: str
    key_id: bytes
    public: bytes


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint whose signature verified: ``root`` is 32 bytes."""

    origin: str
    size: int
    root: bytes


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not base64") from None


def parse_verifier_key(text: str, signature_type: int = 1) -> VerifierKey:
    """Raises NoteError: not ``name+hex+base64``, not an Ed25519 key of ``signature_type``
    (0x01 a log's key, 0x04 a C2SP tlog-cosignature witness's), or a key ID that does
    not match the name and key."""
    parts = text.strip().split("+", 2)  # the base64 key may itself hold "+"
    if len(parts) != 3 or not parts[0] or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
        raise NoteError("a verifier key is <name>+<8 hex digits>+<base64 key>")
    name, key_id = parts[0], bytes.fromhex(parts[1])
    raw = _b64decode(parts[2], "the verifier key")
    if len(raw) != 33 or raw[0] != signature_type:
        raise NoteError(f"the verifier key is not an Ed25519 key of signature type "
                        f"0x{signature_type:02x} (32 bytes)")
    if hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4] != key_id:
        raise NoteError("the verifier key's ID does not match its name and public key")
    return VerifierKey(name, key_id, raw[1:])


def split_note(text: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The body (ending in ``\n``) and the ``(name, key ID ‖ signature)`` of each
    signature line.

    Raises:
        NoteError: not a signed note, or a malformed signature line.
    """
    split = text.rfind("\n\n")
    if split < 0 or not text.endswith("\n"):
        raise NoteError("not a signed note: no blank line before the signatures")
    lines: list[tuple[str, bytes]] = []
    for line in text[split + 2:].splitlines():
        match = re.fullmatch(r"\u2014 (\S+) (\S+)", line)
        if match is None:
            raise NoteError(f"malformed signature line: {line[:80]!r}")
        lines.append((match.group(1), _b64decode(match.group(2), "a signature")))
    return text[:split + 1], lines


def open_note(text: str, key: VerifierKey) -> str:
    """The body of ``text`` once ``key``'s signature on it verifies.

    Raises:
        NoteError: malformed note, no signature by ``key``, or a bad signature.
    """
    body, signatures = split_note(text)
    for name, raw in signatures:
        if name != key.name or raw[:4] != key.key_id:
            continue  # another signer (a witness): not ours to check
        try:
            Ed25519PublicKey.from_public_bytes(key.public).verify(raw[4:], body.encode())
        except InvalidSignature:
            raise NoteError(f"the signature by {key.name} does not verify: the note was "
                            "altered or not signed by this key") from None
        return body
    raise NoteError(f"the note carries no signature by {key.name} "
                    f"(key ID {key.key_id.hex()})")


def open_checkpoint(text: str, key: VerifierKey) -> Checkpoint:
    """The checkpoint in ``text``, once its signature by ``key`` verifies and its origin
    is the key's name.

    Raises:
        NoteError: as :func:`open_note`, or a malformed checkpoint body.
    """
    lines = open_note(text, key).split("\n")[:-1]
    if len(lines) < 3:
        raise NoteError("a checkpoint body has at least three lines")
    origin, size, root_text = lines[:3]
    if origin != key.name:
        raise NoteError(f"the checkpoint is of log {origin!r}, not {key.name!r}")
    if not _SIZE.match(size):
        raise NoteError(f"the checkpoint's tree size {size[:30]!r} is not a decimal number")
    root = _b64decode(root_text, "the checkpoint's root hash")
    if len(root) != 32:
        raise NoteError("the checkpoint's root hash is not 32 bytes")
    return Checkpoint(origin, int(size), root)
