"""A hospital's books (expenses, other incomes, receipts) and its monthly profit and loss,
in-process on the real MongoDB-protocol server, a real S3 server (receipts) and
localstripe (the paid and the refunded consultations)."""

from __future__ import annotations

import csv
import hashlib
import io
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from healthflow.devkit.embedded import EmbeddedStripe
from healthflow.devkit.testing import TokenFactory, doctor_schedule, eventually, schedule_window
from healthflow.payment import pnl
from healthflow.payment.settings import RECEIPT_CEILING

from .test_api import Client, deliver_cancel, payment_app
from .test_invoices import accountant_at, deliver, is_problem, paid_consultation

HA, HB = "h-fin-a", "h-fin-b"
ZONE = "Pacific/Kiritimati"  # UTC+14: its month differs from UTC's for 14 hours of each
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02" + (
    b"\x00" * 64)


@pytest.fixture
async def client(mongodb_url: str, unique_name: str, tokens: TokenFactory,
                 stripe_server: EmbeddedStripe, s3_env: dict[str, str]
                 ) -> AsyncIterator[Client]:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env, refund_full_window_hours=24) as running:
        yield running


def previous(month: str) -> str:
    year, mon = int(month[:4]), int(month[5:])
    return f"{year - 1}-12" if mon == 1 else f"{year}-{mon - 1:02d}"


async def hospital_a_with_a_doctor(app: Any) -> None:
    """HA (in ``ZONE``) invoices doc-1's consultations; acc-a keeps HA's books, acc-b HB's."""
    db = app.state.runtime.db
    await deliver(app, "doctor.schedule_changed", doctor_schedule(
        "doc-1", windows=[schedule_window(1, "09:00", "12:00", hospital=HA)]), "doctor")
    await deliver(app, "hospital.verified", {
        "hospital_id": HA, "version": 2, "name": "Fin Klinik", "city": "Tarawa",
        "country": "KI", "time_zone": ZONE, "status": "verified", "services": [],
        "verified_at": datetime.now(UTC).isoformat()}, "hospital")
    await accountant_at(app, "acc-a", HA)
    await accountant_at(app, "acc-b", HB)

    async def known() -> bool:
        return bool(await db["doctors"].find_one({"_id": "doc-1"})
                    and await db["hospitals"].find_one({"_id": HA, "time_zone": ZONE}))

    await eventually(known, within=10, interval=0.05, message="read models not applied")


