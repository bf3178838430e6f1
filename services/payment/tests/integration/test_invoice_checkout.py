"""The patient pays what remains of an invoice by card (``POST /invoices/{id}/checkout``),
in-process on the real MongoDB-protocol server and a real localstripe (stripe library);
webhooks signed as Stripe signs them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from healthflow.common.events.outbox import OUTBOX
from healthflow.devkit.embedded import EmbeddedStripe
from healthflow.devkit.testing import TokenFactory, eventually
from healthflow.payment import reconcile
from healthflow.payment.clearinghouse import PlanRule

from .test_api import Client, intent_event, pay, payment_app, signed, webhook
from .test_insurance import a_coverage, invoice_of
from .test_invoices import LAB, accountant_at, is_problem
from .test_stripe_outage import stripe_down

DECLINED = "4000000000000341"  # attaches, then declines on confirm
GOOD = "4242424242424242"


@pytest.fixture
async def client(mongodb_url: str, unique_name: str, tokens: TokenFactory,
                 stripe_server: EmbeddedStripe, s3_env: dict[str, str]
                 ) -> AsyncIterator[Client]:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env, default_tax_basis_points=700, payer_sandbox_plans={
                               "basic": PlanRule(covered_basis_points=8000, copay=1000)}
                           ) as running:
        yield running


async def test_the_patient_pays_the_share_left_after_a_claim_by_card_once(
        client: Client, tokens: TokenFactory, stripe_server: EmbeddedStripe) -> None:
    http, app = client
    db = app.state.runtime.db
    await accountant_at(app, "acc-lab", LAB)
    patient = tokens.headers("p-card", ("patient",))
    invoice = await invoice_of(http, app, tokens, "p-card", [("lab", 2, 1500)])
    coverage = (await http.post("/api/v1/coverages", headers=patient,
                                json=a_coverage())).json()
    claim = (await http.post("/api/v1/claims", headers=patient, json={
        "invoice_id": invoice["id"], "coverage_id": coverage["id"]})).json()
    share = claim["response"]["patient_share"]
    assert (claim["response"]["benefit"], share) == (1400, 1600)  # 80 % of 3000 - 1000
    url = f"/api/v1/invoices/{invoice['id']}/checkout"

    assert is_problem(await http.post(url, headers=tokens.headers("p-other", ("patient",))),
                      404)
    assert is_problem(await http.post(url, headers=tokens.headers("acc-lab", ("accountant",))),
                      403)
    assert (await http.post(url)).status_code == 401
    opened = await http.post(url, headers=patient)
    assert opened.status_code == 201, opened.text
    checkout = opened.json()
    assert (checkout["amount"], checkout["currency"], checkout["status"]) == (
        1600, "EUR", "requires_payment")
    assert checkout["client_secret"].startswith(checkout["intent_id"])
    again = await http.post(url, headers=patient)
    assert again.status_code == 200 and again.json() == checkout  # same intent, same key

    intent = await asyncio.to_thread(pay, stripe_server, checkout["intent_id"], GOOD)
    assert intent.status == "succeeded"
    succeeded = signed(stripe_server.webhook_secret,
                       intent_event(intent, "payment_intent.succeeded"))
    assert (await webhook(http, *succeeded)).json()["outcome"] == "applied"
    assert (await webhook(http, *succeeded)).json()["outcome"] == "duplicate"
    late = signed(stripe_server.webhook_secret,
                  intent_event(intent, "payment_intent.payment_failed"))
    assert (await webhook(http, *late)).json()["outcome"] == "ignored"  # never undoes it

    paid = (await http.get(f"/api/v1/invoices/{invoice['id']}", headers=patient)).json()
    assert (paid["status"], paid["payment_state"], paid["paid"], paid["insurance_share"]) == (
        "balanced", "paid", 1600, 1400)
    stored = await db["invoices"].find_one({"_id": invoice["id"]})
    assert [(p["source"], p["amount"], p["payment_id"]) for p in stored["payments"]] == [
        ("card", 1600, checkout["id"])]
    published = await db[OUTBOX].find({"type": "invoice.paid"}).to_list()
    assert [e["envelope"]["data"] for e in published] == [{
        "invoice_id": invoice["id"], "checkout_id": checkout["id"], "patient_id": "p-card",
        "amount": 1600, "currency": "EUR", "intent_id": checkout["intent_id"],
        "status": "balanced"}]
    assert is_problem(await http.post(url, headers=patient), 409)  # nothing left to pay


async def test_a_card_success_after_the_desk_took_the_share_is_given_back(
        client: Client, tokens: TokenFactory, stripe_server: EmbeddedStripe) -> None:
    http, app = client
    await accountant_at(app, "acc-lab", LAB)
    patient = tokens.headers("p-twice", ("patient",))
    invoice = await invoice_of(http, app, tokens, "p-twice", [("lab", 1, 2500)])
    checkout = (await http.post(f"/api/v1/invoices/{invoice['id']}/checkout",
                                headers=patient)).json()
    assert checkout["amount"] == 2500
    # the card is charged at Stripe, its webhook comes after the desk took the share (the
    # stale checkout's closing finds the intent succeeded and leaves it to the webhook)
    intent = await asyncio.to_thread(pay, stripe_server, checkout["intent_id"], GOOD)
    desk = await http.post(f"/api/v1/invoices/{invoice['id']}/payments", headers=tokens.headers(
        "acc-lab", ("accountant",)), json={"amount": 2500})
    assert desk.status_code == 200, desk.text
    succeeded = signed(stripe_server.webhook_secret,
                       intent_event(intent, "payment_intent.succeeded"))
    assert (await webhook(http, *succeeded)).json()["outcome"] == "refunded"
    after = (await http.get(f"/api/v1/invoices/{invoice['id']}", headers=patient)).json()
    assert (after["paid"], after["status"]) == (2500, "balanced")  # not 5000
    refunds = await app.state.runtime.state["stripe"].refunds_of(checkout["intent_id"])
    assert [amount for _, amount, _ in refunds] == [2500]
    assert await app.state.runtime.db[OUTBOX].count_documents({"type": "invoice.paid"}) == 0


async def test_a_declined_card_leaves_the_share_owed_and_the_checkout_open(
        client: Client, tokens: TokenFactory, stripe_server: EmbeddedStripe) -> None:
    http, app = client
    await accountant_at(app, "acc-lab", LAB)
    patient = tokens.headers("p-declined", ("patient",))
    invoice = await invoice_of(http, app, tokens, "p-declined", [("lab", 1, 1999)])
    url = f"/api/v1/invoices/{invoice['id']}/checkout"
    checkout = (await http.post(url, headers=patient)).json()
    declined = await asyncio.to_thread(pay, stripe_server, checkout["intent_id"], DECLINED)
    assert declined.status == "requires_payment_method"
    failed = signed(stripe_server.webhook_secret,
                    intent_event(declined, "payment_intent.payment_failed"))
    assert (await webhook(http, *failed)).json()["outcome"] == "applied"
    unpaid = (await http.get(f"/api/v1/invoices/{invoice['id']}", headers=patient)).json()
    assert (unpaid["paid"], unpaid["payment_state"], unpaid["status"]) == (0, "unpaid", "issued")
    again = await http.post(url, headers=patient)  # the same intent, for another card
    assert again.status_code == 200
    assert (again.json()["status"], again.json()["client_secret"]) == (
        "declined", checkout["client_secret"])
    assert await app.state.runtime.db[OUTBOX].count_documents({"type": "invoice.paid"}) == 0


async def test_a_card_payment_whose_webhook_was_lost_is_recorded_by_reconciliation_once(
        client: Client, tokens: TokenFactory, stripe_server: EmbeddedStripe) -> None:
    http, app = client
    runtime = app.state.runtime
    await accountant_at(app, "acc-lab", LAB)
    patient = tokens.headers("p-lost", ("patient",))
    invoice = await invoice_of(http, app, tokens, "p-lost", [("lab", 1, 1234)])
    checkout = (await http.post(f"/api/v1/invoices/{invoice['id']}/checkout",
                                headers=patient)).json()
    intent = await asyncio.to_thread(pay, stripe_server, checkout["intent_id"], GOOD)
    assert intent.status == "succeeded"  # and no webhook ever arrives
    stripe = runtime.state["stripe"]
    assert await reconcile.reconcile(runtime, stripe, window=timedelta(hours=1)) == 1
    assert await reconcile.reconcile(runtime, stripe, window=timedelta(hours=1)) == 0
    paid = (await http.get(f"/api/v1/invoices/{invoice['id']}", headers=patient)).json()
    assert (paid["paid"], paid["status"]) == (1234, "balanced")
    late = signed(stripe_server.webhook_secret, intent_event(intent, "payment_intent.succeeded"))
    assert (await webhook(http, *late)).json()["outcome"] == "ignored"
    assert await runtime.db[OUTBOX].count_documents({"type": "invoice.paid"}) == 1


async def test_a_checkout_while_stripe_is_unreachable_answers_503_with_retry_after(
        client: Client, tokens: TokenFactory) -> None:
    http, app = client
    await accountant_at(app, "acc-lab", LAB)
    invoice = await invoice_of(http, app, tokens, "p-down", [("lab", 1, 1500)])
    url = f"/api/v1/invoices/{invoice['id']}/checkout"
    patient = tokens.headers("p-down", ("patient",))
    with stripe_down(app):
        refused = await http.post(url, headers=patient)
    assert is_problem(refused, 503), refused.text
    assert refused.headers["retry-after"] == "30"
    assert "payment provider is unavailable" in refused.json()["detail"]
    assert await app.state.runtime.db["invoice_checkouts"].count_documents({}) == 0
    opened = await http.post(url, headers=patient)  # Stripe back: the retry works
    assert opened.status_code == 201, opened.text


async def checkout_status(app: Any, checkout_id: str, status: str) -> dict[str, Any]:
    """The checkout once the close job brought it to ``status``."""
    db = app.state.runtime.db

    async def reached() -> bool:
        doc = await db["invoice_checkouts"].find_one({"_id": checkout_id})
        return bool(doc and doc["status"] == status)

    await eventually(reached, within=15, interval=0.1, message=f"checkout not {status}")
    doc: dict[str, Any] = await db["invoice_checkouts"].find_one({"_id": checkout_id})
    return doc


async def test_checkouts_of_a_voided_or_otherwise_paid_invoice_are_cancelled_at_stripe(
        client: Client, tokens: TokenFactory, stripe_server: EmbeddedStripe) -> None:
    """A card checkout the invoice no longer matches is closed at Stripe through the
    keyed Stripe job queue: the invoice voided, or paid in part at the desk (a new
    checkout for the rest stays open)."""
    http, app = client
    stripe = app.state.runtime.state["stripe"]
    accountant = tokens.headers("acc-lab", ("accountant",))
    await accountant_at(app, "acc-lab", LAB)
    patient = tokens.headers("p-stale", ("patient",))
    voided = await invoice_of(http, app, tokens, "p-stale", [("lab", 1, 3000)])
    first = (await http.post(f"/api/v1/invoices/{voided['id']}/checkout",
                             headers=patient)).json()
    cancelled = await http.post(f"/api/v1/invoices/{voided['id']}/cancel", headers=accountant)
    assert cancelled.status_code == 200, cancelled.text
    closed = await checkout_status(app, first["id"], "cancelled")
    assert closed["client_secret"] is None
    assert (await stripe.retrieve_intent(first["intent_id"])).status == "canceled"
    assert await app.state.runtime.db["jobs"].find_one(
        {"_id": f"close-checkout-{first['id']}", "status": "done"})
    # a late failure webhook of the closed intent changes nothing
    late = await stripe.client.v1.payment_intents.retrieve_async(first["intent_id"])
    assert (await webhook(http, *signed(stripe_server.webhook_secret, intent_event(
        late, "payment_intent.payment_failed")))).json()["outcome"] == "ignored"

    part = await invoice_of(http, app, tokens, "p-stale", [("lab", 1, 4000)])
    url = f"/api/v1/invoices/{part['id']}/checkout"
    whole = (await http.post(url, headers=patient)).json()
    desk = await http.post(f"/api/v1/invoices/{part['id']}/payments", headers=accountant,
                           json={"amount": 1500})
    assert desk.status_code == 200, desk.text
    await checkout_status(app, whole["id"], "cancelled")
    assert (await stripe.retrieve_intent(whole["intent_id"])).status == "canceled"
    rest = (await http.post(url, headers=patient)).json()
    assert (rest["amount"], rest["status"]) == (2500, "requires_payment")
    paid = await asyncio.to_thread(pay, stripe_server, rest["intent_id"], GOOD)
    assert (await webhook(http, *signed(stripe_server.webhook_secret, intent_event(
        paid, "payment_intent.succeeded")))).json()["outcome"] == "applied"
    after = (await http.get(f"/api/v1/invoices/{part['id']}", headers=patient)).json()
    assert (after["paid"], after["status"]) == (4000, "balanced")
    assert await app.state.runtime.db["jobs"].count_documents(
        {"_id": f"close-checkout-{rest['id']}"}) == 0  # the paying one is not closed
