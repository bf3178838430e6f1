"""The official HL7 FHIR R4 example Claims through the clearinghouse's reading path.

The corpus is the npm package ``hl7.fhir.r4.examples`` (CC0), fetched at test set-up by
:mod:`healthflow.devkit.fhir_examples` (as the records service's import test does).
Every example Claim whose focal Coverage can be found (contained, or the package's own
``Coverage-<id>``) is read by :func:`healthflow.payment.fhir.submission` — the path
HealthFlow's own claims take to the clearinghouse — and adjudicated by the payer
sandbox. What cannot be read is skipped with its reason, counted, and a minimum read is
asserted; never silently.

The examples' coverage ``9876B1`` ended on 2012-05-23 while its claims are for services
in 2014, so the sandbox rightly answers ``coverage-not-in-force`` for them; each is
adjudicated a second time with that coverage in force, to check the amounts.
"""

from __future__ import annotations

import tarfile
from decimal import Decimal
from typing import Any

import pytest
from fhir.resources.R4B.claim import Claim

from healthflow.devkit.fhir_examples import CorpusUnavailable, corpus, example, names
from healthflow.payment import fhir
from healthflow.payment.clearinghouse import PlanRule, adjudicate
from healthflow.payment.domain import ClaimOutcome

PLANS = {"B37FC": PlanRule(covered_basis_points=8000, copay=2000, currency="USD"),
         "CBI35": PlanRule(covered_basis_points=7000, currency="USD",
                           excluded_codes=frozenset({"27211"}))}
MIN_READ = 14  # of 17 (4.0.1): one preauthorization, two coverages given by identifier/URL


@pytest.fixture(scope="module")
def examples() -> tarfile.TarFile:
    try:
        return corpus()
    except CorpusUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


def focal_coverage(archive: tarfile.TarFile, claim: dict[str, Any]) -> dict[str, Any] | None:
    insurance = [i for i in claim.get("insurance", []) if i.get("focal")] or claim.get(
        "insurance", [])
    ref = (insurance[0].get("coverage") or {}).get("reference", "") if insurance else ""
    contained = {f"#{c['id']}": c for c in claim.get("contained", [])}
    if ref in contained:
        return contained[ref]
    if ref.startswith("Coverage/"):
        return example(archive, f"Coverage-{ref.split('/', 1)[1]}")
    return None  # by identifier or an outside URL: nothing to read the plan from


