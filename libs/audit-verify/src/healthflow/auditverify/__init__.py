"""``healthflow-audit-verify``: check a HealthFlow audit log with nothing but its public key.

Installable on its own (no HealthFlow service code): :mod:`.proofs` (RFC 9162
proof verification), :mod:`.note` (C2SP signed notes and checkpoints),
:mod:`.chain` (the hash chain and Merkle root of an export), :mod:`.cli`.
"""
