"""Coverages and claims in-process, on the real MongoDB-protocol server (and the real S3
server and localstripe the payment app needs), with the payer sandbox as the
clearinghouse; the FHIR R4 resources served are validated with the ``fhir.resources``
R4B models."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.claim import Claim
from fhir.resources.R4B.claimresponse import ClaimResponse
from fhir.resources.R4B.coverage import Coverage

from healthflow.devkit.embedded import EmbeddedStripe
from healthflow.devkit.testing import TokenFactory
from healthflow.payment.clearinghouse import PlanRule

from .test_api import Client, payment_app
from .test_invoices import LAB, accountant_at, coded, encounter, is_problem, pdf_text

PLANS = {"basic": PlanRule(covered_basis_points=8000, copay=1000,
                           excluded_codes=frozenset({"cosmetic"})),
         "full": PlanRule(covered_basis_points=10_000)}


@pytest.fixture
async def client(mongodb_url: str, unique_name: str, tokens: TokenFactory,
                 stripe_server: EmbeddedStripe, s3_env: dict[str, str]
                 ) -> AsyncIterator[Client]:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env, default_tax_basis_points=700,
                           payer_sandbox_plans=PLANS) as running:
        yield running


def today() -> datetime:
    return datetime.now(UTC)


def a_coverage(plan: str = "basic", **more: Any) -> dict[str, Any]:
    now = today()
    return {"payer_id": "payer-aok", "payer_name": "AOK Sandbox", "subscriber_id": "M-123456",
            "plan": plan, "period_start": (now - timedelta(days=30)).date().isoformat(),
            "period_end": (now + timedelta(days=30)).date().isoformat(), **more}


SNOMED = "http://snomed.info/sct"


async def invoice_of(http: httpx.AsyncClient, app: Any, tokens: TokenFactory, patient: str,
                     lines: list[tuple[str, int, int]]) -> dict[str, Any]:
    """An issued invoice at LAB of charge items ``[(code, quantity, unit price)]`` in one
    encounter, coded J06.9."""
    enc = await encounter(app, patient, "doc-lab", LAB)
    await coded(app, enc, patient)
    return await invoice_in(http, tokens, patient, [(enc, *line) for line in lines])


async def invoice_in(http: httpx.AsyncClient, tokens: TokenFactory, patient: str,
                     lines: list[tuple[str, str, int, int]]) -> dict[str, Any]:
    """An issued invoice at LAB of charge items ``[(encounter, code, quantity, price)]``."""
    doctor = tokens.headers("doc-lab", ("doctor",))
    for enc, code, quantity, price in lines:
        assert (await http.post("/api/v1/charge-items", headers=doctor, json={
            "encounter_id": enc, "code": code, "description": code.title(),
            "quantity": quantity, "unit_price": price, "currency": "EUR"})).status_code == 201
    issued = await http.post("/api/v1/invoices", headers=tokens.headers(
        "acc-lab", ("accountant",)), json={"patient_id": patient, "hospital_id": LAB})
    assert issued.status_code == 201, issued.text
    invoice: dict[str, Any] = issued.json()
    return invoice


async def test_a_patient_keeps_coverages_that_only_they_and_their_hospitals_see(
        client: Client, tokens: TokenFactory) -> None:
    http, app = client
    patient = tokens.headers("p-cov", ("patient",))
    created = await http.post("/api/v1/coverages", headers=patient, json=a_coverage())
    assert created.status_code == 201, created.text
    coverage = created.json()
    assert (coverage["patient_id"], coverage["status"], coverage["subscriber_id"],
            coverage["plan"]) == ("p-cov", "active", "M-123456", "basic")
    # bad input: refused, nothing written
    start = today().date()
    assert is_problem(await http.post("/api/v1/coverages", headers=patient, json=a_coverage(
        period_start=start.isoformat(),
        period_end=(start - timedelta(days=1)).isoformat())), 422)
    assert is_problem(await http.post("/api/v1/coverages", headers=patient, json=a_coverage(
        subscriber_id="")), 422)
    assert is_problem(await http.post("/api/v1/coverages", headers=patient, json={
        **a_coverage(), "patient_id": "p-other"}), 422)
    assert is_problem(await http.post("/api/v1/coverages", headers=tokens.headers(
        "acc-lab", ("accountant",)), json=a_coverage()), 403)
    assert await app.state.runtime.db["coverages"].count_documents({}) == 1

    url = f"/api/v1/coverages/{coverage['id']}"
    assert (await http.get(url, headers=patient)).json() == coverage
    assert [c["id"] for c in (await http.get("/api/v1/coverages", headers=patient)).json()] \
        == [coverage["id"]]
    stranger = tokens.headers("p-other", ("patient",))
    assert is_problem(await http.get(url, headers=stranger), 404)
    assert is_problem(await http.get("/api/v1/coverages", headers=stranger,
                                     params={"patient_id": "p-cov"}), 403)
    # an accountant sees a patient's coverages once their hospital invoiced the patient
    await accountant_at(app, "acc-lab", LAB)
    accountant = tokens.headers("acc-lab", ("accountant",))
    assert is_problem(await http.get(url, headers=accountant), 404)
    assert is_problem(await http.get("/api/v1/coverages", headers=accountant,
                                     params={"patient_id": "p-cov"}), 403)
    await invoice_of(http, app, tokens, "p-cov", [("lab", 1, 500)])
    assert (await http.get(url, headers=accountant)).json()["id"] == coverage["id"]
    assert len((await http.get("/api/v1/coverages", headers=accountant,
                               params={"patient_id": "p-cov"})).json()) == 1
    assert is_problem(await http.get(url, headers=tokens.headers(
        "acc-elsewhere", ("accountant",))), 404)

    # the FHIR R4 Coverage validates with the R4B model and says what the card says
    served = await http.get(f"{url}/fhir", headers=patient)
    assert served.headers["content-type"] == "application/fhir+json"
    resource = served.json()
    Coverage.model_validate(resource)
    assert (resource["status"], resource["subscriberId"], resource["beneficiary"]) == (
        "active", "M-123456", {"reference": "Patient/p-cov"})
    assert resource["payor"][0]["display"] == "AOK Sandbox"
    assert resource["class"][0]["value"] == "basic"
    assert resource["period"]["start"] == coverage["period_start"]

    # withdrawn by its patient only
    assert is_problem(await http.post(f"{url}/cancel", headers=stranger), 404)
    cancelled = await http.post(f"{url}/cancel", headers=patient)
    assert cancelled.json()["status"] == "cancelled"
    withdrawn = (await http.get(f"{url}/fhir", headers=patient)).json()
    assert Coverage.model_validate(withdrawn) and withdrawn["status"] == "cancelled"


async def test_a_claim_is_adjudicated_and_the_patient_pays_the_remainder(
        client: Client, tokens: TokenFactory) -> None:
    http, app = client
    db = app.state.runtime.db
    await accountant_at(app, "acc-lab", LAB)
    accountant = tokens.headers("acc-lab", ("accountant",))
    patient = tokens.headers("p-claim", ("patient",))
    # 2 × 1250 + 999 + a cosmetic 3000 (excluded by the plan)
    invoice = await invoice_of(http, app, tokens, "p-claim", [
        ("2345-7", 2, 1250), ("venipuncture", 1, 999), ("cosmetic", 1, 3000)])
    assert (invoice["total_gross"], invoice["insurance_share"], invoice["patient_share"]) == (
        6499, 0, 6499)
    before = await http.get(f"/api/v1/invoices/{invoice['id']}/pdf", headers=patient)
    assert "Covered by insurance" not in pdf_text(before.content)
    expired = (await http.post("/api/v1/coverages", headers=patient, json=a_coverage(
        period_start="2020-01-01", period_end="2020-12-31"))).json()
    coverage = (await http.post("/api/v1/coverages", headers=patient,
                                json=a_coverage())).json()

    # a coverage not in force: the payer answers error, nothing covered, claim again later
    first = await http.post("/api/v1/claims", headers=patient, json={
        "invoice_id": invoice["id"], "coverage_id": expired["id"]})
    assert first.status_code == 201, first.text
    refused = first.json()["response"]
    assert (refused["outcome"], refused["errors"], refused["benefit"],
            refused["patient_share"]) == ("error", ["coverage-not-in-force"], 0, 6499)
    again = (await http.get(f"/api/v1/invoices/{invoice['id']}", headers=patient)).json()
    assert (again["insurance_share"], again["claim_id"]) == (0, None)

    # who may claim: the invoice's patient or its hospital's finance, with its own coverage
    other = tokens.headers("p-other", ("patient",))
    others = (await http.post("/api/v1/coverages", headers=other, json=a_coverage())).json()
    body = {"invoice_id": invoice["id"], "coverage_id": coverage["id"]}
    assert is_problem(await http.post("/api/v1/claims", headers=other, json=body), 404)
    assert is_problem(await http.post("/api/v1/claims", headers=tokens.headers(
        "acc-elsewhere", ("accountant",)), json=body), 404)
    assert is_problem(await http.post("/api/v1/claims", headers=patient, json={
        **body, "coverage_id": others["id"]}), 422)
    assert is_problem(await http.post("/api/v1/claims", headers=patient, json={
        **body, "total": 1}), 422)
    assert is_problem(await http.post("/api/v1/claims", headers=tokens.headers(
        "doc-lab", ("doctor",)), json=body), 403)
    assert await db["claims"].count_documents({}) == 1

    # two claims at once: one is adjudicated, the other finds the invoice claimed
    results = await asyncio.gather(
        http.post("/api/v1/claims", headers=patient, json=body),
        http.post("/api/v1/claims", headers=accountant, json=body))
    assert sorted(r.status_code for r in results) == [201, 409], [r.text for r in results]
    claim = next(r.json() for r in results if r.status_code == 201)
    response = claim["response"]
    # 80 % rounded down per line: 2000, 799, 0 (excluded); less the 1000 copay = 1799
    assert [(i["eligible"], i["benefit"]) for i in response["items"]] == [
        (2500, 2000 - 1000), (999, 799), (0, 0)]
    assert (response["outcome"], response["copay"], response["benefit"],
            response["patient_share"]) == ("complete", 1000, 1799, 6499 - 1799)
    assert [(i["code"], i["net"]) for i in claim["items"]] == [
        ("2345-7", 2500), ("venipuncture", 999), ("cosmetic", 3000)]
    assert claim["total"] == 6499 and claim["clearinghouse"] == "sandbox"
    assert await db["claims"].count_documents({}) == 2

    # the invoice now owes the patient's share; paid at the desk, never more
    claimed = (await http.get(f"/api/v1/invoices/{invoice['id']}", headers=patient)).json()
    assert (claimed["insurance_share"], claimed["patient_share"], claimed["claim_id"],
            claimed["payment_state"]) == (1799, 4700, claim["id"], "unpaid")
    # the PDF printed before the claim is printed again with the shares
    text = pdf_text((await http.get(f"/api/v1/invoices/{invoice['id']}/pdf",
                                    headers=patient)).content)
    assert "Covered by insurance" in text and "17.99" in text and "47.00" in text, text
    pay_url = f"/api/v1/invoices/{invoice['id']}/payments"
    assert is_problem(await http.post(pay_url, headers=accountant, json={"amount": 4701}),
                      422)
    assert is_problem(await http.post(f"/api/v1/invoices/{invoice['id']}/cancel",
                                      headers=accountant), 409)
    paid = (await http.post(pay_url, headers=accountant, json={"amount": 4700})).json()
    assert (paid["status"], paid["payment_state"], paid["paid"]) == ("balanced", "paid", 4700)
    summary = (await http.get("/api/v1/billing/summary", headers=patient)).json()
    assert summary["currencies"] == [{"currency": "EUR", "billed": 6499, "paid": 4700,
                                      "outstanding": 0, "refunded": 0,
                                      "insurance_share": 1799}]
    assert is_problem(await http.post("/api/v1/claims", headers=patient, json=body), 409)

    # events: identifiers and amounts only
    events = {e["type"]: e["envelope"]["data"] for e in await db["outbox"].find(
        {"type": {"$in": ["claim.submitted", "claim.adjudicated"]},
         "envelope.data.claim_id": claim["id"]}).to_list()}
    assert events["claim.submitted"] == {
        "claim_id": claim["id"], "invoice_id": invoice["id"], "coverage_id": coverage["id"],
        "patient_id": "p-claim", "hospital_id": LAB, "total": 6499, "currency": "EUR"}
    assert events["claim.adjudicated"] == {
        "claim_id": claim["id"], "claim_response_id": response["id"],
        "invoice_id": invoice["id"], "patient_id": "p-claim", "outcome": "complete",
        "benefit": 1799, "patient_share": 4700, "currency": "EUR"}
    assert "M-123456" not in json.dumps(list(events.values()))

    # reading: its patient and the hospital's finance; lists newest first, keyset pages
    assert (await http.get(f"/api/v1/claims/{claim['id']}", headers=accountant)).json() \
        == claim
    assert is_problem(await http.get(f"/api/v1/claims/{claim['id']}", headers=other), 404)
    page = (await http.get("/api/v1/claims", headers=patient, params={"limit": 1})).json()
    assert [c["id"] for c in page["items"]] == [claim["id"]] and page["next_cursor"]
    rest = (await http.get("/api/v1/claims", headers=patient, params={
        "limit": 1, "cursor": page["next_cursor"]})).json()
    assert [c["response"]["outcome"] for c in rest["items"]] == ["error"]
    assert (await http.get("/api/v1/claims", headers=other)).json()["items"] == []
    assert is_problem(await http.get("/api/v1/claims", headers=other,
                                     params={"patient_id": "p-claim"}), 403)
    assert len((await http.get("/api/v1/claims", headers=accountant, params={
        "hospital_id": LAB})).json()["items"]) == 2
    assert is_problem(await http.get("/api/v1/claims", headers=tokens.headers(
        "acc-elsewhere", ("accountant",)), params={"hospital_id": LAB}), 403)

    # FHIR R4: a Bundle of the Claim, its ClaimResponse and the Coverage, valid in R4B
    served = await http.get(f"/api/v1/claims/{claim['id']}/fhir", headers=patient)
    assert served.headers["content-type"] == "application/fhir+json"
    # the served JSON is checked after each resource validated (decimals read exactly)
    raw = json.loads(served.text, parse_float=Decimal)
    Bundle.model_validate(raw)
    kinds = {e["resource"]["resourceType"]: e["resource"] for e in raw["entry"]}
    assert set(kinds) == {"Claim", "ClaimResponse", "Coverage"}
    Coverage.model_validate(kinds["Coverage"])
    fhir_claim = kinds["Claim"]
    Claim.model_validate(fhir_claim)
    assert fhir_claim["total"] == {"value": Decimal("64.99"), "currency": "EUR"}
    assert [i["net"]["value"] for i in fhir_claim["item"]] == [25, Decimal("9.99"), 30]
    assert fhir_claim["insurance"][0]["coverage"] == {"reference": f"Coverage/{coverage['id']}"}
    assert fhir_claim["provider"] == {"reference": f"Organization/{LAB}"}
    fhir_response = kinds["ClaimResponse"]
    ClaimResponse.model_validate(fhir_response)
    assert fhir_response["outcome"] == "complete"
    assert fhir_response["request"] == {"reference": f"Claim/{claim['id']}"}
    totals = {t["category"]["coding"][0]["code"]: t["amount"]["value"] * 100
              for t in fhir_response["total"]}
    assert totals == {"submitted": 6499, "copay": 1000, "benefit": 1799}
    benefits = [a["amount"]["value"] * 100 for item in fhir_response["item"]
                for a in item["adjudication"] if a["category"]["coding"][0]["code"] == "benefit"]
    assert sum(benefits) == 1799
    refused_bundle = (await http.get(f"/api/v1/claims/{rest['items'][0]['id']}/fhir",
                                     headers=patient)).json()
    error = refused_bundle["entry"][1]["resource"]
    ClaimResponse.model_validate(error)
    assert (error["outcome"], error["error"][0]["code"]["coding"][0]["code"]) == (
        "error", "coverage-not-in-force")


async def test_a_payer_covering_everything_balances_the_invoice_at_once(
        client: Client, tokens: TokenFactory) -> None:
    http, app = client
    await accountant_at(app, "acc-lab", LAB)
    patient = tokens.headers("p-full", ("patient",))
    invoice = await invoice_of(http, app, tokens, "p-full", [("lab", 3, 1333)])
    coverage = (await http.post("/api/v1/coverages", headers=patient,
                                json=a_coverage("full", period_end=None))).json()
    claim = (await http.post("/api/v1/claims", headers=tokens.headers(
        "acc-lab", ("accountant",)), json={"invoice_id": invoice["id"],
                                           "coverage_id": coverage["id"]})).json()
    assert (claim["response"]["benefit"], claim["response"]["patient_share"]) == (3999, 0)
    after = (await http.get(f"/api/v1/invoices/{invoice['id']}", headers=patient)).json()
    assert (after["status"], after["payment_state"], after["paid"],
            after["insurance_share"]) == ("balanced", "paid", 0, 3999)


async def test_without_a_clearinghouse_claims_are_refused_and_nothing_is_written(
        mongodb_url: str, unique_name: str, tokens: TokenFactory,
        stripe_server: EmbeddedStripe, s3_env: dict[str, str]) -> None:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env, clearinghouse="none") as (http, app):
        await accountant_at(app, "acc-lab", LAB)
        patient = tokens.headers("p-none", ("patient",))
        invoice = await invoice_of(http, app, tokens, "p-none", [("lab", 1, 100)])
        coverage = (await http.post("/api/v1/coverages", headers=patient,
                                    json=a_coverage())).json()
        refused = await http.post("/api/v1/claims", headers=patient, json={
            "invoice_id": invoice["id"], "coverage_id": coverage["id"]})
        assert is_problem(refused, 503) and refused.headers["retry-after"]
        assert await app.state.runtime.db["claims"].count_documents({}) == 0
        assert await app.state.runtime.db["outbox"].count_documents(
            {"type": {"$regex": "^claim"}}) == 0