async def entry(http: httpx.AsyncClient, who: dict[str, str], kind: str, **body: Any
                ) -> dict[str, Any]:
    party = "supplier" if kind == "expenses" else "payer"
    response = await http.post(f"/api/v1/{kind}", headers=who, json={
        "hospital_id": HA, "currency": "EUR", "reason": "monthly", party: "ACME", **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_the_monthly_pnl_sums_payments_incomes_refunds_and_expenses_to_the_cent(
        client: Client, tokens: TokenFactory, stripe_server: EmbeddedStripe) -> None:
    http, app = client
    db = app.state.runtime.db
    await hospital_a_with_a_doctor(app)
    acc_a = tokens.headers("acc-a", ("accountant",))
    acc_b = tokens.headers("acc-b", ("accountant",))
    await paid_consultation(http, app, stripe_server, "p-one", fee=4000)
    cancelled, _, _ = await paid_consultation(http, app, stripe_server, "p-two", fee=2550)
    await deliver_cancel(app, cancelled, "doctor", timedelta(days=2))  # all of it back
    assert (await db["payments"].find_one(
        {"appointment_id": cancelled.appointment_id}))["refund"]["amount"] == 2550
    # the month (in HA's zone) in which the money moved, from what was stored
    paid_at = (await db["invoices"].find_one({"hospital_id": HA}))["payments"][0]["at"]
    month = paid_at.replace(tzinfo=UTC).astimezone(ZoneInfo(ZONE)).strftime("%Y-%m")
    day, before = f"{month}-15", f"{previous(month)}-28"

    await entry(http, acc_a, "expenses", category="salaries", date=day, amount_minor=100000)
    await entry(http, acc_a, "expenses", category="supplies", date=f"{month}-01",
                amount_minor=1234)
    rent = await entry(http, acc_a, "expenses", category="rent", date=day,
                       amount_minor=50000)
    await entry(http, acc_a, "expenses", category="rent", date=before, amount_minor=70000)
    await entry(http, acc_b, "expenses", category="rent", date=day, amount_minor=999,
                hospital_id=HB)
    await entry(http, acc_a, "incomes", category="lab", date=day, amount_minor=3001)
    await entry(http, acc_a, "incomes", category="donation", date=day, amount_minor=10000)
    await entry(http, acc_a, "incomes", category="donation", date=day, amount_minor=500,
                currency="USD")
    await entry(http, acc_a, "incomes", category="services", date=before, amount_minor=77)
    voided = await http.post(f"/api/v1/expenses/{rent['id']}/void", headers=acc_a,
                             json={"reason": "entered twice"})
    assert voided.status_code == 200, voided.text
    assert (voided.json()["status"], voided.json()["void"]["reason"]) == (
        "voided", "entered twice")

    url = "/api/v1/finance/reports/monthly"
    params = {"hospital_id": HA, "month": month}
    response = await http.get(url, headers=acc_a, params=params)
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["hospital_id"], report["month"], report["time_zone"]) == (HA, month, ZONE)
    assert report["currencies"] == [
        {"currency": "EUR", "payments_received": 6550, "refunds": 2550,
         "incomes": {"lab": 3001, "donation": 10000, "services": 0, "other": 0},
         "incomes_total": 13001,
         "expenses": {"salaries": 100000, "supplies": 1234, "equipment": 0, "rent": 0,
                      "utilities": 0, "maintenance": 0, "other": 0},
         "expenses_total": 101234, "net": 6550 + 13001 - 2550 - 101234},
        {"currency": "USD", "payments_received": 0, "refunds": 0,
         "incomes": {"lab": 0, "donation": 500, "services": 0, "other": 0},
         "incomes_total": 500,
         "expenses": {"salaries": 0, "supplies": 0, "equipment": 0, "rent": 0,
                      "utilities": 0, "maintenance": 0, "other": 0},
         "expenses_total": 0, "net": 500}]
    # the month before: only what was dated then (no money moved)
    earlier = (await http.get(url, headers=acc_a, params={**params,
                                                          "month": previous(month)})).json()
    assert [(c["currency"], c["expenses"]["rent"], c["incomes"]["services"], c["net"])
            for c in earlier["currencies"]] == [("EUR", 70000, 77, 77 - 70000)]

    # the CSV holds the same figures as the JSON
    as_csv = await http.get(url, headers={**acc_a, "Accept": "text/csv"}, params=params)
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(as_csv.text)))
    assert rows[0] == list(pnl.CSV_HEADER)
    assert [(r[1], r[2], r[3], int(r[4])) for r in rows[1:]] == pnl.figures(report)
    assert {r[0] for r in rows[1:]} == {month}

    # the chart is an SVG image naming the month and the net
    chart = await http.get(url, headers=acc_a, params={**params, "format": "svg"})
    assert chart.headers["content-type"] == "image/svg+xml"
    root = ET.fromstring(chart.content)  # noqa: S314 (the service's own output, in a test)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert len(root.findall(".//{http://www.w3.org/2000/svg}path")) > 10

    # hospital B's accountant: nothing of A's
    assert is_problem(await http.get(url, headers=acc_b, params=params), 403)
    assert is_problem(await http.get(f"/api/v1/expenses/{rent['id']}", headers=acc_b), 404)
    assert is_problem(await http.get("/api/v1/expenses", headers=acc_b,
                                     params={"hospital_id": HA}), 403)
    own = (await http.get("/api/v1/expenses", headers=acc_b)).json()["items"]
    assert [(e["hospital_id"], e["amount_minor"]) for e in own] == [(HB, 999)]
    assert is_problem(await http.get(url, headers=tokens.headers("p-one", ("patient",)),
                                     params=params), 403)
    assert is_problem(await http.get(url, headers=acc_a, params={**params,
                                                                 "month": "2026-13"}), 422)
    # every change of the books is in the outbox (the audit log's feed), amounts only
    kinds = sorted(e["type"] for e in await db["outbox"].find(
        {"type": {"$regex": "^(expense|income)[.]"}}).to_list())
    assert kinds == ["expense.recorded"] * 5 + ["expense.voided"] + ["income.recorded"] * 4
    one = await db["outbox"].find_one({"type": "expense.voided"})
    assert "ACME" not in str(one["envelope"]["data"])


