"""Clinic finances end to end through the gateway: a hospital's accountant records an
expense and an income, attaches the expense's receipt, and reads the month's profit
and loss as JSON, CSV and an SVG chart; an accountant of another hospital is refused.
A phone photo of a receipt (a few MiB) goes through the gateway's ``document`` group;
one over its 25 MiB is refused at the edge.

A platform of its own with the services this needs (the accountant's membership
reaches the payment service as ``staff.assigned``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from PIL import Image

from healthflow.common.errors import PROBLEM_JSON
from healthflow.devkit.testing import RunningPlatform, platform_process, rabbitmq_vhost

from .conftest import as_admin, assert_problem, create_staff, ok, register_hospital
from .test_insurance import until_ok

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02" + (
    b"\x00" * 64)
ZONE = "Europe/Berlin"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    workdir = tmp_path_factory.mktemp("finances")
    with rabbitmq_vhost() as amqp_url, platform_process(
            workdir, amqp_url, "--only", "auth,hospital,payment") as running:
        yield running


async def accountant_of(api: httpx.AsyncClient, admin: Any, hospital: dict[str, Any]) -> Any:
    accountant = await create_staff(api, admin, ["accountant"])
    ok(await api.post(f"/api/v1/hospitals/{hospital['id']}/staff", headers=admin.headers,
                      json={"user_id": accountant.id, "staff_role": "accountant"}), 201)
    return accountant


async def test_an_accountant_records_an_expense_and_reads_the_monthly_pnl(
        platform: RunningPlatform) -> None:
    async with platform.client() as api:
        admin = await as_admin(api, platform)
        mine = await register_hospital(api, admin, f"Books Klinik {uuid.uuid4().hex[:6]}",
                                       time_zone=ZONE)
        other = await register_hospital(api, admin, f"Other Klinik {uuid.uuid4().hex[:6]}",
                                        time_zone=ZONE)
        accountant = await accountant_of(api, admin, mine)
        stranger = await accountant_of(api, admin, other)
        month = datetime.now(ZoneInfo(ZONE)).strftime("%Y-%m")
        expense_body = {
            "hospital_id": mine["id"], "category": "supplies", "date": f"{month}-01",
            "amount_minor": 12345, "currency": "EUR", "supplier": "Medical Supplies GmbH",
            "reason": "gloves and syringes"}
        expense = await until_ok(lambda: api.post("/api/v1/expenses",
                                                  headers=accountant.headers,
                                                  json=expense_body), 201,
                                 "the accountant never became finance of the hospital")
        ok(await api.post("/api/v1/incomes", headers=accountant.headers, json={
            "hospital_id": mine["id"], "category": "donation", "date": f"{month}-02",
            "amount_minor": 50000, "currency": "EUR", "payer": "Friends of the clinic",
            "reason": "annual donation"}), 201)

        receipt = f"/api/v1/expenses/{expense['id']}/receipt"
        assert_problem(await api.put(receipt, content=PNG, headers={
            **accountant.headers, "Content-Type": "application/pdf"}), 422, "invalid-receipt")
        stored = ok(await api.put(receipt, content=PDF, headers={
            **accountant.headers, "Content-Type": "application/pdf"}))
        assert stored["receipt"]["sha256"] == hashlib.sha256(PDF).hexdigest()
        served = await api.get(receipt, headers=accountant.headers)
        assert (served.status_code, served.content) == (200, PDF)

        url, params = "/api/v1/finance/reports/monthly", {"hospital_id": mine["id"],
                                                          "month": month}
        report = ok(await api.get(url, headers=accountant.headers, params=params))
        eur = report["currencies"][0]
        assert (report["time_zone"], eur["currency"], eur["expenses"]["supplies"],
                eur["incomes"]["donation"], eur["payments_received"], eur["net"]) == (
            ZONE, "EUR", 12345, 50000, 0, 50000 - 12345)
        as_csv = await api.get(url, headers=accountant.headers,
                               params={**params, "format": "csv"})
        rows = list(csv.reader(io.StringIO(as_csv.text)))
        assert ["EUR", "net", "", str(50000 - 12345)] in [r[1:] for r in rows]
        chart = await api.get(url, headers=accountant.headers,
                              params={**params, "format": "svg"})
        assert chart.headers["content-type"] == "image/svg+xml"
        root = ET.fromstring(chart.content)  # noqa: S314 (the platform's own output)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"

        assert_problem(await api.get(url, headers=stranger.headers, params=params), 403)
        assert_problem(await api.get(f"/api/v1/expenses/{expense['id']}",
                                     headers=stranger.headers), 404)
        assert_problem(await api.get(receipt, headers=stranger.headers), 404)


def photographed_receipt() -> bytes:
    """A JPEG of about 3 MB, as a phone photo of a receipt is (noise compresses badly)."""
    noise = random.Random(15).randbytes(1800 * 1400 * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (1800, 1400), noise).save(out, "JPEG", quality=95)
    return out.getvalue()


async def test_a_photographed_receipt_of_a_few_mib_goes_through_the_gateway(
        platform: RunningPlatform) -> None:
    """Over the default group's 1 MiB, within the ``document`` group's 25 MiB: stored and
    served byte for byte; 30 MB is 413 problem+json at the edge."""
    photo = photographed_receipt()
    assert 2 * 1024 * 1024 < len(photo) < 5 * 1024 * 1024
    async with platform.client() as api:
        admin = await as_admin(api, platform)
        hospital = await register_hospital(api, admin,
                                           f"Photo Klinik {uuid.uuid4().hex[:6]}",
                                           time_zone=ZONE)
        accountant = await accountant_of(api, admin, hospital)
        month = datetime.now(ZoneInfo(ZONE)).strftime("%Y-%m")
        body = {"hospital_id": hospital["id"], "category": "equipment",
                "date": f"{month}-03", "amount_minor": 89900, "currency": "EUR",
                "supplier": "Photo Supplies", "reason": "a new otoscope"}
        expense = await until_ok(lambda: api.post("/api/v1/expenses",
                                                  headers=accountant.headers, json=body),
                                 201, "the accountant never became finance of the hospital")
        receipt = f"/api/v1/expenses/{expense['id']}/receipt"
        jpeg = {**accountant.headers, "Content-Type": "image/jpeg"}

        too_large = await api.put(receipt, headers=jpeg, content=b"\xff" * (30 * 1000 * 1000))
        assert too_large.status_code == 413
        assert too_large.headers["content-type"] == PROBLEM_JSON
        assert too_large.json()["type"].endswith("/content-too-large")

        stored = ok(await api.put(receipt, headers=jpeg, content=photo))
        assert (stored["receipt"]["size"], stored["receipt"]["sha256"]) == (
            len(photo), hashlib.sha256(photo).hexdigest())
        served = await api.get(receipt, headers=accountant.headers)
        assert (served.status_code, served.headers["content-type"]) == (200, "image/jpeg")
        assert served.content == photo
