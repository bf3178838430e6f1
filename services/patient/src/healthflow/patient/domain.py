"""Patient rules (no I/O): new profiles, section updates, consents, access purposes.

A profile's id is the patient's user id (the token subject), so other services
refer to a patient by the id they already see.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from healthflow.common.problems import Forbidden, NotFound

CHANNELS = ("sms", "email", "push")

SECTIONS = ("name", "birth_date", "gender", "telecom", "allergies", "conditions",
            "emergency_contacts", "consents")
"""The sections of a chart; ``patient.updated`` names the ones that changed."""


class Purpose(StrEnum):
    """Why someone other than the patient reads a chart (HL7 v3 PurposeOfUse-like)."""

    TREATMENT = "treatment"  # TREAT
    CARE_COORDINATION = "care_coordination"  # HOPERAT
    PATIENT_SUPPORT = "patient_support"  # patient-care staff answering a query
    EMERGENCY = "emergency"  # ETREAT


class AccessorRole(StrEnum):
    STAFF = "staff"
    TREATING_DOCTOR = "treating_doctor"


class ProfileNotFound(NotFound):
    title, slug = "Patient Not Found", "patient-not-found"


class NotTreating(Forbidden):
    title, slug = "Not A Treating Doctor", "not-treating"


def new_profile(user_id: str, *, full_name: str | None, email: str | None,
                phone: str | None, now: datetime) -> dict[str, Any]:
    """The profile document of a newly registered patient (no consents given yet)."""
    return {
        "_id": user_id,
        "name": {"text": full_name, "given": [], "family": None},
        "birth_date": None,
        "gender": None,
        "telecom": {"email": email, "phone": phone},
        "allergies": [],
        "conditions": [],
        "emergency_contacts": [],
        "consents": {c: {"granted": False, "at": None} for c in CHANNELS},
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }


ERASED_DEMOGRAPHICS: dict[str, Any] = {
    "name": {"text": None, "given": [], "family": None}, "name_key": "", "birth_date": None,
    "gender": None, "telecom": {"email": None, "phone": None}, "emergency_contacts": []}
"""What an erased patient's profile keeps of the sections that identify a person (or
their contacts): nothing. Allergies, conditions and consents stay, keyed by the id only
(GDPR art. 17(3)(c): health data kept for care)."""


def with_ids(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """List items (allergies, conditions) with an ``id`` each (kept if given)."""
    return [{**item, "id": item.get("id") or str(uuid.uuid4())} for item in items]


@dataclass(frozen=True)
class ConsentChange:
    channel: str
    granted: bool
    at: datetime


@dataclass(frozen=True)
class Update:
    """What a patch changes: ``$set`` fields, section names, consent changes."""

    fields: dict[str, Any]
    sections: list[str]
    consent_changes: list[ConsentChange]


def plan_update(profile: Mapping[str, Any], patch: Mapping[str, Any], now: datetime) -> Update:
    """Compare ``patch`` (JSON form, only the given sections) with ``profile``.

    Sections equal to what is stored are not "changed". For consents only the
    channels whose boolean flips change (and get ``at = now``, aware UTC).
    """
    fields: dict[str, Any] = {}
    sections: list[str] = []
    changes: list[ConsentChange] = []
    for section in SECTIONS:
        if section not in patch:
            continue
        value = patch[section]
        if section == "consents":
            current = profile.get("consents") or {}
            for channel in CHANNELS:
                wanted = (value or {}).get(channel)
                if wanted is None:
                    continue
                if bool(current.get(channel, {}).get("granted")) != wanted:
                    fields[f"consents.{channel}"] = {"granted": wanted, "at": now}
                    changes.append(ConsentChange(channel, wanted, now))
            if changes:
                sections.append(section)
            continue
        if section in ("allergies", "conditions"):
            value = with_ids(value or [])
        if profile.get(section) != value:
            fields[section] = value
            sections.append(section)
    if fields:
        fields["updated_at"] = now
    return Update(fields, sections, changes)


def default_purpose(role: AccessorRole) -> Purpose:
    return Purpose.TREATMENT if role is AccessorRole.TREATING_DOCTOR else Purpose.PATIENT_SUPPORT
