"""The verification decision an admin makes about a hospital or a practitioner's licence.

One state machine for both: ``pending`` → ``verified`` | ``rejected``; a decided
status is final (a changed licence goes back to ``pending`` by the doctor
service's own rule). FHIR: ``Organization.active`` and a practitioner's
qualification are true only once verified. Pure: no HTTP, no database.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from healthflow.common.problems import Conflict


class Verification(StrEnum):
    """The values every verified kind of thing uses for its status."""

    PENDING = "pending"
    VERIFIED = "verified"
    REJECTED = "rejected"


DECISIONS: dict[Verification, frozenset[Verification]] = {
    Verification.PENDING: frozenset({Verification.VERIFIED, Verification.REJECTED}),
    Verification.VERIFIED: frozenset(),
    Verification.REJECTED: frozenset(),
}
"""Which decisions each status allows: only a pending one is decided."""


def decide(current: str, target: str, *, what: str) -> Verification:
    """The status after deciding ``what`` (e.g. ``"hospital"``, ``"licence"``) to ``target``.

    ``current`` and ``target`` are status values (any ``StrEnum`` with these values).

    Raises:
        Conflict: (409, with ``current_status``) when ``current`` is already decided,
            e.g. verifying twice or verifying what was rejected.
    """
    now, wanted = Verification(current), Verification(target)
    if wanted not in DECISIONS[now]:
        raise Conflict(f"a {now.value} {what} cannot become {wanted.value}",
                       current_status=now.value)
    return wanted


def decision_fields(target: str, *, at: datetime, by: str,
                    reason: str | None = None) -> dict[str, object]:
    """The document fields a decision sets: status, when (``at``, aware UTC), by whom, and
    for a rejection its reason."""
    fields: dict[str, object] = {"status": Verification(target).value, "decided_at": at,
                                 "decided_by": by, "updated_at": at}
    if Verification(target) is Verification.REJECTED:
        fields["rejection_reason"] = reason
    return fields


def can_view(status: str, owner: str, *, subject: str | None, is_verifier: bool) -> bool:
    """Verified things are public; the others only to their owner and to verifiers."""
    if Verification(status) is Verification.VERIFIED:
        return True
    return is_verifier or (subject is not None and subject == owner)
