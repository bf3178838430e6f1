"""Checkpoints as signed notes (pure: no I/O), per C2SP ``tlog-checkpoint`` and ``signed-note``.

A checkpoint's **body** is three lines, each ending in ``\\n``::

    <origin>                       the log's name (Settings.checkpoint_origin)
    <tree size>                    decimal, no leading zeros: entries 0..size-1
    <root hash>                    standard base64 (RFC 4648 §4) of MTH(D[size])

The **signed note** is the body, an empty line, and one signature line per
signer: ``"— " <key name> " " base64(key ID ‖ Ed25519 signature of the body)``
(U+2014 EM DASH, a space). The key's name is the origin; its **key ID** is the
first 4 bytes of ``SHA-256(name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key)`` (0x01:
the Ed25519 signature type); the published **verifier key** is
``<name>+<key ID as 8 hex digits>+base64(0x01 ‖ public key)``. Ed25519 is
RFC 8032 (pure, no pre-hash).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ED25519 = b"\x01"
"""The signed-note signature type of Ed25519."""

EM_DASH = "\u2014"


def b64(raw: bytes) -> str:
    """Standard base64 with padding (RFC 4648 §4)."""
    return base64.b64encode(raw).decode("ascii")


def b64url(raw: bytes) -> str:
    """base64url without padding (RFC 4648 §5), as the signing seed is configured."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class NoteSigner:
    """An Ed25519 key that signs notes under ``name``."""

    name: str
    private: Ed25519PrivateKey

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.Raw,
                                                      serialization.PublicFormat.Raw)

    @property
    def key_id(self) -> bytes:
        """``SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]``."""
        return hashlib.sha256(self.name.encode() + b"\n" + ED25519 + self.public_raw
                              ).digest()[:4]

    @property
    def verifier_key(self) -> str:
        """``<name>+<hex key ID>+<base64(0x01 ‖ public key)>`` (the published form)."""
        return f"{self.name}+{self.key_id.hex()}+{b64(ED25519 + self.public_raw)}"

    def signature_line(self, body: str) -> str:
        """``— <name> <base64(key ID ‖ signature)>\\n`` over the UTF-8 ``body``."""
        signature = self.private.sign(body.encode("utf-8"))
        return f"{EM_DASH} {self.name} {b64(self.key_id + signature)}\n"


def signer_from_seed(name: str, seed: bytes) -> NoteSigner:
    """Raises ValueError unless ``seed`` is 32 bytes."""
    return NoteSigner(name, Ed25519PrivateKey.from_private_bytes(seed))


def new_seed() -> bytes:
    """32 bytes from the operating system's CSPRNG: an Ed25519 private key."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption())


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    """The three checkpoint lines for the tree of ``size`` entries with ``root`` (32 bytes)."""
    return f"{origin}\n{size}\n{b64(root)}\n"


def sign_checkpoint(signer: NoteSigner, size: int, root: bytes) -> str:
    """The signed note of the checkpoint (body, empty line, the signature line)."""
    body = checkpoint_body(signer.name, size, root)
    return f"{body}\n{signer.signature_line(body)}"


def open_own_checkpoint(signer: NoteSigner, text: str) -> tuple[int, bytes] | None:
    """``(size, root)`` of a checkpoint ``signer`` signed; ``None`` when ``text`` is not
    one (malformed, another key, or a signature that does not verify)."""
    split = text.rfind("\n\n")
    body = text[:split + 1]
    lines = body.split("\n")
    if split < 0 or len(lines) < 4 or lines[0] != signer.name or not lines[1].isdigit():
        return None
    prefix = f"{EM_DASH} {signer.name} "
    for line in text[split + 2:].splitlines():
        if not line.startswith(prefix):
            continue
        try:
            raw = base64.b64decode(line[len(prefix):], validate=True)
            if raw[:4] != signer.key_id:
                continue
            signer.private.public_key().verify(raw[4:], body.encode("utf-8"))
            root = base64.b64decode(lines[2], validate=True)
        except (InvalidSignature, ValueError):
            return None
        return int(lines[1]), root
    return None
