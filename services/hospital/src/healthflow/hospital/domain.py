"""Hospital rules: verification state machine, normalisation, time zones, visibility.

No FastAPI, no MongoDB: every function here is pure and tested alone
(``tests/unit``). Errors are :mod:`healthflow.common.errors` problems, so a
route that calls a rule needs no translation.

Terms follow FHIR R4/R5: a hospital is an ``Organization`` (with an address, a
``ContactPoint`` list and a ``Location`` position), a department is a
sub-``Organization`` (``partOf`` the hospital), a staff membership is a
``PractitionerRole``-like assignment of a user to a department.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from enum import StrEnum

from healthflow.common import verification
from healthflow.common.problems import Conflict

SORT_SEPARATOR = "\x1f"
"""Joins a normalised name and an id into one unique, ordered sort key (ASCII unit separator)."""


class HospitalStatus(StrEnum):
    """Where a hospital is in its verification (FHIR ``Organization.active`` iff verified)."""

    PENDING = "pending"
    VERIFIED = "verified"
    REJECTED = "rejected"


class StaffRole(StrEnum):
    """Roles a user can hold inside a hospital (a subset of the platform roles)."""

    DOCTOR = "doctor"
    NURSE = "nurse"
    RECEPTIONIST = "receptionist"
    RADIOGRAPHER = "radiographer"
    ACCOUNTANT = "accountant"
    PATIENT_CARE = "patient_care"
    PARAMEDIC = "paramedic"


# pending → verified | rejected; both outcomes are final (a rejected hospital
# registers again, so the decision stays in the history of the first record).
def transition(current: HospitalStatus | str, target: HospitalStatus) -> HospitalStatus:
    """The new status after a verification decision (the shared machine of
    :mod:`healthflow.common.verification`).

    Raises:
        Conflict: (409) when ``target`` is not reachable from ``current`` — e.g. verifying
            a hospital twice, or verifying one that was rejected.
    """
    return HospitalStatus(verification.decide(current, target, what="hospital"))


can_view = verification.can_view
"""Verified hospitals are public; others only to their registrant and to verifiers."""
decision_fields = verification.decision_fields
"""The fields a verification decision sets."""


def ensure_accepts_changes(status: HospitalStatus | str) -> None:
    """Departments and staff may be added while pending or verified, never once rejected.

    Raises:
        Conflict: (409) for a rejected hospital.
    """
    if HospitalStatus(status) is HospitalStatus.REJECTED:
        raise Conflict("the hospital was rejected; register it again to make changes")


def normalise(text: str) -> str:
    """A case- and width-insensitive form for matching and sorting (NFKC, casefold, trimmed).

    ``"  Charité  BERLIN"`` → ``"charité berlin"`` (inner runs of spaces collapse to one).
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def sort_key(name: str, id_: str) -> str:
    """The unique pagination key ``<normalised name><US><id>`` (ordered by name, then id)."""
    return f"{normalise(name)}{SORT_SEPARATOR}{id_}"


def clean_codes(values: Iterable[str]) -> list[str]:
    """Lower-cased, trimmed, de-duplicated codes in first-seen order.

    ``["ICU", " icu", "cardiology"]`` → ``["icu", "cardiology"]``.
    """
    seen: dict[str, None] = {}
    for value in values:
        seen.setdefault(value.strip().lower(), None)
    return list(seen)


