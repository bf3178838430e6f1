"""Personal values in event payloads, sealed under their person's data key.

Events and the audit log carry identifiers; a value that identifies a person (an
e-mail address, a phone number, a name) travels only as a :class:`SealedValue`:
AES-256-GCM (NIST SP 800-38D) under the *person key* of the subject, which the
account owner (auth) keeps and hands to the services that need the value
(``GET /internal/person-keys/{user_id}``). Erasing the person destroys the key
(crypto-shredding): every copy of the event, in queues, dead letters and the
append-only audit log, stays well formed and hash-verifiable, but no longer opens.

The GCM associated data binds a value to its subject and field (see
:func:`healthflow.common.personaldata.associated_data`), so a sealed e-mail
address copied into another person's event, or into another field, does not open.
Sealing and opening live in :mod:`healthflow.common.personaldata`; this module
is the wire shape only (pydantic, no cryptography).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SealedValue(BaseModel):
    """One personal value sealed under a person key.

    ``key_id`` names the person key (not the person); ``nonce`` is the 96-bit GCM
    nonce and ``ciphertext`` the ciphertext with its 128-bit tag appended, both
    base64url without padding.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str = Field(min_length=1, max_length=64)
    nonce: str = Field(min_length=16, max_length=16)
    ciphertext: str = Field(min_length=22, max_length=4096)
