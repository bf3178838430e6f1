"""Request and response bodies of ``/api/v1/encounters`` and ``/api/v1/records``.

Times are RFC 3339 with an offset (``AwareDatetime``), stored as UTC truncated to
milliseconds (BSON's precision). Codes are validated here, so a bad one is a 422
that names its field: ICD-10 and UCUM through :mod:`healthflow.records.terminology`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from healthflow.records import terminology as terms
from healthflow.records.domain import (
    EncounterClass,
    EntryStatus,
    ResourceType,
)


def _utc_ms(value: datetime) -> datetime:
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _ucum(unit: str) -> str:
    if not terms.is_ucum(unit):
        raise ValueError(f"{unit!r} is not a UCUM unit (e.g. mm[Hg], kg, Cel, /min)")
    return unit


CLOCK_SKEW = timedelta(minutes=5)
"""How far ahead of this server's clock a client's "now" may be."""


def _not_future(value: datetime | None, what: str) -> None:
    """Raises ValueError when ``value`` (aware) lies in the future, beyond :data:`CLOCK_SKEW`."""
    if value is not None and value > datetime.now(UTC) + CLOCK_SKEW:
        raise ValueError(f"{what} is in the future")


Instant = Annotated[AwareDatetime, AfterValidator(_utc_ms)]
Text = Annotated[str, Field(min_length=1, max_length=2000)]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]
Id = Annotated[str, Field(min_length=1, max_length=64)]
UcumUnit = Annotated[str, Field(max_length=64), AfterValidator(_ucum)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EncounterIn(_Body):
    """``POST /api/v1/encounters``: a walk-in, virtual or emergency encounter, starting now.

    ``practitioner_id`` is the doctor's user id; a doctor opening their own
    encounter may omit it, staff (``encounters:open_any``) must name one.
    Encounters of booked appointments open by themselves at check-in.
    """

    patient_id: Id
    encounter_class: EncounterClass = Field(alias="class", default=EncounterClass.AMB)
    practitioner_id: Id | None = None
    reason: ShortText | None = None
    hospital_id: Id | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class EncounterOut(BaseModel):
    """An encounter (FHIR R4 ``Encounter`` in HealthFlow's JSON)."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    id: str
    patient_id: str
    practitioner_id: str
    appointment_id: str | None
    encounter_class: EncounterClass = Field(alias="class")
    status: str
    period: dict[str, datetime | None]
    planned: dict[str, datetime] | None
    reason: str | None
    opened_by: str
    hospital_id: str | None = None
    version: int

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> EncounterOut:
        return cls.model_validate({**doc, "id": doc["_id"], "class": doc["class"]})


# ----------------------------------------------------------------------------- entries


class ConditionIn(_Body):
    """A diagnosis (FHIR ``Condition``, category ``encounter-diagnosis``).

    ``code``: ICD-10 (WHO) leaf code, e.g. ``J06.9``; or ``text`` alone for a
    diagnosis without a code (both may be given). ``onset`` is not in the future.
    """

    type: Literal["Condition"]
    code: Annotated[str, Field(max_length=10)] | None = None
    text: ShortText | None = None
    clinical_status: Literal["active", "recurrence", "relapse", "inactive", "remission",
                             "resolved"] = "active"
    verification_status: Literal["unconfirmed", "provisional", "differential", "confirmed",
                                 "refuted"] = "confirmed"
    onset: Instant | None = None
    note: Text | None = None

    @model_validator(mode="after")
    def _coded_or_text(self) -> ConditionIn:
        if self.code is None and self.text is None:
            raise ValueError("give an ICD-10 code, a text, or both")
        _not_future(self.onset, "onset")
        if self.code is not None:
            terms.icd10_code(self.code)  # ValueError → 422 naming the body
        return self

    def content(self) -> dict[str, Any]:
        coding = None
        if self.code is not None:
            found = terms.icd10_code(self.code)
            coding = {"system": terms.ICD10_SYSTEM, "code": found.code, "display": found.display}
        return {"code": coding, "text": self.text, "clinical_status": self.clinical_status,
                "verification_status": self.verification_status, "onset": self.onset,
                "note": self.note}


class Quantity(_Body):
    """A measured value: a finite number and its UCUM unit (case-sensitive)."""

    value: Annotated[float, Field(allow_inf_nan=False)]
    unit: UcumUnit


class ComponentIn(_Body):
    """A part of a panel (blood pressure): LOINC ``code`` and its quantity."""

    code: Annotated[str, Field(max_length=10)]
    value: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    unit: UcumUnit


class ObservationIn(_Body):
    """A vital sign or a finding (FHIR ``Observation``).

    A vital sign has ``code``, a LOINC code of the FHIR vital signs profile, and
    ``quantity`` in a unit the profile allows for it; blood pressure (``85354-9``)
    has ``components`` systolic ``8480-6`` and diastolic ``8462-4`` in ``mm[Hg]``.
    A finding has ``text`` (what was examined) and ``quantity`` (any UCUM unit)
    or ``value_text``. ``effective`` defaults to the time of writing and may not lie
    in the future (:data:`CLOCK_SKEW` aside); a saturation is at most 100 %.
    """

    type: Literal["Observation"]
    code: Annotated[str, Field(max_length=10)] | None = None
    text: ShortText | None = None
    quantity: Quantity | None = None
    value_text: Text | None = None
    components: Annotated[list[ComponentIn], Field(max_length=2)] | None = None
    effective: Instant | None = None
    note: Text | None = None

    @model_validator(mode="after")
    def _shape(self) -> ObservationIn:
        _not_future(self.effective, "effective")
        if self.code is None:
            if self.text is None or self.components is not None:
                raise ValueError("a finding has a text and no components (or give a LOINC "
                                 "vital-sign code)")
            if (self.quantity is None) == (self.value_text is None):
                raise ValueError("a finding has either a quantity or a value_text")
            return self
        sign = terms.vital_sign(self.code)
        if self.value_text is not None:
            raise ValueError("a vital sign is a quantity, not a value_text")
        if sign.components:
            given = sorted(c.code for c in self.components or [])
            if self.quantity is not None or given != sorted(sign.components):
                raise ValueError(f"{sign.display} has exactly the components "
                                 + " and ".join(sign.components) + " and no quantity")
            for component in self.components or []:
                terms.check_vital_unit(terms.vital_sign(component.code), component.unit)
            return self
        if self.quantity is None or self.components is not None:
            raise ValueError(f"{sign.display} is one quantity")
        if self.quantity.value < 0:
            raise ValueError(f"{sign.display} cannot be negative")
        terms.check_vital_unit(sign, self.quantity.unit)
        if sign.maximum is not None and self.quantity.value > sign.maximum:
            raise ValueError(f"{sign.display} is at most {sign.maximum:g} {self.quantity.unit}")
        return self

    def content(self) -> dict[str, Any]:
        sign = terms.VITAL_SIGNS.get(self.code) if self.code else None
        return {
            "code": {"system": terms.LOINC_SYSTEM, "code": sign.code, "display": sign.display}
            if sign else None,
            "text": self.text,
            "category": "vital-signs" if sign else "exam",
            "quantity": self.quantity.model_dump() if self.quantity else None,
            "value_text": self.value_text,
            "components": [c.model_dump() for c in self.components] if self.components
            else None,
            "effective": self.effective, "note": self.note,
        }


class MedicationStatementIn(_Body):
    """A medication the patient takes or took (FHIR ``MedicationStatement``).

    ``medication`` and ``dosage`` are text (no drug terminology ships here yet);
    ``status`` per FHIR R4 ``medication-statement-status``; the effective period
    ``start`` ≤ ``end`` when both are given.
    """

    type: Literal["MedicationStatement"]
    medication: ShortText
    status: Literal["active", "completed", "intended", "stopped", "on-hold",
                    "not-taken"] = "active"
    dosage: ShortText | None = None
    effective_start: Instant | None = None
    effective_end: Instant | None = None
    note: Text | None = None

    @model_validator(mode="after")
    def _period(self) -> MedicationStatementIn:
        start, end = self.effective_start, self.effective_end
        if start and end and end < start:
            raise ValueError("effective_end is before effective_start")
        return self

    def content(self) -> dict[str, Any]:
        return self.model_dump(exclude={"type"})


EntryIn = Annotated[ConditionIn | ObservationIn | MedicationStatementIn,
                    Field(discriminator="type")]


class NewEntryIn(_Body):
    """``POST /api/v1/records/encounters/{id}/entries``."""

    entry: EntryIn


class CorrectionIn(_Body):
    """``POST …/entries/{id}/corrections``: the new content of the entry ``version``.

    The entry's resource type cannot change; ``reason`` is kept with the version.
    """

    version: Annotated[int, Field(ge=1)]
    reason: ShortText
    entry: EntryIn


class WithdrawalIn(_Body):
    """``POST …/entries/{id}/entered-in-error``: withdraw the entry at ``version``."""

    version: Annotated[int, Field(ge=1)]
    reason: ShortText


class EntryOut(BaseModel):
    """The current version of an entry; ``content`` as written (codes resolved)."""

    id: str
    encounter_id: str
    patient_id: str
    resource_type: ResourceType
    version: int
    status: EntryStatus
    content: dict[str, Any]
    recorded_by: str
    recorded_at: datetime
    updated_by: str
    updated_at: datetime

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> EntryOut:
        return cls.model_validate({**doc, "id": doc["_id"]})


class EntryVersionOut(BaseModel):
    """One kept version: who wrote it, when (aware UTC) and why (``None`` for version 1)."""

    version: int
    status: EntryStatus
    content: dict[str, Any]
    author: str
    at: datetime
    reason: str | None

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> EntryVersionOut:
        return cls.model_validate(doc)


# ----------------------------------------------------------------------------- plans, procedures


class GoalIn(_Body):
    """A goal of a plan (FHIR ``Goal``, contained in the ``CarePlan``): what, and by when."""

    description: ShortText
    due: date | None = None


class ActivityIn(_Body):
    """A planned activity (FHIR ``CarePlan.activity``).

    ``kind``: ``medication`` (a prescription; ``prescription_id`` names the
    ``MedicationRequest`` once issued) or ``procedure`` (FHIR ``ServiceRequest``
    kind). ``status`` per FHIR R4 ``care-plan-activity-status``.
    """

    kind: Literal["medication", "procedure"]
    description: ShortText
    prescription_id: Id | None = None
    status: Literal["not-started", "scheduled", "in-progress", "on-hold", "completed",
                    "cancelled", "stopped"] = "not-started"

    @model_validator(mode="after")
    def _prescription_is_medication(self) -> ActivityIn:
        if self.prescription_id is not None and self.kind != "medication":
            raise ValueError("only a medication activity names a prescription_id")
        return self


class CarePlanContent(_Body):
    """What a treatment plan says (FHIR ``CarePlan``), without its status.

    ``addresses``: ids of the patient's current ``Condition`` entries (the
    diagnoses it treats); ``description`` summarises the diagnosis and approach.
    """

    title: ShortText
    description: Text | None = None
    addresses: Annotated[list[Id], Field(max_length=20)] = []
    goals: Annotated[list[GoalIn], Field(max_length=20)] = []
    activities: Annotated[list[ActivityIn], Field(max_length=50)] = []
    period_end: date | None = None
    note: Text | None = None

    def content(self, status: str) -> dict[str, Any]:
        """The stored content; ``date``s as ISO strings (BSON has no date without time)."""
        return {**self.model_dump(mode="json", exclude={"encounter_id", "status"}),
                "status": status}


class CarePlanIn(CarePlanContent):
    """``POST /api/v1/care-plans``: a plan written in an encounter, ``draft`` or ``active``."""

    encounter_id: Id
    status: Literal["draft", "active"] = "draft"


class CarePlanCorrectionIn(_Body):
    """``POST /api/v1/care-plans/{id}/corrections``: new content of plan ``version``."""

    version: Annotated[int, Field(ge=1)]
    reason: ShortText
    plan: CarePlanContent


class PlanStatusIn(_Body):
    """``POST /api/v1/care-plans/{id}/status``: move plan ``version`` to ``status``.

    ``reason`` is required to revoke (end early) and kept with the version.
    """

    version: Annotated[int, Field(ge=1)]
    status: Literal["active", "completed", "revoked"]
    reason: ShortText | None = None


class ProcedureCode(_Body):
    """A procedure's code: SNOMED CT or ICD-10-PCS (``terminology.procedure_code``)."""

    system: Annotated[str, Field(max_length=100)]
    code: Annotated[str, Field(max_length=18)]

    @model_validator(mode="after")
    def _known(self) -> ProcedureCode:
        self.code = terms.procedure_code(self.system, self.code)
        return self


class ProcedureContent(_Body):
    """What was done (FHIR ``Procedure``).

    ``status`` per FHIR R4 ``event-status`` as recorded after the fact:
    ``completed``, ``not-done`` (``status_reason`` says why) or ``stopped``.
    ``performer_id``: the user id of who did it (default: the recording doctor).
    ``performed``: when (default: the time of writing; not in the future).
    ``care_plan_id``: the plan it carries out (a current plan of the same patient).
    ``code``: its code for billing (optional; the text says what was done).
    """

    code_text: ShortText
    code: ProcedureCode | None = None
    status: Literal["completed", "not-done", "stopped"] = "completed"
    status_reason: ShortText | None = None
    care_plan_id: Id | None = None
    performer_id: Id | None = None
    performed: Instant | None = None
    outcome: ShortText | None = None
    note: Text | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ProcedureContent:
        _not_future(self.performed, "performed")
        if self.status == "not-done" and (self.performed or self.outcome):
            raise ValueError("a procedure not done has no performed time nor outcome")
        if self.status_reason and self.status == "completed":
            raise ValueError("status_reason is for procedures not done or stopped")
        return self


class ProcedureIn(ProcedureContent):
    """``POST /api/v1/procedures``: a procedure recorded in an encounter."""

    encounter_id: Id


class ProcedureCorrectionIn(_Body):
    """``POST /api/v1/procedures/{id}/corrections``: new content of procedure ``version``."""

    version: Annotated[int, Field(ge=1)]
    reason: ShortText
    procedure: ProcedureContent


class BreakTheGlassIn(_Body):
    """``POST …/records/patients/{id}/break-the-glass``: why the record must be read now
    (10–500 characters; kept in the records service, never put in an event)."""

    reason: Annotated[str, Field(min_length=10, max_length=500)]


class EmergencyAccessOut(BaseModel):
    """A grant to read the record from ``granted_at`` to ``expires_at`` (aware UTC)."""

    id: str
    patient_id: str
    granted_at: datetime
    expires_at: datetime
