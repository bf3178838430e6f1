"""Credit notes for refunds of invoiced consultations, in-process on the real
MongoDB-protocol server and a real localstripe (stripe library)."""

from __future__ import annotations

from datetime import timedelta

from healthflow.devkit.embedded import EmbeddedStripe
from healthflow.devkit.testing import TokenFactory, doctor_schedule, eventually, schedule_window
from healthflow.payment import credit_notes
from healthflow.payment.domain import split_tax

from .test_api import deliver_cancel, payment_app
from .test_invoices import TELE, accountant_at, deliver, is_problem, paid_consultation


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
