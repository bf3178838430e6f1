"""Charge items, invoices and billing summaries in-process, on the real MongoDB-protocol
server, a real S3 server (the invoice PDFs) and localstripe; the read models fed
through the service's own in-process transport, as the other services publish them."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pypdf
import pytest

from healthflow.common.events.envelope import CloudEvent
from healthflow.contracts.records import EncounterCoded
from healthflow.devkit.embedded import EmbeddedStripe
from healthflow.devkit.testing import (
    TokenFactory,
    doctor_schedule,
    eventually,
    schedule_window,
)
from healthflow.payment import invoices, reconcile
from healthflow.payment.domain import ChargeItemStatus

from .test_api import (
    Client,
    booked,
    deliver_booking,
    deliver_cancel,
    intent_event,
    pay,
    payment_app,
    signed,
    webhook,
)

TELE = "h-tele"  # the online doctor's hospital (tax 19 %)
LAB = "h-lab"  # where the lab encounter happens (the default 7 %)


@pytest.fixture
async def client(mongodb_url: str, unique_name: str, tokens: TokenFactory,
                 stripe_server: EmbeddedStripe, s3_env: dict[str, str]
                 ) -> AsyncIterator[Client]:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env, tax_rates={TELE: 1900},
                           default_tax_basis_points=700) as running:
        yield running


async def deliver(app: Any, type_: str, data: dict[str, Any], source: str) -> None:
    await app.state.runtime.transport.publish(CloudEvent(
        id=str(uuid.uuid4()), source=f"/healthflow/{source}", type=type_, data=data,
        time=datetime.now(UTC)))


async def accountant_at(app: Any, user_id: str, hospital_id: str) -> None:
    await deliver(app, "staff.assigned", {
        "hospital_id": hospital_id, "department_id": None, "user_id": user_id,
        "staff_role": "accountant", "membership_id": str(uuid.uuid4())}, "hospital")

    async def known() -> bool:
        return bool(await app.state.runtime.db["staff"].find_one({"user_id": user_id}))

    await eventually(known, within=10, interval=0.05, message="staff.assigned not applied")


async def encounter(app: Any, patient_id: str, doctor: str, hospital_id: str) -> str:
    encounter_id = str(uuid.uuid4())
    await deliver(app, "encounter.started", {
        "encounter_id": encounter_id, "patient_id": patient_id, "practitioner_id": doctor,
        "appointment_id": None, "encounter_class": "AMB", "hospital_id": hospital_id,
        "started_at": datetime.now(UTC).isoformat()}, "records")

    async def known() -> bool:
        return bool(await app.state.runtime.db["encounters"].find_one({"_id": encounter_id}))

    await eventually(known, within=10, interval=0.05, message="encounter not applied")
    return encounter_id


ICD10 = "http://hl7.org/fhir/sid/icd-10"
FLU = {"system": ICD10, "code": "J06.9",
       "display": "Acute upper respiratory infection, unspecified"}


async def coded(app: Any, encounter_id: str, patient: str, revision: int = 1,
                diagnoses: list[dict[str, str]] | None = None,
                procedures: list[dict[str, str]] | None = None,
                appointment_id: str | None = None, event_id: str | None = None) -> str:
    """Records' ``encounter.coded`` for the encounter delivered (default: J06.9, no
    procedure; ``event_id`` to deliver one again) and handled by the consumer (its id in
    the inbox); the event id."""
    event_id = event_id or str(uuid.uuid4())
    await app.state.runtime.transport.publish(CloudEvent(
        id=event_id, source="/healthflow/records", type="encounter.coded",
        subject=f"encounter/{encounter_id}", time=datetime.now(UTC),
        data=EncounterCoded(
            encounter_id=encounter_id, patient_id=patient, appointment_id=appointment_id,
            hospital_id=LAB, revision=revision,
            diagnoses=[FLU] if diagnoses is None else diagnoses,
            procedures=procedures or [], coded_at=datetime.now(UTC)).model_dump(mode="json")))

    async def applied() -> bool:
        return bool(await app.state.runtime.db["inbox"].find_one({"_id": event_id}))

    await eventually(applied, within=10, interval=0.05, message="encounter.coded not applied")
    return event_id


async def paid_consultation(http: httpx.AsyncClient, app: Any, stripe_server: EmbeddedStripe,
                            patient_id: str, fee: int = 4000) -> Any:
    event = booked(patient_id=patient_id, fee=fee)
    await deliver_booking(app, event)
    doc = await app.state.runtime.db["payments"].find_one(
        {"appointment_id": event.appointment_id})
    intent = await asyncio.to_thread(pay, stripe_server, doc["intent_id"], "4242424242424242")
    response = await webhook(http, *signed(stripe_server.webhook_secret,
                                           intent_event(intent, "payment_intent.succeeded")))
    assert response.json()["outcome"] == "applied", response.text

    async def billed() -> bool:  # the billing job committed with the success has run
        return bool(await app.state.runtime.db["invoices"].find_one(
            {"payments.payment_id": doc["_id"]}))

    await eventually(billed, within=15, interval=0.05, message="the payment was not billed")
    return event, doc, intent


def pdf_text(data: bytes) -> str:
    return "".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages)


def is_problem(response: httpx.Response, status: int) -> bool:
    return (response.status_code == status
            and response.headers["content-type"].startswith("application/problem+json"))


async def test_a_paid_consultation_is_invoiced_numbered_balanced_and_printed(
        client: Client, tokens: TokenFactory, stripe_server: EmbeddedStripe) -> None:
    http, app = client
    db = app.state.runtime.db
    await deliver(app, "doctor.schedule_changed", doctor_schedule(
        "doc-1", windows=[schedule_window(1, "09:00", "12:00", hospital=TELE)]), "doctor")
    await deliver(app, "hospital.verified", {
        "hospital_id": TELE, "version": 2, "name": "Tele Clinic", "city": "Berlin",
        "country": "DE", "time_zone": "Europe/Berlin", "status": "verified", "services": [],
        "verified_at": datetime.now(UTC).isoformat()}, "hospital")
    await accountant_at(app, "acc-tele", TELE)

    async def doctor_known() -> bool:
        return bool(await db["doctors"].find_one({"_id": "doc-1"}))

    await eventually(doctor_known, within=10, interval=0.05, message="doctor not applied")
    event, payment, intent = await paid_consultation(http, app, stripe_server, "p-consult")
    # the same success again (another event id): billed once
    await webhook(http, *signed(stripe_server.webhook_secret,
                                intent_event(intent, "payment_intent.succeeded")))
    assert await db["invoices"].count_documents({}) == 1
    assert await db["charge_items"].count_documents({}) == 1

    patient = tokens.headers("p-consult", ("patient",))
    page = (await http.get("/api/v1/invoices", headers=patient)).json()
    assert page["next_cursor"] is None and len(page["items"]) == 1
    invoice = page["items"][0]
    # 4000 gross at 19 % included: net = round(4000 / 1.19) = 3361, tax 639
    assert (invoice["number"], invoice["hospital_id"], invoice["status"],
            invoice["payment_state"]) == ("INV-000001", TELE, "balanced", "paid")
    assert (invoice["total_gross"], invoice["total_net"], invoice["total_tax"],
            invoice["paid"], invoice["currency"], invoice["tax_basis_points"]) == (
        4000, 3361, 639, 4000, "EUR", 1900)
    assert [(p["source"], p["amount"], p["payment_id"]) for p in invoice["payments"]] == [
        ("stripe", 4000, payment["_id"])]
    line = invoice["lines"][0]
    assert (line["code"], line["performer_id"], line["quantity"], line["unit_price"]) == (
        "consultation", "user-doc-1", 1, 4000)  # the Practitioner (user) id
    item = (await http.get(f"/api/v1/charge-items/{line['charge_item_id']}",
                           headers=patient)).json()
    assert (item["status"], item["invoice_id"], item["appointment_id"]) == (
        "billed", invoice["id"], event.appointment_id)

    issued = await db["outbox"].find({"type": "invoice.issued"}).to_list()
    assert len(issued) == 1
    assert issued[0]["envelope"]["data"] == {
        "invoice_id": invoice["id"], "number": "INV-000001", "hospital_id": TELE,
        "patient_id": "p-consult", "total_gross": 4000, "currency": "EUR"}

    # the PDF: rendered once, kept in the blob store, the same bytes afterwards
    url = f"/api/v1/invoices/{invoice['id']}/pdf"
    first = await http.get(url, headers=patient)
    assert first.status_code == 200 and first.headers["content-type"] == "application/pdf"
    text = pdf_text(first.content)
    assert "INV-000001" in text and "40.00" in text and "Tele Clinic" in text
    stored = (await db["invoices"].find_one({"_id": invoice["id"]}))["pdf"]
    assert await app.state.blobs.exists(stored["key"])
    again = await http.get(url, headers=tokens.headers("acc-tele", ("accountant",)))
    assert again.content == first.content

    # who sees it: its patient and the hospital's accountants; nobody else
    stranger = tokens.headers("p-other", ("patient",))
    assert is_problem(await http.get(f"/api/v1/invoices/{invoice['id']}", headers=stranger),
                      404)
    assert is_problem(await http.get(url, headers=stranger), 404)
    assert (await http.get("/api/v1/invoices", headers=stranger)).json()["items"] == []
    assert is_problem(await http.get("/api/v1/invoices", headers=stranger,
                                     params={"patient_id": "p-consult"}), 403)
    outsider = tokens.headers("acc-elsewhere", ("accountant",))
    assert is_problem(await http.get(f"/api/v1/invoices/{invoice['id']}", headers=outsider),
                      404)
    assert is_problem(await http.get("/api/v1/invoices", headers=outsider,
                                     params={"hospital_id": TELE}), 403)
    finance = (await http.get("/api/v1/invoices", headers=tokens.headers(
        "acc-tele", ("accountant",)), params={"hospital_id": TELE})).json()
    assert [i["id"] for i in finance["items"]] == [invoice["id"]]
    assert (await http.get(url)).status_code == 401
    assert is_problem(await http.get(url, headers=tokens.headers("d", ("doctor",))), 403)

    summary = (await http.get("/api/v1/billing/summary", headers=patient)).json()
    assert summary == {"patient_id": "p-consult", "currencies": [{
        "currency": "EUR", "billed": 4000, "paid": 4000, "outstanding": 0, "refunded": 0,
        "insurance_share": 0}]}
    # finance sees the part their hospital billed; elsewhere nothing; patients their own
    at_tele = (await http.get("/api/v1/billing/summary", params={"patient_id": "p-consult"},
                              headers=tokens.headers("acc-tele", ("accountant",)))).json()
    assert at_tele == summary
    elsewhere = (await http.get("/api/v1/billing/summary", params={
        "patient_id": "p-consult"}, headers=outsider)).json()
    assert elsewhere["currencies"] == []
    assert is_problem(await http.get("/api/v1/billing/summary", headers=stranger,
                                     params={"patient_id": "p-consult"}), 403)
    assert is_problem(await http.get("/api/v1/billing/summary", headers=outsider), 403)


async def test_a_success_repaired_by_reconciliation_is_billed_too(
        client: Client, stripe_server: EmbeddedStripe) -> None:
    _http, app = client
    runtime = app.state.runtime
    event = booked(patient_id="p-recon", fee=2500)
    await deliver_booking(app, event)
    doc = await runtime.db["payments"].find_one({"appointment_id": event.appointment_id})
    await asyncio.to_thread(pay, stripe_server, doc["intent_id"], "4242424242424242")
    assert not await runtime.db["invoices"].find_one({})  # no webhook: nothing yet
    assert await reconcile.reconcile(runtime, runtime.state["stripe"],
                                     window=timedelta(hours=1)) == 1

    async def billed() -> bool:
        return bool(await runtime.db["invoices"].find_one({"patient_id": "p-recon"}))

    await eventually(billed, within=15, interval=0.05, message="not billed")
    invoice = await runtime.db["invoices"].find_one({"patient_id": "p-recon"})
    assert (invoice["status"], invoice["total_gross"], invoice["paid"],
            invoice["hospital_id"]) == ("balanced", 2500, 2500, None)
    assert invoice["issuer"] == "platform" and invoice["number"] == "INV-000001"


async def test_charge_items_are_invoiced_gap_free_paid_in_part_and_voided(
        client: Client, tokens: TokenFactory) -> None:
    http, app = client
    db = app.state.runtime.db
    await accountant_at(app, "acc-lab", LAB)
    enc = await encounter(app, "p-lab", "doc-lab", LAB)
    doctor = tokens.headers("doc-lab", ("doctor",))
    accountant = tokens.headers("acc-lab", ("accountant",))

    async def charge(who: dict[str, str], **body: Any) -> httpx.Response:
        return await http.post("/api/v1/charge-items", headers=who, json={
            "encounter_id": enc, "code": "2345-7", "description": "Glucose [Mass/volume]",
            "quantity": 2, "unit_price": 1250, "currency": "EUR", **body})

    assert (await charge(doctor)).status_code == 201
    assert (await charge(accountant, code="venipuncture", description="Blood draw",
                         quantity=1, unit_price=999)).status_code == 201
    # bad money and strangers: refused, nothing written
    assert is_problem(await charge(doctor, unit_price=12.5), 422)
    assert is_problem(await charge(doctor, unit_price="1250"), 422)
    assert is_problem(await charge(doctor, currency="eur"), 422)
    assert is_problem(await charge(doctor, quantity=0), 422)
    assert is_problem(await charge(tokens.headers("doc-other", ("doctor",))), 403)
    assert is_problem(await charge(tokens.headers("p-lab", ("patient",))), 403)
    assert is_problem(await charge(doctor, encounter_id="nope"), 404)
    assert await db["charge_items"].count_documents({}) == 2
    patient = tokens.headers("p-lab", ("patient",))
    own = (await http.get("/api/v1/charge-items", headers=patient,
                          params={"status": "billable", "limit": 1})).json()
    assert len(own["items"]) == 1 and own["next_cursor"]
    rest = (await http.get("/api/v1/charge-items", headers=patient, params={
        "status": "billable", "limit": 1, "cursor": own["next_cursor"]})).json()
    assert {i["code"] for i in own["items"] + rest["items"]} == {"2345-7", "venipuncture"}
    assert rest["next_cursor"] is None
    assert (await http.get("/api/v1/charge-items", headers=tokens.headers(
        "p-other", ("patient",)))).json()["items"] == []
    assert is_problem(await http.get("/api/v1/charge-items", headers=tokens.headers(
        "p-other", ("patient",)), params={"patient_id": "p-lab"}), 403)
    assert len((await http.get("/api/v1/charge-items", headers=accountant, params={
        "hospital_id": LAB})).json()["items"]) == 2

    issue = {"patient_id": "p-lab", "hospital_id": LAB}
    assert is_problem(await http.post("/api/v1/invoices", json=issue, headers=tokens.headers(
        "acc-elsewhere", ("accountant",))), 403)
    created = await http.post("/api/v1/invoices", json=issue, headers=accountant)
    assert created.status_code == 201, created.text
    invoice = created.json()
    assert (invoice["number"], invoice["status"], invoice["payment_state"]) == (
        "INV-000001", "issued", "unpaid")
    assert invoice["total_gross"] == 2 * 1250 + 999
    assert all(li["net"] + li["tax"] == li["gross"] for li in invoice["lines"])
    assert invoice["total_net"] + invoice["total_tax"] == invoice["total_gross"]
    assert (await http.get("/api/v1/charge-items", headers=patient,
                           params={"status": "billable"})).json()["items"] == []
    # nothing left to bill: 422, and the series did not move
    assert is_problem(await http.post("/api/v1/invoices", json=issue, headers=accountant), 422)

    # a transaction that fails after taking a number gives it back (no gap)
    async def issue_then_fail(uow: Any) -> None:
        await invoices.issue(uow, patient_id="p-x", hospital_id=LAB, items=[{
            "_id": "ci-x", "code": "x", "description": "x", "quantity": 1, "unit_price": 1,
            "currency": "EUR"}], basis_points=0, actor="test", now=datetime.now(UTC))
        raise RuntimeError("the commit never happens")

    with pytest.raises(RuntimeError):
        await app.state.runtime.transact(issue_then_fail)
    assert (await db["counters"].find_one({"_id": f"invoice:hospital:{LAB}"}))["value"] == 1

    # concurrent issues at one hospital: consecutive numbers, none twice, none skipped
    patients = [f"p-many-{n}" for n in range(5)]
    for p in patients:
        await charge(doctor, encounter_id=await encounter(app, p, "doc-lab", LAB))
    results = await asyncio.gather(*(http.post(
        "/api/v1/invoices", json={"patient_id": p, "hospital_id": LAB}, headers=accountant)
        for p in patients))
    assert [r.status_code for r in results] == [201] * 5
    assert sorted(r.json()["number"] for r in results) == [
        f"INV-{n:06d}" for n in range(2, 7)]

    # keyset pages, newest first, every invoice once
    seen: list[str] = []
    cursor = None
    while True:
        page = (await http.get("/api/v1/invoices", headers=accountant, params={
            "limit": 2, **({"cursor": cursor} if cursor else {})})).json()
        seen += [i["number"] for i in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert sorted(seen) == [f"INV-{n:06d}" for n in range(1, 7)] and len(set(seen)) == 6
    assert is_problem(await http.get("/api/v1/invoices", headers=accountant,
                                     params={"cursor": "garbage!"}), 400)

    # paid at the desk in two parts; never more than owed; then nothing more
    pay_url = f"/api/v1/invoices/{invoice['id']}/payments"
    part = (await http.post(pay_url, json={"amount": 1000}, headers=accountant)).json()
    assert (part["status"], part["payment_state"], part["paid"]) == (
        "issued", "partially_paid", 1000)
    assert is_problem(await http.post(pay_url, json={"amount": 2500}, headers=accountant),
                      422)
    assert is_problem(await http.post(pay_url, json={"amount": 10.5}, headers=accountant),
                      422)
    assert is_problem(await http.post(pay_url, json={"amount": 5}, headers=tokens.headers(
        "p-lab", ("patient",))), 403)
    rest = (await http.post(pay_url, json={"amount": 2499}, headers=accountant)).json()
    assert (rest["status"], rest["payment_state"], rest["paid"]) == ("balanced", "paid", 3499)
    assert is_problem(await http.post(pay_url, json={"amount": 1}, headers=accountant), 409)
    assert is_problem(await http.post(f"/api/v1/invoices/{invoice['id']}/cancel",
                                      headers=accountant), 409)

    # an unpaid one is voided: its number stays used, its items aborted
    void = results[0].json()
    before = await http.get(f"/api/v1/invoices/{void['id']}/pdf", headers=accountant)
    assert "CANCELLED" not in pdf_text(before.content)  # printed (and kept) while owed
    cancelled = (await http.post(f"/api/v1/invoices/{void['id']}/cancel",
                                 headers=accountant)).json()
    assert (cancelled["status"], cancelled["payment_state"]) == ("cancelled", "void")
    item = await db["charge_items"].find_one({"invoice_id": void["id"]})
    assert item["status"] == ChargeItemStatus.ABORTED.value
    printed = await http.get(f"/api/v1/invoices/{void['id']}/pdf", headers=accountant)
    assert "CANCELLED (void)" in pdf_text(printed.content)
    assert "CANCELLED" not in pdf_text((await http.get(
        f"/api/v1/invoices/{invoice['id']}/pdf", headers=accountant)).content)

    summary = (await http.get("/api/v1/billing/summary", headers=tokens.headers(
        "p-lab", ("patient",)))).json()
    assert summary["currencies"] == [{"currency": "EUR", "billed": 3499, "paid": 3499,
                                      "outstanding": 0, "refunded": 0,
                                      "insurance_share": 0}]
    now = datetime.now(UTC)
    window = {"hospital_id": LAB, "from": (now - timedelta(days=1)).isoformat(),
              "to": (now + timedelta(days=1)).isoformat(), "period": "day"}
    revenue = (await http.get("/api/v1/billing/revenue", headers=accountant,
                              params=window)).json()
    [total] = revenue["totals"]
    assert total["gross"] == 3499 + 4 * 2500 and total["paid"] == 3499
    assert sum(r["gross"] for r in revenue["rows"]) == total["gross"]
    by_service = {r["service"]: r["quantity"] for r in revenue["rows"]}
    assert by_service == {"2345-7": 2 + 4 * 2, "venipuncture": 1}
    assert is_problem(await http.get("/api/v1/billing/revenue", headers=tokens.headers(
        "acc-elsewhere", ("accountant",)), params=window), 403)
    assert is_problem(await http.get("/api/v1/billing/revenue", headers=accountant, params={
        **window, "from": "2026-01-01T00:00:00"}), 400)


async def test_every_ledger_adds_up_to_the_cent(
        mongodb_url: str, unique_name: str, tokens: TokenFactory,
        stripe_server: EmbeddedStripe, s3_env: dict[str, str]) -> None:
    """Stripe (as localstripe has it), payments, refunds, charge items, invoices, insurance
    claims (the payer sandbox's default plans), the patients' summaries and the
    hospitals' revenue: every amount agrees."""
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env, tax_rates={TELE: 1900}, default_tax_basis_points=700,
                           refund_full_window_hours=72, late_refund_percent=30
                           ) as (http, app):
        db = app.state.runtime.db
        await deliver(app, "doctor.schedule_changed", doctor_schedule(
            "doc-1", windows=[schedule_window(1, "09:00", "12:00", hospital=TELE)]),
            "doctor")
        await accountant_at(app, "acc-tele", TELE)
        await accountant_at(app, "acc-lab", LAB)

        async def doctor_known() -> bool:
            return bool(await db["doctors"].find_one({"_id": "doc-1"}))

        await eventually(doctor_known, within=10, interval=0.05, message="no doctor")
        paid = {p: await paid_consultation(http, app, stripe_server, p, fee)
                for p, fee in (("p-a", 4000), ("p-b", 6500), ("p-c", 2999))}
        # p-a: the doctor cancels (all back); p-b: the patient, late (30 % back: 1950)
        await deliver_cancel(app, paid["p-a"][0], "doctor", timedelta(hours=1))
        await deliver_cancel(app, paid["p-b"][0], "patient", timedelta(hours=1))

        accountant = tokens.headers("acc-lab", ("accountant",))
        doctor = tokens.headers("doc-lab", ("doctor",))
        for patient, price, qty in (("p-c", 1333, 3), ("p-d", 777, 1), ("p-e", 501, 2),
                                    ("p-f", 4321, 2)):
            enc = await encounter(app, patient, "doc-lab", LAB)
            await coded(app, enc, patient)
            assert (await http.post("/api/v1/charge-items", headers=doctor, json={
                "encounter_id": enc, "code": "lab", "description": "Lab test",
                "quantity": qty, "unit_price": price, "currency": "EUR"})).status_code == 201
        issued = {p: (await http.post("/api/v1/invoices", headers=accountant, json={
            "patient_id": p, "hospital_id": LAB})).json()
            for p in ("p-c", "p-d", "p-e", "p-f")}
        # p-f is insured ("standard": 80 % rounded down, less a 1000 copay): the payer
        # covers 8642 * 0.8 = 6913 - 1000 = 5913; the patient pays 2000 of the 2729 left
        insured = tokens.headers("p-f", ("patient",))
        today = datetime.now(UTC).date()
        coverage = (await http.post("/api/v1/coverages", headers=insured, json={
            "payer_id": "payer", "payer_name": "Payer", "subscriber_id": "M-1",
            "plan": "standard", "period_start": (today - timedelta(days=1)).isoformat()}
        )).json()
        claim = await http.post("/api/v1/claims", headers=insured, json={
            "invoice_id": issued["p-f"]["id"], "coverage_id": coverage["id"]})
        assert claim.json()["response"]["benefit"] == 5913, claim.text
        await http.post(f"/api/v1/invoices/{issued['p-f']['id']}/payments",
                        headers=accountant, json={"amount": 2000})
        await http.post(f"/api/v1/invoices/{issued['p-c']['id']}/payments",
                        headers=accountant, json={"amount": 1000})
        # p-c pays the rest (3 * 1333 - 1000) by card: the invoice's checkout
        card = (await http.post(f"/api/v1/invoices/{issued['p-c']['id']}/checkout",
                                headers=tokens.headers("p-c", ("patient",)))).json()
        assert card["amount"] == 2999, card
        intent = await asyncio.to_thread(pay, stripe_server, card["intent_id"],
                                         "4242424242424242")
        assert (await webhook(http, *signed(stripe_server.webhook_secret, intent_event(
            intent, "payment_intent.succeeded")))).json()["outcome"] == "applied"
        await http.post(f"/api/v1/invoices/{issued['p-d']['id']}/payments",
                        headers=accountant, json={"amount": 777})
        await http.post(f"/api/v1/invoices/{issued['p-e']['id']}/cancel", headers=accountant)

        payments = await db["payments"].find({}).to_list()
        checkouts = await db["invoice_checkouts"].find({}).to_list()
        all_invoices = await db["invoices"].find({}).to_list()
        items = await db["charge_items"].find({}).to_list()
        live = [i for i in all_invoices if i["status"] != "cancelled"]

        # Stripe's own books (localstripe through the stripe library) = our payments
        stripe = app.state.runtime.state["stripe"]
        taken = refunded = 0
        for payment in payments:
            intent = await stripe.retrieve_intent(payment["intent_id"])
            assert intent.status == "succeeded" and intent.amount == payment["amount"]
            taken += intent.amount
            refunded += sum(a for _, a, _ in await stripe.refunds_of(payment["intent_id"]))
        assert taken == sum(p["amount"] for p in payments) == 4000 + 6500 + 2999
        assert refunded == sum((p.get("refund") or {}).get("amount", 0) for p in payments) \
            == 4000 + 1950
        card_taken = 0
        for checkout in checkouts:  # invoices paid by card: each its own intent
            intent = await stripe.retrieve_intent(checkout["intent_id"])
            assert (intent.status, intent.amount) == ("succeeded", checkout["amount"])
            card_taken += intent.amount
        assert card_taken == 2999
        card_receipts = [(r["payment_id"], r["amount"]) for i in all_invoices
                         for r in i["payments"] if r["source"] == "card"]
        assert card_receipts == [(c["_id"], c["amount"]) for c in checkouts]

        # every Stripe payment is on exactly one invoice, for its amount
        stripe_receipts = [(r["payment_id"], r["amount"]) for i in all_invoices
                           for r in i["payments"] if r["source"] == "stripe"]
        assert sorted(stripe_receipts) == sorted((p["_id"], p["amount"]) for p in payments)
        desk = sum(r["amount"] for i in all_invoices for r in i["payments"]
                   if r["source"] == "desk")
        assert desk == 1000 + 777 + 2000

        # invoices: lines add up, totals add up, paid is what was received
        for invoice in all_invoices:
            lines = invoice["lines"]
            assert all(li["net"] + li["tax"] == li["gross"] == li["quantity"] * li["unit_price"]
                       for li in lines)
            assert invoice["total_gross"] == sum(li["gross"] for li in lines)
            assert invoice["total_net"] == sum(li["net"] for li in lines)
            assert invoice["total_tax"] == sum(li["tax"] for li in lines)
            assert invoice["paid"] == sum(r["amount"] for r in invoice["payments"])
            assert invoice["paid"] + invoice.get("insurance_share", 0) <= invoice["total_gross"]
        # claims: a complete claim asks the invoice's total and its benefit (the sum of its
        # lines' benefits) is the invoice's insurance share; nothing else has one
        claims = await db["claims"].find({}).to_list()
        by_invoice = {i["_id"]: i for i in all_invoices}
        for c in claims:
            response = c["response"]
            assert c["total"] == by_invoice[c["invoice_id"]]["total_gross"] == sum(
                i["net"] for i in c["items"])
            assert response["benefit"] == sum(i["benefit"] for i in response["items"])
            assert response["benefit"] + response["patient_share"] == c["total"]
            assert by_invoice[c["invoice_id"]]["insurance_share"] == response["benefit"]
        insurance = sum(i.get("insurance_share", 0) for i in live)
        assert insurance == sum(c["response"]["benefit"] for c in claims) == 5913
        # charge items: billed ones are exactly the live invoices' lines, aborted the void's
        gross = {i["_id"]: i["quantity"] * i["unit_price"] for i in items}
        assert sum(gross[i["_id"]] for i in items if i["status"] == "billed") == \
            sum(i["total_gross"] for i in live)
        assert sum(gross[i["_id"]] for i in items if i["status"] == "aborted") == 2 * 501
        assert not [i for i in items if i["status"] == "billable"]
        numbers = sorted((i["issuer"], i["sequence"]) for i in all_invoices)
        for issuer in {n[0] for n in numbers}:
            assert [s for i, s in numbers if i == issuer] == list(
                range(1, 1 + sum(1 for i, _ in numbers if i == issuer)))

        # the patients' summaries add up to the books
        rows = []
        for patient in ("p-a", "p-b", "p-c", "p-d", "p-e", "p-f"):
            summary = (await http.get("/api/v1/billing/summary", headers=tokens.headers(
                patient, ("patient",)))).json()
            rows += summary["currencies"]
        assert sum(r["paid"] for r in rows) == taken + card_taken + desk
        assert sum(r["refunded"] for r in rows) == refunded
        assert sum(r["billed"] for r in rows) == sum(i["total_gross"] for i in live)
        assert sum(r["outstanding"] for r in rows) == sum(
            i["total_gross"] - i.get("insurance_share", 0) - i["paid"] for i in live) == (
            8642 - 5913 - 2000)
        assert sum(r["insurance_share"] for r in rows) == insurance
        # what patients paid on invoices + what payers cover + what is still owed = billed
        assert sum(i["paid"] for i in live) + insurance + sum(
            r["outstanding"] for r in rows) == sum(i["total_gross"] for i in live)

        # the hospitals' revenue adds up to their invoices
        now = datetime.now(UTC)
        for hospital, who in ((TELE, "acc-tele"), (LAB, "acc-lab")):
            revenue = (await http.get("/api/v1/billing/revenue", headers=tokens.headers(
                who, ("accountant",)), params={
                "hospital_id": hospital, "from": (now - timedelta(days=1)).isoformat(),
                "to": (now + timedelta(days=1)).isoformat()})).json()
            mine = [i for i in live if i["hospital_id"] == hospital]
            [total] = revenue["totals"]
            assert total["gross"] == sum(i["total_gross"] for i in mine) == sum(
                r["gross"] for r in revenue["rows"])
            assert total["tax"] == sum(i["total_tax"] for i in mine)
            assert total["paid"] == sum(i["paid"] for i in mine)
            assert total["insurance_share"] == sum(i.get("insurance_share", 0) for i in mine)
