"""Claims carry their encounters' billing codes (records' ``encounter.coded``): the
payment service's read model keeps the newest revision whatever the order and however
often it arrives; a claim lists the ICD-10 diagnoses and coded procedures and links each
item to its encounter's diagnoses (FHIR R4 ``Claim.diagnosis``, ``Claim.procedure``,
``item.diagnosisSequence``, valid in R4B); a claim waits for the codes (409); the payer
sandbox's plans exclude diagnoses or require one, and say which code. Real
MongoDB-protocol server, S3 server and localstripe, the in-process transport."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.claim import Claim
from fhir.resources.R4B.claimresponse import ClaimResponse

from healthflow.devkit.embedded import EmbeddedStripe
from healthflow.devkit.testing import TokenFactory
from healthflow.payment import fhir
from healthflow.payment.clearinghouse import ClaimDiagnosis, PlanRule

from .test_api import Client, payment_app
from .test_insurance import SNOMED, a_coverage, invoice_in
from .test_invoices import FLU, ICD10, LAB, accountant_at, coded, encounter, is_problem

HYPERTENSION = {"system": ICD10, "code": "I10", "display": "Essential (primary) hypertension"}
DIABETES = {"system": ICD10, "code": "E11.9",
            "display": "Non-insulin-dependent diabetes mellitus without complications"}
SCAR = {"system": ICD10, "code": "L90.5", "display": "Scar conditions and fibrosis of skin"}
SWAB = {"system": SNOMED, "code": "472881004"}
PLANS = {"full": PlanRule(covered_basis_points=10_000),
         "derm": PlanRule(covered_basis_points=10_000, excluded_diagnoses=frozenset({"L90"})),
         "strict": PlanRule(covered_basis_points=10_000, diagnosis_required=True)}


@pytest.fixture
async def client(mongodb_url: str, unique_name: str, tokens: TokenFactory,
                 stripe_server: EmbeddedStripe, s3_env: dict[str, str]
                 ) -> AsyncIterator[Client]:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env, payer_sandbox_plans=PLANS) as running:
        await accountant_at(running[1], "acc-lab", LAB)
        yield running


async def claim(http: httpx.AsyncClient, tokens: TokenFactory, patient: str,
                invoice: dict[str, Any], plan: str) -> httpx.Response:
    headers = tokens.headers(patient, ("patient",))
    coverage = (await http.post("/api/v1/coverages", headers=headers,
                                json=a_coverage(plan))).json()
    return await http.post("/api/v1/claims", headers=headers, json={
        "invoice_id": invoice["id"], "coverage_id": coverage["id"]})


async def test_the_newest_codes_go_on_the_claim_linked_to_each_items_encounter(
        client: Client, tokens: TokenFactory) -> None:
    http, app = client
    db = app.state.runtime.db
    first, second = (await encounter(app, "p-dx", "doc-lab", LAB),
                     await encounter(app, "p-dx", "doc-lab", LAB))
    # revision 1, then 3 (a correction), then a late 2 and a redelivered 3: 3 stays
    await coded(app, first, "p-dx", 1, [FLU])
    latest = await coded(app, first, "p-dx", 3, [FLU, HYPERTENSION], [SWAB])
    await coded(app, first, "p-dx", 2, [SCAR])
    await coded(app, first, "p-dx", 3, [SCAR], event_id=latest)
    kept = await db["encounter_codes"].find_one({"_id": first})
    assert (kept["version"], kept["diagnoses"], kept["procedures"]) == (
        3, [FLU, HYPERTENSION], [SWAB])
    await coded(app, second, "p-dx", 1, [HYPERTENSION, DIABETES])

    invoice = await invoice_in(http, tokens, "p-dx", [(first, "2345-7", 1, 1000),
                                                      (second, "lab", 2, 250)])
    answered = await claim(http, tokens, "p-dx", invoice, "full")
    assert answered.status_code == 201, answered.text
    made = answered.json()
    # I10 of both encounters once; each item points to its own encounter's diagnoses
    assert [(d["sequence"], d["code"]) for d in made["diagnoses"]] == [
        (1, "J06.9"), (2, "I10"), (3, "E11.9")]
    assert made["diagnoses"][0] == {"sequence": 1, **FLU}
    assert made["procedures"] == [{"sequence": 1, **SWAB}]
    assert [(i["encounter_id"], i["diagnosis_sequence"]) for i in made["items"]] == [
        (first, [1, 2]), (second, [2, 3])]
    stored = await db["claims"].find_one({"_id": made["id"]})
    assert sorted((c["encounter_id"], c["revision"]) for c in stored["coding"]) == sorted(
        [(first, 3), (second, 1)])
    # codes stay out of the claim events
    events = await db["outbox"].find({"type": {"$regex": "^claim"}}).to_list()
    assert len(events) == 2 and "J06" not in json.dumps([e["envelope"]["data"]
                                                         for e in events])

    served = await http.get(f"/api/v1/claims/{made['id']}/fhir",
                            headers=tokens.headers("p-dx", ("patient",)))
    raw = json.loads(served.text, parse_float=Decimal)
    Bundle.model_validate(raw)
    resource = next(e["resource"] for e in raw["entry"]
                    if e["resource"]["resourceType"] == "Claim")
    Claim.model_validate(resource)
    assert resource["diagnosis"][0] == {"sequence": 1, "diagnosisCodeableConcept": {
        "coding": [FLU]}}
    assert [d["diagnosisCodeableConcept"]["coding"][0]["code"]
            for d in resource["diagnosis"]] == ["J06.9", "I10", "E11.9"]
    assert resource["procedure"] == [{"sequence": 1, "procedureCodeableConcept": {
        "coding": [SWAB]}}]
    assert [i["diagnosisSequence"] for i in resource["item"]] == [[1, 2], [2, 3]]
    # what the clearinghouse was sent is read back from it: the same diagnoses and links
    coverage = next(e["resource"] for e in raw["entry"]
                    if e["resource"]["resourceType"] == "Coverage")
    sent = fhir.submission(resource, coverage)
    assert sent.diagnoses == (ClaimDiagnosis(1, "J06.9", ICD10), ClaimDiagnosis(2, "I10", ICD10),
                              ClaimDiagnosis(3, "E11.9", ICD10))
    assert [li.diagnosis_sequences for li in sent.lines] == [(1, 2), (2, 3)]


async def test_a_claim_waits_until_the_encounter_is_coded(
        client: Client, tokens: TokenFactory) -> None:
    http, app = client
    db = app.state.runtime.db
    enc = await encounter(app, "p-wait", "doc-lab", LAB)
    invoice = await invoice_in(http, tokens, "p-wait", [(enc, "lab", 1, 900)])
    refused = await claim(http, tokens, "p-wait", invoice, "full")
    assert is_problem(refused, 409), refused.text
    problem = refused.json()
    assert problem["type"].endswith("/encounter-not-coded")
    assert enc in problem["detail"] and "retry" in problem["detail"]
    assert refused.headers["retry-after"] == "60"
    # nothing written: no claim, no event, the invoice as it was
    assert await db["claims"].count_documents({}) == 0
    assert await db["outbox"].count_documents({"type": {"$regex": "^claim"}}) == 0
    after = await db["invoices"].find_one({"_id": invoice["id"]})
    assert "last_claim_id" not in after and after.get("insurance_share", 0) == 0

    await coded(app, enc, "p-wait")
    retried = await claim(http, tokens, "p-wait", invoice, "full")
    assert retried.status_code == 201, retried.text
    assert [d["code"] for d in retried.json()["diagnoses"]] == ["J06.9"]


async def test_a_plan_excludes_a_diagnosis_or_requires_one_and_names_the_code(
        client: Client, tokens: TokenFactory) -> None:
    http, app = client
    scar, flu = (await encounter(app, "p-derm", "doc-lab", LAB),
                 await encounter(app, "p-derm", "doc-lab", LAB))
    await coded(app, scar, "p-derm", diagnoses=[SCAR])
    await coded(app, flu, "p-derm", diagnoses=[FLU])
    invoice = await invoice_in(http, tokens, "p-derm", [(scar, "excision", 1, 2000),
                                                        (flu, "lab", 1, 800)])
    answered = await claim(http, tokens, "p-derm", invoice, "derm")
    assert answered.status_code == 201, answered.text
    response = answered.json()["response"]
    # L90.5 falls under the excluded L90: its line is not covered, the other is
    assert [(i["eligible"], i["benefit"], i["reasons"]) for i in response["items"]] == [
        (0, 0, ["diagnosis-excluded:L90.5"]), (800, 800, [])]
    assert (response["outcome"], response["benefit"], response["patient_share"]) == (
        "complete", 800, 2000)
    served = (await http.get(f"/api/v1/claims/{answered.json()['id']}/fhir",
                             headers=tokens.headers("p-derm", ("patient",)))).json()
    fhir_response = next(e["resource"] for e in served["entry"]
                         if e["resource"]["resourceType"] == "ClaimResponse")
    ClaimResponse.model_validate(fhir_response)
    eligible = next(a for a in fhir_response["item"][0]["adjudication"]
                    if a["category"]["coding"][0]["code"] == "eligible")
    assert eligible["reason"]["coding"][0]["code"] == "diagnosis-excluded"
    assert "L90.5" in eligible["reason"]["text"]

    # a plan that requires a diagnosis: an encounter finished with none is not covered
    bare = await encounter(app, "p-strict", "doc-lab", LAB)
    await coded(app, bare, "p-strict", diagnoses=[], procedures=[SWAB])
    strict = await claim(http, tokens, "p-strict", await invoice_in(
        http, tokens, "p-strict", [(bare, "lab", 1, 700)]), "strict")
    assert strict.status_code == 201, strict.text
    assert [(i["eligible"], i["reasons"]) for i in strict.json()["response"]["items"]] == [
        (0, ["diagnosis-required"])]
    assert strict.json()["response"]["benefit"] == 0