def test_the_official_example_claims_are_read_and_adjudicated(
        examples: tarfile.TarFile) -> None:
    read, skipped = 0, {}
    outcomes: dict[str, tuple[str, ...]] = {}
    for name in names(examples, "Claim"):
        resource = example(examples, name)
        Claim.model_validate(resource)  # the corpus is what R4B expects
        coverage = focal_coverage(examples, resource)
        if coverage is None:
            skipped[name] = "coverage by identifier or outside URL"
            continue
        try:
            claim = fhir.submission(resource, coverage)
        except fhir.NotImportable as exc:
            skipped[name] = str(exc)
            continue
        read += 1
        # every item read, exactly, in minor units; the coded diagnoses and the links
        assert [line.sequence for line in claim.lines] == [
            i["sequence"] for i in resource["item"]]
        assert [(d.sequence, d.code) for d in claim.diagnoses] == [
            (d["sequence"], d["diagnosisCodeableConcept"]["coding"][0]["code"])
            for d in resource.get("diagnosis", [])]
        assert [line.diagnosis_sequences for line in claim.lines] == [
            tuple(i.get("diagnosisSequence", ())) for i in resource["item"]]
        if "total" in resource:
            assert sum(line.net for line in claim.lines) == int(
                Decimal(str(resource["total"]["value"])) * 100)
        answer = adjudicate(claim, PLANS)
        outcomes[name] = answer.errors
        assert answer.benefit == sum(line.benefit for line in answer.lines) == (
            0 if answer.outcome is ClaimOutcome.ERROR else answer.benefit)

        in_force = fhir.submission(resource, {**coverage, "period": {"start": "2014-01-01"}})
        settled = adjudicate(in_force, PLANS)
        rule = PLANS.get(in_force.plan)
        if rule is None:
            assert settled.errors == ("plan-unknown",)
            continue
        assert settled.outcome is ClaimOutcome.COMPLETE, (name, settled.errors)
        eligible = [0 if line.code in rule.excluded_codes else line.net
                    for line in in_force.lines]  # these plans exclude no diagnosis
        assert [line.eligible for line in settled.lines] == eligible
        floor = sum(e * rule.covered_basis_points // 10_000 for e in eligible)
        assert settled.benefit == max(0, floor - rule.copay)
        assert settled.benefit == sum(line.benefit for line in settled.lines)
        assert 0 <= settled.benefit <= sum(line.net for line in in_force.lines)

    assert read >= MIN_READ, (read, skipped)
    assert skipped == {"Claim-100153": "use 'preauthorization': only claims are adjudicated",
                       "Claim-100154": "coverage by identifier or outside URL",
                       "Claim-100155": "coverage by identifier or outside URL"}
    assert outcomes["Claim-100151"] == ("coverage-not-in-force",)  # the example's own dates
    assert outcomes["Claim-100152"] == ()  # its contained coverage has no end: complete
    assert outcomes["Claim-MED-00050"] == ("plan-unknown",)  # a group, no plan class


def test_an_example_claims_diagnoses_drive_a_plan_that_excludes_them(
        examples: tarfile.TarFile) -> None:
    """Claim-MED-00050 (ICD-10 M96.1, G89.4, M53.88, M47.816; its one item for the 2nd and
    4th): a plan excluding the category M47 covers nothing of it, and says why."""
    resource = example(examples, "Claim-MED-00050")
    coverage = focal_coverage(examples, resource)
    assert coverage is not None
    claim = fhir.submission(resource, {**coverage, "period": {"start": "2000-01-01"}})
    assert [d.code for d in claim.diagnoses] == ["M96.1", "G89.4", "M53.88", "M47.816"]
    assert {d.system for d in claim.diagnoses} == {"http://hl7.org/fhir/sid/icd-10"}
    assert [line.diagnosis_sequences for line in claim.lines] == [(2, 4)]
    rule = PlanRule(covered_basis_points=10_000, currency=claim.currency)
    paid = adjudicate(claim, {claim.plan: rule})
    assert paid.benefit == sum(line.net for line in claim.lines) > 0
    excluding = rule.model_copy(update={"excluded_diagnoses": frozenset({"M47"})})
    refused = adjudicate(claim, {claim.plan: excluding})
    assert [(line.eligible, line.reasons) for line in refused.lines] == [
        (0, ("diagnosis-excluded:M47.816",))]
    # M96 is excluded too, but the item is not for diagnosis 1: it stays covered
    other = rule.model_copy(update={"excluded_diagnoses": frozenset({"M96"})})
    assert adjudicate(claim, {claim.plan: other}).benefit == paid.benefit


def test_amounts_finer_than_a_minor_unit_and_mixed_currencies_are_refused() -> None:
    coverage = {"status": "active", "payor": [{"display": "P"}]}
    claim: dict[str, Any] = {"use": "claim", "created": "2026-01-02", "item": [
        {"sequence": 1, "productOrService": {"text": "x"},
         "net": {"value": 1.005, "currency": "EUR"}}]}
    with pytest.raises(fhir.NotImportable, match="finer than a minor unit"):
        fhir.submission(claim, coverage)
    claim["item"] = [{"sequence": 1, "productOrService": {"text": "x"},
                      "net": {"value": 1, "currency": "EUR"}},
                     {"sequence": 2, "productOrService": {"text": "y"},
                      "net": {"value": 1, "currency": "USD"}}]
    with pytest.raises(fhir.NotImportable, match="one ISO 4217 currency"):
        fhir.submission(claim, coverage)
    claim["item"] = [{"sequence": 1, "productOrService": {"text": "x"}, "quantity": {
        "value": 3}, "unitPrice": {"value": 12.5, "currency": "JPY"}}]
    with pytest.raises(fhir.NotImportable, match="finer"):  # JPY has no minor unit
        fhir.submission(claim, coverage)
    claim["item"][0]["unitPrice"] = {"value": 125, "currency": "JPY"}
    read = fhir.submission(claim, coverage)
    assert ([line.net for line in read.lines], read.currency) == ([375], "JPY")
