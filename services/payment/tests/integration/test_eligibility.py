"""Eligibility checks (FHIR CoverageEligibilityRequest/Response) in-process, on the real
MongoDB-protocol server, through the payer sandbox as the clearinghouse. Dates are
relative to today (UTC), so the tests pass on any day."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from healthflow.common.events.outbox import OUTBOX
from healthflow.contracts.appointment import AppointmentBooked
from healthflow.devkit.embedded import EmbeddedStripe
from healthflow.devkit.testing import TokenFactory
from healthflow.payment import eligibility, service
from healthflow.payment.clearinghouse import PlanRule

from .test_api import Client, booked, payment_app
from .test_insurance import a_coverage, today
from .test_invoices import is_problem


@pytest.fixture
async def client(mongodb_url: str, unique_name: str, tokens: TokenFactory,
                 stripe_server: EmbeddedStripe, s3_env: dict[str, str]
                 ) -> AsyncIterator[Client]:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env, payer_sandbox_plans={
                               "basic": PlanRule(covered_basis_points=8000)}) as running:
        yield running


async def test_a_patient_asks_whether_their_coverage_is_in_force_and_the_answer_is_kept(
        client: Client, tokens: TokenFactory) -> None:
    http, app = client
    runtime = app.state.runtime
    patient = tokens.headers("p-elig", ("patient",))
    coverage = (await http.post("/api/v1/coverages", headers=patient,
                                json=a_coverage())).json()  # 30 days either side of today
    url = f"/api/v1/coverages/{coverage['id']}/eligibility"
    now = today().date()

    answered = await http.post(url, headers=patient)  # no body: today
    assert answered.status_code == 201, answered.text
    body = answered.json()
    assert (body["outcome"], body["inforce"], body["reasons"], body["service_date"],
            body["clearinghouse"]) == ("complete", True, [], now.isoformat(), "sandbox")
    assert await eligibility.verified_on(runtime.db, "p-elig", now)

    later = (now + timedelta(days=31)).isoformat()
    out_of_period = (await http.post(url, headers=patient, json={"service_date": later})
                     ).json()
    assert (out_of_period["outcome"], out_of_period["inforce"], out_of_period["reasons"]) == (
        "complete", False, ["coverage-not-in-force"])
    assert not await eligibility.verified_on(runtime.db, "p-elig", now + timedelta(days=31))

    assert is_problem(await http.post(url, headers=tokens.headers("p-other", ("patient",))),
                      404)
    assert is_problem(await http.post(url, headers=tokens.headers("acc", ("accountant",))),
                      403)
    assert is_problem(await http.post(url, headers=patient, json={"service_date": "soon"}),
                      422)
    assert is_problem(await http.post(url, headers=patient, json={"extra": 1}), 422)
    kept = await runtime.db["eligibility_responses"].count_documents({})
    assert kept == 2  # refused requests stored nothing

    # a withdrawn coverage is not in force, and no longer counts for booking
    await http.post(f"/api/v1/coverages/{coverage['id']}/cancel", headers=patient)
    assert not await eligibility.verified_on(runtime.db, "p-elig", now)
    withdrawn = (await http.post(url, headers=patient)).json()
    assert (withdrawn["inforce"], withdrawn["reasons"]) == (False, ["coverage-inactive"])

    unknown = (await http.post("/api/v1/coverages", headers=patient,
                               json=a_coverage("gold"))).json()
    error = (await http.post(f"/api/v1/coverages/{unknown['id']}/eligibility",
                             headers=patient)).json()
    assert (error["outcome"], error["inforce"], error["reasons"]) == (
        "error", False, ["plan-unknown"])


async def test_without_a_clearinghouse_eligibility_is_refused_and_nothing_kept(
        mongodb_url: str, unique_name: str, tokens: TokenFactory,
        stripe_server: EmbeddedStripe, s3_env: dict[str, str]) -> None:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env, clearinghouse="none") as (http, app):
        patient = tokens.headers("p-none", ("patient",))
        coverage = (await http.post("/api/v1/coverages", headers=patient,
                                    json=a_coverage())).json()
        refused = await http.post(f"/api/v1/coverages/{coverage['id']}/eligibility",
                                  headers=patient)
        assert is_problem(refused, 503)
        assert await app.state.runtime.db["eligibility_responses"].count_documents({}) == 0


async def book(app: Any, event: AppointmentBooked) -> None:
    """The ``appointment.booked`` handler's effect, with the app's settings."""
    runtime = app.state.runtime
    settings = service.settings_of(runtime)
    await runtime.transact(lambda uow: service.open_checkout(
        uow, service.provider(runtime), event, service.hold_of(settings),
        settings.eligibility_required_hospitals))


async def test_a_hospital_requiring_eligibility_refuses_a_booking_without_a_verified_coverage(
        mongodb_url: str, unique_name: str, tokens: TokenFactory,
        stripe_server: EmbeddedStripe, s3_env: dict[str, str]) -> None:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env, payer_sandbox_plans={"basic": PlanRule(
                               covered_basis_points=8000)},
                           eligibility_required_hospitals=frozenset({"h-strict"})
                           ) as (http, app):
        db = app.state.runtime.db
        uninsured = booked("p-gate").model_copy(update={"location_id": "h-strict"})
        await book(app, uninsured)
        await book(app, uninsured)  # redelivered: still refused once
        assert await db["payments"].count_documents({}) == 0
        refused = await db[OUTBOX].find({"type": "payment.expired"}).to_list()
        assert [(e["envelope"]["data"]["appointment_id"], e["envelope"]["data"]["status"])
                for e in refused] == [(uninsured.appointment_id, "refused")]

        elsewhere = booked("p-gate").model_copy(update={"location_id": "h-free"})
        await book(app, elsewhere)  # a hospital that does not require it: the usual hold
        assert await db["payments"].count_documents(
            {"appointment_id": elsewhere.appointment_id}) == 1

        patient = tokens.headers("p-gate", ("patient",))
        coverage = (await http.post("/api/v1/coverages", headers=patient,
                                    json=a_coverage())).json()  # today ± 30 days
        verified = await http.post(f"/api/v1/coverages/{coverage['id']}/eligibility",
                                   headers=patient)
        assert verified.json()["inforce"] is True
        insured = booked("p-gate").model_copy(update={"location_id": "h-strict"})
        await book(app, insured)  # 3 days ahead: inside the verified coverage's period
        assert await db["payments"].count_documents(
            {"appointment_id": insured.appointment_id}) == 1
        assert await db[OUTBOX].count_documents({"type": "payment.expired"}) == 1
