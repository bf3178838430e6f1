"""The payer sandbox's adjudication rules and the invoice's patient share (no I/O)."""

from __future__ import annotations

from datetime import date

import pytest

from healthflow.common.problems import UnprocessableContent
from healthflow.payment.clearinghouse import (
    ClaimDiagnosis,
    ClaimLine,
    ClaimSubmission,
    Eligibility,
    EligibilityInquiry,
    PlanRule,
    adjudicate,
    eligibility,
    line_reasons,
)
from healthflow.payment.domain import (
    ClaimConflict,
    ClaimOutcome,
    InvoiceStatus,
    ensure_claimable,
    payment_state,
    record_invoice_payment,
    status_after_claim,
)

DAY = date(2026, 6, 15)
PLANS = {"std": PlanRule(covered_basis_points=8000, copay=1000, excluded_codes=frozenset(
    {"cosmetic"})), "full": PlanRule(covered_basis_points=10_000),
    "usd": PlanRule(covered_basis_points=5000, currency="USD")}


def a_claim(*nets: int, plan: str = "std", codes: tuple[str, ...] = (), active: bool = True,
            start: date = date(2026, 1, 1), end: date | None = date(2026, 12, 31),
            on: date = DAY) -> ClaimSubmission:
    lines = tuple(ClaimLine(n, codes[n - 1] if codes else "lab", on, net)
                  for n, net in enumerate(nets, start=1))
    return ClaimSubmission(claim_id="c1", payer_id="payer", plan=plan, subscriber_id="M1",
                           coverage_active=active, coverage_start=start, coverage_end=end,
                           currency="EUR", lines=lines)


def test_benefits_round_down_per_line_and_the_copay_comes_off_in_line_order() -> None:
    # 80 % of 999 = 799.2 -> 799; of 1333 = 1066.4 -> 1066; copay 1000 off the first lines
    result = adjudicate(a_claim(999, 1333), PLANS)
    assert result.outcome is ClaimOutcome.COMPLETE and not result.errors
    assert [(li.submitted, li.eligible, li.benefit) for li in result.lines] == [
        (999, 999, 0), (1333, 1333, 799 + 1066 - 1000)]
    assert result.copay == 1000 and result.benefit == 865
    assert result.benefit == sum(li.benefit for li in result.lines)
    assert result == adjudicate(a_claim(999, 1333), PLANS)  # deterministic


def test_excluded_services_are_not_eligible_and_a_copay_never_makes_a_negative() -> None:
    result = adjudicate(a_claim(5000, 700, codes=("cosmetic", "lab")), PLANS)
    assert [(li.eligible, li.benefit) for li in result.lines] == [(0, 0), (700, 0)]
    assert (result.copay, result.benefit) == (560, 0)  # 80 % of 700 = 560 < the copay
    full = adjudicate(a_claim(4000, 1, plan="full"), PLANS)
    assert (full.benefit, full.copay) == (4001, 0)


@pytest.mark.parametrize(("claim", "errors"), [
    (a_claim(100, plan="gold"), ("plan-unknown",)),
    (a_claim(100, plan="usd"), ("currency-not-covered",)),
    (a_claim(100, active=False), ("coverage-inactive",)),
    (a_claim(100, on=date(2025, 12, 31)), ("coverage-not-in-force",)),
    (a_claim(100, on=date(2027, 1, 1)), ("coverage-not-in-force",)),
])
def test_what_the_payer_cannot_adjudicate_is_an_error_with_nothing_covered(
        claim: ClaimSubmission, errors: tuple[str, ...]) -> None:
    result = adjudicate(claim, PLANS)
    assert result.outcome is ClaimOutcome.ERROR and result.errors == errors
    assert result.benefit == 0 and all(li.benefit == 0 for li in result.lines)


def test_an_open_ended_coverage_covers_any_later_day() -> None:
    assert adjudicate(a_claim(100, end=None, on=date(2040, 1, 1)),
                      PLANS).outcome is ClaimOutcome.COMPLETE


def test_the_patient_owes_the_total_less_the_insurance_share() -> None:
    issued = InvoiceStatus.ISSUED
    with pytest.raises(UnprocessableContent, match="1 to 135"):
        record_invoice_payment(issued, 1000, 0, 136, insurance_share=865)
    assert record_invoice_payment(issued, 1000, 0, 100, insurance_share=865) == (
        100, issued)
    assert record_invoice_payment(issued, 1000, 100, 35, insurance_share=865) == (
        135, InvoiceStatus.BALANCED)
    assert payment_state(issued, 1000, 0, 865) == "unpaid"
    assert payment_state(issued, 1000, 100, 865) == "partially_paid"
    assert payment_state(InvoiceStatus.BALANCED, 1000, 135, 865) == "paid"
    assert status_after_claim(1000, 1000) is InvoiceStatus.BALANCED
    assert status_after_claim(1000, 999) is issued