async def test_a_removed_membership_ends_the_accountants_books_in_any_order(
        client: Client, tokens: TokenFactory) -> None:
    """Issue 16: ``staff.removed`` ends an accountant's access to the hospital's books, also
    when it arrives before the assignment it ends (which then brings nothing back)."""
    http, app = client
    acc = tokens.headers("acc-r", ("accountant",))
    today = date.today().isoformat()
    body = {"hospital_id": HA, "date": today, "currency": "EUR", "reason": "x",
            "supplier": "ACME", "category": "supplies", "amount_minor": 100}
    membership = {"hospital_id": HA, "department_id": None, "user_id": "acc-r",
                  "staff_role": "accountant", "membership_id": "m-acc-r"}
    removed = {**membership, "removed_at": datetime.now(UTC).isoformat()}
    await deliver(app, "staff.assigned", membership, "hospital")
    db = app.state.runtime.db

    async def applied(removed_too: bool) -> bool:
        doc = await db["staff"].find_one({"_id": "m-acc-r"})
        return bool(doc) and (doc.get("removed_at") is not None) == removed_too

    await eventually(lambda: applied(False), within=10, interval=0.05, message="not assigned")
    assert (await http.post("/api/v1/expenses", headers=acc, json=body)).status_code == 201
    await deliver(app, "staff.removed", removed, "hospital")
    await eventually(lambda: applied(True), within=10, interval=0.05, message="not removed")
    assert is_problem(await http.post("/api/v1/expenses", headers=acc, json=body), 403)
    await deliver(app, "staff.assigned", membership, "hospital")  # a late redelivery
    await deliver(app, "staff.removed", {**removed, "membership_id": "m-acc-r2"}, "hospital")
    await deliver(app, "staff.assigned", {**membership, "membership_id": "m-acc-r2"},
                  "hospital")

    async def both_known() -> bool:
        return await db["staff"].count_documents({"user_id": "acc-r"}) == 2

    await eventually(both_known, within=10, interval=0.05, message="not applied")
    assert is_problem(await http.post("/api/v1/expenses", headers=acc, json=body), 403)


async def test_entries_are_checked_corrected_and_voided_never_deleted(
        client: Client, tokens: TokenFactory) -> None:
    http, app = client
    await accountant_at(app, "acc-a", HA)
    acc_a = tokens.headers("acc-a", ("accountant",))
    today = date.today().isoformat()
    base = {"hospital_id": HA, "date": today, "currency": "EUR", "reason": "x",
            "supplier": "ACME", "category": "supplies", "amount_minor": 100}
    for bad in ({"amount_minor": 12.5}, {"amount_minor": "100"}, {"amount_minor": 0},
                {"currency": "eur"}, {"category": "lab"}, {"date": "2026-02-30"},
                {"hospital_id": HB}):
        answer = await http.post("/api/v1/expenses", headers=acc_a, json={**base, **bad})
        assert is_problem(answer, 403 if "hospital_id" in bad else 422), (bad, answer.text)
    assert is_problem(await http.post("/api/v1/incomes", headers=acc_a, json={
        **{k: v for k, v in base.items() if k != "supplier"}, "payer": "Lab client",
        "category": "salaries"}), 422)
    assert await app.state.runtime.db["ledger_entries"].count_documents({}) == 0
    created = await entry(http, acc_a, "expenses", category="supplies", date=today,
                          amount_minor=100)
    path = f"/api/v1/expenses/{created['id']}"
    fixed = await http.patch(path, headers=acc_a, json={"amount_minor": 120,
                                                        "supplier": "ACME Ltd"})
    assert fixed.status_code == 200, fixed.text
    assert (fixed.json()["amount_minor"], fixed.json()["supplier"]) == (120, "ACME Ltd")
    assert is_problem(await http.patch(path, headers=acc_a, json={}), 422)
    assert (await http.post(f"{path}/void", headers=acc_a, json={"reason": "dup"})
            ).status_code == 200
    assert is_problem(await http.post(f"{path}/void", headers=acc_a, json={"reason": "x"}),
                      409)
    assert is_problem(await http.patch(path, headers=acc_a, json={"amount_minor": 1}), 409)
    assert is_problem(await http.put(f"{path}/receipt", content=PDF, headers={
        **acc_a, "Content-Type": "application/pdf"}), 409)
    assert await app.state.blobs.keys("receipt/") == []
    corrected = await app.state.runtime.db["outbox"].find_one({"type": "expense.corrected"})
    assert (corrected["envelope"]["data"]["amount_minor"],
            corrected["envelope"]["data"]["by"]) == (120, "acc-a")
    listed = (await http.get("/api/v1/expenses", headers=acc_a)).json()["items"]
    assert [(e["status"], e["amount_minor"]) for e in listed] == [("voided", 120)]


