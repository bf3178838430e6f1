"""Credit notes for refunds of invoiced consultations, in-process on the real
MongoDB-protocol server and a real localstripe (stripe library)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from healthflow.common import jobs
from healthflow.devkit.embedded import EmbeddedStripe
from healthflow.devkit.testing import TokenFactory, doctor_schedule, eventually, schedule_window
from healthflow.payment import credit_notes, invoices
from healthflow.payment.domain import split_tax

from .test_api import (
    booked,
    deliver_booking,
    deliver_cancel,
    intent_event,
    pay,
    payment_app,
    signed,
    webhook,
)
from .test_invoices import (
    TELE,
    accountant_at,
    deliver,
    is_problem,
    paid_consultation,
    pdf_text,
)


async def test_a_refund_of_an_invoiced_payment_issues_a_numbered_credit_note_once(
        mongodb_url: str, unique_name: str, tokens: TokenFactory,
        stripe_server: EmbeddedStripe, s3_env: dict[str, str]) -> None:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env, tax_rates={TELE: 1900}, refund_full_window_hours=72,
                           late_refund_percent=30) as (http, app):
        db = app.state.runtime.db
        await deliver(app, "doctor.schedule_changed", doctor_schedule(
            "doc-1", windows=[schedule_window(1, "09:00", "12:00", hospital=TELE)]),
            "doctor")
        await accountant_at(app, "acc-tele", TELE)

        async def doctor_known() -> bool:
            return bool(await db["doctors"].find_one({"_id": "doc-1"}))

        await eventually(doctor_known, within=10, interval=0.05, message="no doctor")
        a_event, a_payment, _ = await paid_consultation(http, app, stripe_server, "p-a", 4000)
        b_event, b_payment, _ = await paid_consultation(http, app, stripe_server, "p-b", 6500)
        kept = await paid_consultation(http, app, stripe_server, "p-c", 2999)  # not refunded
        await deliver_cancel(app, a_event, "doctor", timedelta(hours=1))  # all back
        await deliver_cancel(app, b_event, "patient", timedelta(hours=1))  # 30 %: 1950

        async def both() -> bool:
            return await db["credit_notes"].count_documents({}) == 2

        await eventually(both, within=20, interval=0.1, message="no credit notes issued")
        notes = {n["payment_id"]: n for n in await db["credit_notes"].find({}).to_list()}
        assert set(notes) == {a_payment["_id"], b_payment["_id"]}
        assert sorted((n["number"], n["issuer"]) for n in notes.values()) == [
            ("CN-000001", f"hospital:{TELE}"), ("CN-000002", f"hospital:{TELE}")]  # no gap
        for payment, refunded in ((a_payment, 4000), (b_payment, 1950)):
            note = notes[payment["_id"]]
            invoice = await db["invoices"].find_one({"payments.payment_id": payment["_id"]})
            net, tax = split_tax(refunded, 1900)
            assert (note["invoice_id"], note["invoice_number"], note["total_gross"],
                    note["total_net"], note["total_tax"]) == (
                invoice["_id"], invoice["number"], -refunded, -net, -tax)
            assert (invoice["paid"], invoice["status"]) == (payment["amount"], "balanced")
        assert not await db["credit_notes"].find_one({"payment_id": kept[1]["_id"]})

        # the job again (a redelivery): nothing new
        refund_id = notes[a_payment["_id"]]["refund_id"]
        assert await app.state.runtime.transact(lambda uow: credit_notes.issue_for_refund(
            uow, a_payment["_id"], refund_id)) is None
        assert await db["credit_notes"].count_documents({}) == 2

        invoice_id = notes[a_payment["_id"]]["invoice_id"]
        url = f"/api/v1/invoices/{invoice_id}/credit-notes"
        mine = await http.get(url, headers=tokens.headers("p-a", ("patient",)))
        assert mine.status_code == 200, mine.text
        assert [(n["number"], n["total_gross"], n["reason"]) for n in mine.json()] == [
            (notes[a_payment["_id"]]["number"], -4000, "cancelled_by_provider")]
        finance = await http.get(url, headers=tokens.headers("acc-tele", ("accountant",)))
        assert finance.status_code == 200 and len(finance.json()) == 1
        assert is_problem(await http.get(url, headers=tokens.headers("p-b", ("patient",))), 404)


async def test_a_credit_note_is_printed_at_issue_once_and_served_to_its_readers(
        mongodb_url: str, unique_name: str, tokens: TokenFactory,
        stripe_server: EmbeddedStripe, s3_env: dict[str, str]) -> None:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env, tax_rates={TELE: 1900}) as (http, app):
        runtime, blobs = app.state.runtime, app.state.blobs
        db = runtime.db
        await deliver(app, "doctor.schedule_changed", doctor_schedule(
            "doc-1", windows=[schedule_window(1, "09:00", "12:00", hospital=TELE)]),
            "doctor")
        await deliver(app, "hospital.verified", {
            "hospital_id": TELE, "version": 2, "name": "Tele Clinic", "city": "Berlin",
            "country": "DE", "time_zone": "Europe/Berlin", "status": "verified",
            "services": [], "verified_at": datetime.now(UTC).isoformat()}, "hospital")
        await accountant_at(app, "acc-tele", TELE)

        async def known() -> bool:
            return bool(await db["doctors"].find_one({"_id": "doc-1"})
                        and await db["hospitals"].find_one({"_id": TELE}))

        await eventually(known, within=10, interval=0.05, message="no doctor or hospital")
        event, payment, _ = await paid_consultation(http, app, stripe_server, "p-a", 4000)
        await deliver_cancel(app, event, "doctor", timedelta(hours=1))  # all back

        async def printed() -> bool:  # by the job the issue enqueued: nobody asked yet
            return bool(await db["credit_notes"].find_one({"pdf": {"$exists": True}}))

        await eventually(printed, within=20, interval=0.1, message="no credit note PDF")
        note = await db["credit_notes"].find_one({"payment_id": payment["_id"]})
        assert note["pdf"]["key"] == credit_notes.pdf_key(note["_id"])
        kept = b"".join([c async for c in blobs.stream(note["pdf"]["key"])])
        assert kept.startswith(b"%PDF-") and len(kept) == note["pdf"]["size"]
        text = pdf_text(kept)
        for shown in (note["number"], "CN-000001", note["invoice_number"], "-40.00",
                      "EUR", "Tele Clinic", "cancelled_by_provider"):
            assert shown in text, shown

        # who may fetch it: its patient and the hospital's finance; 404 else, 401 unsigned
        url = f"/api/v1/invoices/{note['invoice_id']}/credit-notes/{note['_id']}/pdf"
        mine = await http.get(url, headers=tokens.headers("p-a", ("patient",)))
        assert mine.status_code == 200, mine.text
        assert mine.headers["content-type"] == "application/pdf" and mine.content == kept
        finance = await http.get(url, headers=tokens.headers("acc-tele", ("accountant",)))
        assert finance.status_code == 200 and finance.content == kept
        assert is_problem(await http.get(url, headers=tokens.headers("p-b", ("patient",))),
                          404)
        assert is_problem(await http.get(url, headers=tokens.headers(
            "acc-other", ("accountant",))), 404)  # finance, not of this hospital
        assert (await http.get(url)).status_code == 401
        other_invoice = url.replace(note["invoice_id"], "not-this-invoice")
        assert is_problem(await http.get(
            other_invoice, headers=tokens.headers("p-a", ("patient",))), 404)

        # written once: one print job, and the job again (a redelivery) writes nothing,
        # not even a blob that went missing behind its back
        assert await db["jobs"].count_documents({"queue": credit_notes.PDF}) == 1
        await blobs.delete(note["pdf"]["key"])
        assert await runtime.transact(
            lambda uow: credit_notes.print_pdf(uow, blobs, note["_id"])) is None
        assert not await blobs.exists(note["pdf"]["key"])


async def test_a_credit_note_job_running_before_the_billing_job_waits_for_the_invoice(
        mongodb_url: str, unique_name: str, tokens: TokenFactory,
        stripe_server: EmbeddedStripe, s3_env: dict[str, str]) -> None:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env) as (http, app):
        db = app.state.runtime.db
        event = booked(patient_id="p-early")
        await deliver_booking(app, event)
        doc = await db["payments"].find_one({"appointment_id": event.appointment_id})
        # the billing job is late (a busy worker): put it off before the success enqueues it
        await jobs.enqueue(db, invoices.BILLING, {"payment_id": doc["_id"]},
                           run_at=datetime.now(UTC) + timedelta(hours=1),
                           key=f"bill-{doc['_id']}")
        intent = await asyncio.to_thread(pay, stripe_server, doc["intent_id"],
                                         "4242424242424242")
        answer = await webhook(http, *signed(stripe_server.webhook_secret,
                                             intent_event(intent, "payment_intent.succeeded")))
        assert answer.json()["outcome"] == "applied"
        # cancelled before the success was recorded (the reason the old rule skipped)
        await deliver_cancel(app, event, "patient", timedelta(days=4))
        refunded = await db["payments"].find_one({"_id": doc["_id"]})
        assert refunded["refund"]["reason"] == "cancelled_before_recorded"
        credit_job = f"credit-{refunded['refund']['id']}"

        async def tried() -> bool:
            job = await db["jobs"].find_one({"_id": credit_job})
            return bool(job and job["attempts"] >= 1)

        await eventually(tried, within=15, interval=0.1, message="credit job never ran")
        job = await db["jobs"].find_one({"_id": credit_job})
        assert job["status"] == "queued" and "NotInvoicedYet" in job["last_error"]
        assert await db["credit_notes"].count_documents({}) == 0
        await db["jobs"].update_one({"_id": f"bill-{doc['_id']}"},
                                    {"$set": {"run_at": datetime.now(UTC)}})

        async def credited() -> bool:
            return await db["credit_notes"].count_documents({}) == 1

        await eventually(credited, within=30, interval=0.1, message="no credit note")
        note = await db["credit_notes"].find_one({})
        invoice = await db["invoices"].find_one({"payments.payment_id": doc["_id"]})
        assert (note["invoice_id"], note["total_gross"]) == (invoice["_id"], -4000)
