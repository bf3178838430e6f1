"""Request and response models of the patient API, in FHIR R4 terms.

* ``name``, ``birth_date``, ``gender`` — FHIR ``Patient.name`` (HumanName),
  ``Patient.birthDate`` (a date, no time zone), ``Patient.gender``
  (AdministrativeGender).
* ``telecom`` — contact points: e-mail and phone (E.164, e.g. ``+4930123456``).
* ``allergies`` — FHIR ``AllergyIntolerance``: ``code`` (substance: free text plus
  optional coding, e.g. SNOMED CT or RxNorm), ``criticality``, ``clinical_status``,
  ``reactions`` (manifestation text, severity).
* ``conditions`` — FHIR ``Condition``: ``code`` (free text plus optional coding,
  e.g. ICD-10 or SNOMED CT), ``clinical_status``, optional ``onset_date``.
* ``emergency_contacts`` — FHIR ``Patient.contact``.
* ``consents`` — communication consent per channel (sms, email, push): a
  boolean and the aware UTC time it was given or withdrawn.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from healthflow.common.types import AdministrativeGender

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
PHONE_PATTERN = r"^\+[1-9][0-9]{6,14}$"


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Criticality(StrEnum):
    """FHIR ``AllergyIntoleranceCriticality``."""

    LOW = "low"
    HIGH = "high"
    UNABLE_TO_ASSESS = "unable-to-assess"


class AllergyClinicalStatus(StrEnum):
    """FHIR ``AllergyIntolerance.clinicalStatus`` codes."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    RESOLVED = "resolved"


class ConditionClinicalStatus(StrEnum):
    """FHIR ``Condition.clinicalStatus`` codes."""

    ACTIVE = "active"
    RECURRENCE = "recurrence"
    RELAPSE = "relapse"
    INACTIVE = "inactive"
    REMISSION = "remission"
    RESOLVED = "resolved"


class ReactionSeverity(StrEnum):
    """FHIR ``AllergyIntoleranceSeverity``."""

    MILD = "mild"
    MODERATE = "moderate"
    SEVERE = "severe"


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"
    PUSH = "push"


class HumanName(Request):
    """FHIR ``HumanName``: ``text`` as written, or ``given`` names and ``family``."""

    text: str | None = Field(default=None, max_length=200)
    given: list[str] = Field(default_factory=list, max_length=5)
    family: str | None = Field(default=None, max_length=100)


class Telecom(Request):
    email: str | None = Field(default=None, max_length=254, pattern=EMAIL_PATTERN)
    phone: str | None = Field(default=None, pattern=PHONE_PATTERN, description="E.164")


class CodeableConcept(Request):
    """Free ``text`` with an optional coding (``system`` URI, ``code``)."""

    text: str = Field(min_length=1, max_length=200)
    code: str | None = Field(default=None, max_length=64)
    system: str | None = Field(default=None, max_length=200,
                               description="e.g. http://snomed.info/sct")


class Reaction(Request):
    manifestation: str = Field(min_length=1, max_length=200)
    severity: ReactionSeverity | None = None


class AllergyIntolerance(Request):
    """An allergy or intolerance; ``id`` is assigned when omitted."""

    id: str | None = Field(default=None, max_length=64)
    code: CodeableConcept
    criticality: Criticality | None = None
    clinical_status: AllergyClinicalStatus = AllergyClinicalStatus.ACTIVE
    reactions: list[Reaction] = Field(default_factory=list, max_length=10)


class Condition(Request):
    """A condition, problem or diagnosis; ``id`` is assigned when omitted."""

    id: str | None = Field(default=None, max_length=64)
    code: CodeableConcept
    clinical_status: ConditionClinicalStatus = ConditionClinicalStatus.ACTIVE
    onset_date: date | None = None


class EmergencyContact(Request):
    """FHIR ``Patient.contact`` (relationship free text, e.g. "mother")."""

    name: str = Field(min_length=1, max_length=200)
    relationship: str | None = Field(default=None, max_length=50)
    phone: str | None = Field(default=None, pattern=PHONE_PATTERN)
    email: str | None = Field(default=None, max_length=254, pattern=EMAIL_PATTERN)


class ConsentsPatch(Request):
    """Consents to change: ``true`` gives, ``false`` withdraws, omitted leaves as is."""

    sms: bool | None = None
    email: bool | None = None
    push: bool | None = None


NOT_NULL_SECTIONS = ("name", "telecom", "allergies", "conditions", "emergency_contacts",
                     "consents")
"""Sections every chart has: ``null`` cannot replace them (``{}`` or ``[]`` empties one);
``birth_date`` and ``gender`` may be cleared with ``null``."""


class PatientPatch(Request):
    """A partial update: every given section replaces that section whole."""

    name: HumanName | None = None
    birth_date: date | None = None
    gender: AdministrativeGender | None = None
    telecom: Telecom | None = None
    allergies: list[AllergyIntolerance] | None = Field(default=None, max_length=100)
    conditions: list[Condition] | None = Field(default=None, max_length=100)
    emergency_contacts: list[EmergencyContact] | None = Field(default=None, max_length=5)
    consents: ConsentsPatch | None = None

    @model_validator(mode="after")
    def _sections_not_null(self) -> PatientPatch:
        nulled = [n for n in NOT_NULL_SECTIONS
                  if n in self.model_fields_set and getattr(self, n) is None]
        if nulled:
            raise ValueError(f"{', '.join(nulled)} cannot be null (send {{}} or [] to empty it)")
        return self


class Consent(BaseModel):
    granted: bool
    at: datetime | None = Field(description="when it was given or withdrawn (aware UTC)")


class PatientOut(BaseModel):
    """The chart (FHIR ``Patient`` plus allergies, conditions and consents)."""

    id: str
    name: HumanName
    birth_date: date | None
    gender: AdministrativeGender | None
    telecom: Telecom
    allergies: list[AllergyIntolerance]
    conditions: list[Condition]
    emergency_contacts: list[EmergencyContact]
    consents: dict[Channel, Consent]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> PatientOut:
        return cls.model_validate({**doc, "id": doc["_id"]})


class PatientSummary(BaseModel):
    """A search result row."""

    id: str
    name: HumanName
    birth_date: date | None
    gender: AdministrativeGender | None

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> PatientSummary:
        return cls.model_validate({**doc, "id": doc["_id"]})