def test_only_an_unpaid_unclaimed_issued_invoice_is_claimable() -> None:
    ensure_claimable(InvoiceStatus.ISSUED, 0, False)
    for status, paid, claimed in ((InvoiceStatus.ISSUED, 1, False),
                                  (InvoiceStatus.BALANCED, 0, False),
                                  (InvoiceStatus.CANCELLED, 0, False),
                                  (InvoiceStatus.ISSUED, 0, True)):
        with pytest.raises(ClaimConflict):
            ensure_claimable(status, paid, claimed)


def inquiry(plan: str = "std", active: bool = True, start: date = date(2026, 1, 1),
            end: date | None = date(2026, 12, 31), day: date = DAY) -> EligibilityInquiry:
    return EligibilityInquiry(request_id="r-1", payer_id="payer", plan=plan,
                              subscriber_id="M-1", coverage_active=active,
                              coverage_start=start, coverage_end=end, service_date=day)


def test_the_sandbox_payer_answers_eligibility_by_plan_and_period() -> None:
    assert eligibility(inquiry(), PLANS) == Eligibility(
        ClaimOutcome.COMPLETE, True, "Policy is currently in effect", "sandbox-r-1")
    assert eligibility(inquiry(end=None), PLANS).inforce  # open-ended
    assert eligibility(inquiry(day=date(2026, 12, 31)), PLANS).inforce  # last day counts
    late = eligibility(inquiry(day=date(2027, 1, 1)), PLANS)
    assert (late.outcome, late.inforce, late.reasons) == (
        ClaimOutcome.COMPLETE, False, ("coverage-not-in-force",))
    early = eligibility(inquiry(start=date(2026, 6, 16)), PLANS)
    assert early.reasons == ("coverage-not-in-force",)
    withdrawn = eligibility(inquiry(active=False), PLANS)
    assert (withdrawn.inforce, withdrawn.reasons) == (False, ("coverage-inactive",))
    unknown = eligibility(inquiry(plan="gold"), PLANS)
    assert (unknown.outcome, unknown.inforce, unknown.reasons) == (
        ClaimOutcome.ERROR, False, ("plan-unknown",))


def test_a_plan_excludes_diagnoses_by_code_or_category_and_may_require_one() -> None:
    """A line's diagnoses are those it points to, else all the claim's; an excluded one
    (a code, or a prefix such as a category) makes the line ineligible, naming it."""
    rule = PlanRule(covered_basis_points=10_000, excluded_diagnoses=frozenset({"Z41", "L90.5"}),
                    diagnosis_required=True)
    diagnoses = {1: ClaimDiagnosis(1, "J06.9"), 2: ClaimDiagnosis(2, "Z41.1"),
                 3: ClaimDiagnosis(3, "L90.4")}

    def line(*sequences: int, code: str = "lab") -> ClaimLine:
        return ClaimLine(1, code, DAY, 100, sequences)

    assert line_reasons(line(1), diagnoses, rule) == ()
    assert line_reasons(line(1, 2), diagnoses, rule) == ("diagnosis-excluded:Z41.1",)
    assert line_reasons(line(3), diagnoses, rule) == ()  # L90.4 is not L90.5
    assert line_reasons(line(), diagnoses, rule) == ("diagnosis-excluded:Z41.1",)  # all
    assert line_reasons(line(9), diagnoses, rule) == ("diagnosis-required",)  # unknown
    assert line_reasons(line(), {}, rule) == ("diagnosis-required",)
    assert line_reasons(line(), {}, PlanRule(covered_basis_points=1)) == ()
    cosmetic = PlanRule(covered_basis_points=1, excluded_codes=frozenset({"cosmetic"}),
                        excluded_diagnoses=frozenset({"Z41"}))
    assert line_reasons(line(2, code="cosmetic"), diagnoses, cosmetic) == (
        "service-excluded:cosmetic", "diagnosis-excluded:Z41.1")
    claim = ClaimSubmission(
        claim_id="c1", payer_id="payer", plan="p", subscriber_id="M1", coverage_active=True,
        coverage_start=date(2026, 1, 1), coverage_end=None, currency="EUR",
        lines=(ClaimLine(1, "lab", DAY, 1000, (1,)), ClaimLine(2, "lab", DAY, 500, (2,))),
        diagnoses=tuple(diagnoses.values()))
    answer = adjudicate(claim, {"p": rule})
    assert [(li.eligible, li.benefit, li.reasons) for li in answer.lines] == [
        (1000, 1000, ()), (0, 0, ("diagnosis-excluded:Z41.1",))]
    assert (answer.outcome, answer.benefit) == (ClaimOutcome.COMPLETE, 1000)
