"""The clearinghouse: how a claim reaches a payer and how the payer's answer comes back.

:class:`Clearinghouse` is the interface the claim use case calls (as :mod:`.provider` is
for Stripe). :class:`PayerSandbox` implements it for local runs and tests: a payer that
adjudicates at once by configurable rules per plan (``Settings.payer_sandbox_plans``),
the way the local mailbox stands in for SMTP. A production deployment would implement
the same interface for a real clearinghouse (an X12 837/835 or FHIR exchange; none is
built, so ``HEALTHFLOW_ENV=production`` refuses to start with the sandbox).

Amounts are integers of minor units of the claim's ISO 4217 currency; dates are
calendar dates of the service (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Protocol

from pydantic import BaseModel, ConfigDict, Field

from healthflow.payment.domain import BASIS_POINTS, ClaimOutcome


@dataclass(frozen=True)
class ClaimLine:
    """One ``Claim.item``: ``net`` (quantity × unit price, tax included) in minor units;
    ``diagnosis_sequences`` the ``Claim.diagnosis`` it is for (``item.diagnosisSequence``;
    none: the claim's diagnoses all apply)."""

    sequence: int
    code: str
    service_date: date
    net: int
    diagnosis_sequences: tuple[int, ...] = ()


@dataclass(frozen=True)
class ClaimDiagnosis:
    """One ``Claim.diagnosis``: ``sequence``, the code (ICD-10 in dotted form, ``J06.9``,
    when ``system`` is ``http://hl7.org/fhir/sid/icd-10``) and its ``system``."""

    sequence: int
    code: str
    system: str = ""


@dataclass(frozen=True)
class ClaimSubmission:
    """What the payer is asked: the claim (its id doubles as the idempotency key: the
    same id submitted again must get the same answer) with the coverage as the patient
    holds it."""

    claim_id: str
    payer_id: str
    plan: str
    subscriber_id: str
    coverage_active: bool
    coverage_start: date
    coverage_end: date | None
    currency: str
    lines: tuple[ClaimLine, ...]
    diagnoses: tuple[ClaimDiagnosis, ...] = ()


@dataclass(frozen=True)
class LineAdjudication:
    """``ClaimResponse.item.adjudication`` of one line: ``submitted`` (asked),
    ``eligible`` (0 for an excluded service), ``benefit`` (what the payer pays);
    ``reasons`` why it is not eligible, each ``<code>`` or ``<code>:<what>``
    (``service-excluded:cosmetic``, ``diagnosis-excluded:L90.5``, ``diagnosis-required``).
    """

    sequence: int
    submitted: int
    eligible: int
    benefit: int
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Adjudication:
    """The payer's answer (``ClaimResponse``): ``benefit`` = the sum of the lines'
    benefits, ``copay`` the part of the eligible amount left to the patient by the
    plan's copayment; ``errors`` (codes) when ``outcome`` is ``error``, then every
    benefit is 0. ``reference`` is the payer's identifier of its answer."""

    outcome: ClaimOutcome
    disposition: str
    lines: tuple[LineAdjudication, ...]
    copay: int
    benefit: int
    reference: str
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class EligibilityInquiry:
    """A FHIR ``CoverageEligibilityRequest`` (purpose ``validation``): is the coverage in
    force with its payer on ``service_date``? ``request_id`` is the idempotency key."""

    request_id: str
    payer_id: str
    plan: str
    subscriber_id: str
    coverage_active: bool
    coverage_start: date
    coverage_end: date | None
    service_date: date


@dataclass(frozen=True)
class Eligibility:
    """The payer's ``CoverageEligibilityResponse``: ``outcome`` ``complete`` (answered;
    ``inforce`` says whether the coverage is in force that day, ``reasons`` why not) or
    ``error`` (the payer cannot answer: an unknown plan, in ``reasons``)."""

    outcome: ClaimOutcome
    inforce: bool
    disposition: str
    reference: str
    reasons: tuple[str, ...] = ()


class Clearinghouse(Protocol):
    """Submits a claim to the payer and returns its adjudication; asks the payer whether
    a coverage is in force."""

    name: str

    async def submit(self, claim: ClaimSubmission) -> Adjudication:
        """The payer's adjudication of ``claim``; the same ``claim_id`` again answers
        the same (idempotent)."""
        ...

    async def check_eligibility(self, inquiry: EligibilityInquiry) -> Eligibility:
        """The payer's answer to ``inquiry`` (the same ``request_id``: the same answer)."""
        ...


def eligibility(inquiry: EligibilityInquiry, rules: dict[str, PlanRule]) -> Eligibility:
    """The sandbox payer's eligibility rules (pure): ``error`` for a plan it does not
    know (``plan-unknown``); else ``complete``, in force unless the coverage is not
    active (``coverage-inactive``) or ``service_date`` lies outside its period
    (``coverage-not-in-force``), the same rules its claims are adjudicated by."""
    reference = f"sandbox-{inquiry.request_id}"
    if inquiry.plan not in rules:
        return Eligibility(ClaimOutcome.ERROR, False, "Plan unknown to the payer",
                           reference, ("plan-unknown",))
    reasons = []
    if not inquiry.coverage_active:
        reasons.append("coverage-inactive")
    if inquiry.service_date < inquiry.coverage_start or (
            inquiry.coverage_end is not None and inquiry.service_date > inquiry.coverage_end):
        reasons.append("coverage-not-in-force")
    disposition = ("Policy is currently in effect" if not reasons
                   else "Not in force: " + ", ".join(reasons))
    return Eligibility(ClaimOutcome.COMPLETE, not reasons, disposition, reference,
                       tuple(reasons))


class PlanRule(BaseModel):
    """How the sandbox payer pays a plan: ``covered_basis_points`` of each eligible line
    (8000 = 80 %), less a ``copay`` per claim (minor units of ``currency``); services
    whose code is in ``excluded_codes`` are not covered, nor services for a diagnosis
    whose code starts with one of ``excluded_diagnoses`` (ICD-10 codes or category
    prefixes: ``L90.5`` one code, ``Z41`` the whole category); with
    ``diagnosis_required`` a service without any diagnosis is not covered."""

    model_config = ConfigDict(extra="forbid")

    covered_basis_points: Annotated[int, Field(ge=0, le=BASIS_POINTS)]
    copay: Annotated[int, Field(ge=0)] = 0
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    excluded_codes: frozenset[str] = frozenset()
    excluded_diagnoses: frozenset[str] = frozenset()
    diagnosis_required: bool = False


def line_reasons(line: ClaimLine, diagnoses: dict[int, ClaimDiagnosis],
                 rule: PlanRule) -> tuple[str, ...]:
    """Why the plan does not cover ``line`` (empty: it does). Its diagnoses are the ones
    it points to, or all of the claim's (``diagnoses`` by sequence) when it points to
    none; an unknown sequence points to nothing."""
    reasons = []
    if line.code in rule.excluded_codes:
        reasons.append(f"service-excluded:{line.code}")
    linked = ([diagnoses[n] for n in line.diagnosis_sequences if n in diagnoses]
              if line.diagnosis_sequences else list(diagnoses.values()))
    reasons += [f"diagnosis-excluded:{d.code}" for d in linked
                if any(d.code.startswith(prefix) for prefix in rule.excluded_diagnoses)]
    if rule.diagnosis_required and not linked:
        reasons.append("diagnosis-required")
    return tuple(reasons)


def adjudicate(claim: ClaimSubmission, rules: dict[str, PlanRule]) -> Adjudication:
    """The sandbox payer's rules (pure).

    ``error`` (nothing covered) when the plan is unknown (``plan-unknown``), its
    currency is not the claim's (``currency-not-covered``), the coverage is not active
    (``coverage-inactive``) or a service date lies outside its period
    (``coverage-not-in-force``). Otherwise ``complete``:

    * ``eligible`` = the line's ``net``, or 0 when the plan does not cover it
      (:func:`line_reasons`: an excluded service, an excluded diagnosis, no diagnosis
      where the plan requires one; the reasons name the codes);
    * line benefit = ``eligible * covered_basis_points // 10000``: rounded **down** to a
      whole minor unit (integers only), so the payer never pays more than the plan's
      percentage and the patient pays the fraction;
    * the ``copay`` (at most the benefits' sum) is taken off the line benefits in line
      order, so the lines' benefits still add up to the claim's ``benefit`` exactly.
    """
    errors = []
    rule = rules.get(claim.plan)
    if rule is None:
        errors.append("plan-unknown")
    elif rule.currency != claim.currency:
        errors.append("currency-not-covered")
    if not claim.coverage_active:
        errors.append("coverage-inactive")
    if any(line.service_date < claim.coverage_start
           or (claim.coverage_end is not None and line.service_date > claim.coverage_end)
           for line in claim.lines):
        errors.append("coverage-not-in-force")
    reference = f"sandbox-{claim.claim_id}"
    if errors or rule is None:
        return Adjudication(
            outcome=ClaimOutcome.ERROR, disposition="Not adjudicated: " + ", ".join(errors),
            lines=tuple(LineAdjudication(li.sequence, li.net, 0, 0) for li in claim.lines),
            copay=0, benefit=0, reference=reference, errors=tuple(errors))
    by_sequence = {d.sequence: d for d in claim.diagnoses}
    reasons = [line_reasons(li, by_sequence, rule) for li in claim.lines]
    eligible = [0 if why else li.net for li, why in zip(claim.lines, reasons, strict=True)]
    benefits = [e * rule.covered_basis_points // BASIS_POINTS for e in eligible]
    copay = left = min(rule.copay, sum(benefits))
    for n, benefit in enumerate(benefits):
        taken = min(benefit, left)
        benefits[n], left = benefit - taken, left - taken
    lines = tuple(LineAdjudication(li.sequence, li.net, e, b, why) for li, e, b, why
                  in zip(claim.lines, eligible, benefits, reasons, strict=True))
    return Adjudication(outcome=ClaimOutcome.COMPLETE, disposition="Claim settled as per "
                        f"plan {claim.plan}", lines=lines, copay=copay, benefit=sum(benefits),
                        reference=reference)


class PayerSandbox:
    """A local payer answering every claim at once by :func:`adjudicate` with the plan
    rules it was given (deterministic: the same claim gets the same answer)."""

    name = "sandbox"

    def __init__(self, plans: dict[str, PlanRule]) -> None:
        self.plans = plans

    async def submit(self, claim: ClaimSubmission) -> Adjudication:
        return adjudicate(claim, self.plans)

    async def check_eligibility(self, inquiry: EligibilityInquiry) -> Eligibility:
        return eligibility(inquiry, self.plans)