async def test_a_receipt_is_checked_by_its_bytes_stored_with_its_hash_and_served(
        client: Client, tokens: TokenFactory) -> None:
    http, app = client
    blobs = app.state.blobs
    await accountant_at(app, "acc-a", HA)
    await accountant_at(app, "acc-b", HB)
    acc_a = tokens.headers("acc-a", ("accountant",))
    created = await entry(http, acc_a, "expenses", category="equipment",
                          date=date.today().isoformat(), amount_minor=5000)
    path = f"/api/v1/expenses/{created['id']}/receipt"

    async def put(data: bytes, content_type: str | None, who: dict[str, str] = acc_a
                  ) -> httpx.Response:
        headers = {**who, **({"Content-Type": content_type} if content_type else {})}
        return await http.put(path, headers=headers, content=data)

    # a PNG declared as PDF, text, nothing declared, too large: refused, nothing kept
    mismatch = await put(PNG, "application/pdf")
    assert is_problem(mismatch, 422)
    assert (mismatch.json()["detected_type"], mismatch.json()["declared_type"]) == (
        "image/png", "application/pdf")
    assert is_problem(await put(b"just some text, not a receipt", "application/pdf"), 422)
    assert is_problem(await put(PDF, None), 415)
    assert is_problem(await put(PDF + b"\0" * RECEIPT_CEILING, "application/pdf"), 413)
    assert await blobs.keys("receipt/") == []
    assert (await http.get(f"/api/v1/expenses/{created['id']}", headers=acc_a)
            ).json()["receipt"] is None
    assert is_problem(await http.get(path, headers=acc_a), 404)
    assert is_problem(await put(PDF, "application/pdf",
                                tokens.headers("acc-b", ("accountant",))), 404)

    stored = await put(PDF, "application/pdf")
    assert stored.status_code == 200, stored.text
    receipt = stored.json()["receipt"]
    assert (receipt["sha256"], receipt["size"], receipt["content_type"]) == (
        hashlib.sha256(PDF).hexdigest(), len(PDF), "application/pdf")
    assert len(await blobs.keys("receipt/")) == 1
    assert is_problem(await put(PDF, "application/pdf"), 409)  # one receipt per entry
    served = await http.get(path, headers=acc_a)
    assert (served.status_code, served.content) == (200, PDF)
    assert served.headers["content-type"] == "application/pdf"
    assert is_problem(await http.get(path, headers=tokens.headers("acc-b", ("accountant",))),
                      404)
    income = await entry(http, acc_a, "incomes", category="lab",
                         date=date.today().isoformat(), amount_minor=700)
    photo = await http.put(f"/api/v1/incomes/{income['id']}/receipt",
                           headers={**acc_a, "Content-Type": "image/png"}, content=PNG)
    assert photo.status_code == 200, photo.text
    assert photo.json()["receipt"]["content_type"] == "image/png"
    assert is_problem(await http.get(f"/api/v1/incomes/{created['id']}/receipt",
                                     headers=acc_a), 404)  # an expense is no income


async def test_a_receipt_may_be_as_large_as_the_setting_and_other_bodies_stay_small(
        mongodb_url: str, unique_name: str, tokens: TokenFactory,
        stripe_server: EmbeddedStripe, s3_env: dict[str, str]) -> None:
    """A scan or a photo of a few MiB is taken (the platform's 1 MiB refused it): up to
    ``receipt_max_bytes``, declared or streamed without a length; one byte more is 413
    and nothing stays stored; every other route keeps the 1 MiB limit."""
    mib = 1024 * 1024
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env, receipt_max_bytes=3 * mib) as (http, app):
        blobs = app.state.blobs
        await accountant_at(app, "acc-a", HA)
        acc_a = tokens.headers("acc-a", ("accountant",))
        today = date.today().isoformat()
        expense = await entry(http, acc_a, "expenses", category="equipment", date=today,
                              amount_minor=5000)
        income = await entry(http, acc_a, "incomes", category="lab", date=today,
                             amount_minor=700)
        big = PDF + b"%" * (3 * mib - len(PDF))
        too_big = big + b"%"

        async def chunks(data: bytes) -> AsyncIterator[bytes]:
            for start in range(0, len(data), 256 * 1024):
                yield data[start:start + 256 * 1024]

        pdf = {**acc_a, "Content-Type": "application/pdf"}
        income_path = f"/api/v1/incomes/{income['id']}/receipt"
        assert is_problem(await http.put(income_path, headers=pdf, content=too_big), 413)
        assert is_problem(await http.put(income_path, headers=pdf,
                                         content=chunks(too_big)), 413)
        assert await blobs.keys("receipt/") == []
        path = f"/api/v1/expenses/{expense['id']}/receipt"
        stored = await http.put(path, headers=pdf, content=chunks(big))
        assert stored.status_code == 200, stored.text
        assert (stored.json()["receipt"]["size"], stored.json()["receipt"]["sha256"]) == (
            len(big), hashlib.sha256(big).hexdigest())
        served = await http.get(path, headers=acc_a)
        assert (served.status_code, served.content) == (200, big)
        stored = await http.put(income_path, headers=pdf, content=big)
        assert stored.status_code == 200, stored.text

        long_reason = {"reason": "x" * (2 * mib)}
        assert is_problem(await http.patch(f"/api/v1/expenses/{expense['id']}",
                                           headers=acc_a, json=long_reason), 413)
