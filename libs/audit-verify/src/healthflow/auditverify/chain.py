"""Recompute an exported log's hash chain and Merkle leaves, as the audit service
defines them (its ``domain`` and ``merkle`` modules), from the entries alone.

An entry (JSON, as ``GET /api/v1/audit/events/{seq}`` returns it) hashes to
``hex(SHA-256(ASCII(prev_hash) ‖ JCS(view)))`` where ``view`` is
``{"seq", "appended_at" (RFC 3339 UTC, milliseconds, "Z"), "envelope"}`` and JCS is
RFC 8785; entry 0's ``prev_hash`` is 64 zeros. Its Merkle leaf hash is
``SHA-256(0x00 ‖ the 32 bytes of its hash)`` (RFC 9162 §2.1.1).

The hash covers the envelope only; the attributes an entry copies from it
(``event_id`` = the envelope's ``id``, ``type``, ``subject``, ``actor``,
``patientid``, ``source``, and ``time`` to the millisecond) are checked against
it, so an export whose copies were changed does not verify either.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import rfc8785

from healthflow.auditverify.proofs import leaf_hash

GENESIS_HASH = "0" * 64


class ChainError(ValueError):
    """An entry is missing, out of place, or does not hash to what the chain says."""


COPIED_ATTRIBUTES = ("type", "subject", "actor", "patientid", "source")


def _millis(text: Any, name: str = "appended_at") -> str:
    try:
        value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise ChainError(f"{name} {str(text)[:40]!r} is not an RFC 3339 time") from None
    if value.tzinfo is None:
        raise ChainError(f"{name} has no UTC offset")
    value = value.astimezone(UTC)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def entry_hash(prev_hash: str, entry: Mapping[str, Any]) -> str:
    """The chain hash ``entry`` must carry after ``prev_hash``."""
    view = {"seq": entry.get("seq"), "appended_at": _millis(entry.get("appended_at")),
            "envelope": entry.get("envelope")}
    try:
        canonical = rfc8785.dumps(view)
    except (rfc8785.CanonicalizationError, TypeError) as exc:
        raise ChainError(f"entry {entry.get('seq')} cannot be canonicalized: {exc}") from None
    return hashlib.sha256(prev_hash.encode("ascii") + canonical).hexdigest()


def check_chain(entries: Iterable[Mapping[str, Any]]) -> list[bytes]:
    """Check that ``entries`` are seq 0, 1, … with each ``hash`` recomputed from its
    content and its predecessor's hash; return their Merkle leaf hashes.

    Raises:
        ChainError: naming the first entry that breaks the chain.
    """
    leaves: list[bytes] = []
    prev = GENESIS_HASH
    for expected, entry in enumerate(entries):
        if entry.get("seq") != expected:
            raise ChainError(f"entry {expected} is missing (found seq {entry.get('seq')!r})")
        if entry.get("prev_hash") != prev:
            raise ChainError(f"entry {expected}: prev_hash is not entry {expected - 1}'s hash")
        _check_copies(expected, entry)
        recomputed = entry_hash(prev, entry)
        if entry.get("hash") != recomputed:
            raise ChainError(f"entry {expected}: its hash does not match its content")
        leaves.append(leaf_hash(bytes.fromhex(recomputed)))
        prev = recomputed
    return leaves


def _check_copies(seq: int, entry: Mapping[str, Any]) -> None:
    """Raise ChainError when an attribute ``entry`` copies differs from its envelope's."""
    envelope = entry.get("envelope")
    if not isinstance(envelope, Mapping):
        raise ChainError(f"entry {seq}: its envelope is not a JSON object")
    pairs = [("event_id", entry.get("event_id"), envelope.get("id"))]
    pairs += [(name, entry.get(name), envelope.get(name)) for name in COPIED_ATTRIBUTES]
    for name, copied, original in pairs:
        if copied != original:
            raise ChainError(f"entry {seq}: its {name} differs from its envelope's")
    if _millis(entry.get("time"), "time") != _millis(envelope.get("time"), "envelope time"):
        raise ChainError(f"entry {seq}: its time differs from its envelope's")
