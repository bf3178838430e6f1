"""Response models of the audit API (it takes no request bodies)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class AuditEntry(BaseModel):
    """One log entry. Times are aware UTC; hashes are 64 lowercase hex characters."""

    seq: int = Field(description="0-based position in the chain")
    event_id: str
    type: str
    subject: str | None = None
    actor: str | None = None
    patientid: str | None = None
    source: str
    time: datetime = Field(description="the event's time (ms precision)")
    appended_at: datetime = Field(description="when the entry was appended (ms precision)")
    prev_hash: str
    hash: str = Field(description="SHA-256(prev_hash ‖ RFC 8785 bytes of the hash view)")
    envelope: dict[str, Any] = Field(description="the CloudEvents envelope as received")


class ChainHeadOut(BaseModel):
    """The last entry of the chain."""

    seq: int | None = Field(description="seq of the last entry; null while the log is empty")
    hash: str = Field(description="hash of the last entry; 64 zeros while the log is empty")
    length: int = Field(description="number of entries")


class VerificationOut(BaseModel):
    """Outcome of recomputing the chain over ``from_seq..to_seq``."""

    ok: bool
    checked: int = Field(description="entries found intact before the first break")
    first_broken_index: int | None = Field(
        description="seq of the first missing or altered entry; null when ok"
    )
    reason: str | None = Field(default=None, description="which rule that entry broke")
    from_seq: int
    to_seq: int | None = Field(description="last seq checked; null when the log is empty")
    head_seq: int | None
    head_hash: str


class InclusionProofOut(BaseModel):
    """RFC 9162 §2.1.3 inclusion proof of entry ``seq`` in the tree of ``tree_size`` entries.

    Hashes are standard base64 (RFC 4648 §4) of 32 bytes, as in a checkpoint.
    """

    seq: int = Field(description="the entry, i.e. the leaf index")
    tree_size: int
    leaf_hash: str = Field(description="SHA-256(0x00 ‖ the entry's 32-byte hash)")
    audit_path: list[str] = Field(description="PATH(seq, D[tree_size]), deepest first")


class ConsistencyProofOut(BaseModel):
    """RFC 9162 §2.1.4 proof that the tree of ``second`` entries extends that of ``first``.

    Hashes are standard base64 (RFC 4648 §4) of 32 bytes, as in a checkpoint.
    """

    first: int
    second: int
    consistency_path: list[str] = Field(description="PROOF(first, D[second])")


class CheckpointOut(BaseModel):
    """A signed checkpoint (C2SP tlog-checkpoint in a signed note)."""

    tree_size: int = Field(description="entries 0..tree_size-1 are covered")
    root_hash: str = Field(description="MTH of those entries, standard base64 of 32 bytes")
    key_id: str = Field(description="the signing key's ID, 8 hex digits")
    signed_at: datetime
    note: str = Field(description="the signed note: origin, size, root, blank line, "
                      "signature line(s); verify it with the published key")


class CheckpointKeyOut(BaseModel):
    """The key that signs checkpoints (Ed25519, RFC 8032)."""

    name: str = Field(description="the key's name: the checkpoint origin")
    key_id: str = Field(description="SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4], hex")
    algorithm: str
    public_key: str = Field(description="the 32-byte public key, standard base64")
    verifier_key: str = Field(description="<name>+<key_id>+base64(0x01 ‖ public key), "
                              "the C2SP signed-note verifier key")


class LoginFailureBurstOut(BaseModel):
    """A run of failed logins for one account or client address (times aware UTC)."""

    key: str = Field(description="the user id, or the client address with by=client_ip")
    count: int = Field(description="failed logins in the run")
    first: datetime
    last: datetime
    seqs: list[int] = Field(description="the entries (``/events/{seq}``), ascending time")
