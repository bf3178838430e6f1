"""An invoice PDF rendered for a revision the invoice has left is never kept as its PDF,
whichever finishes first (the real MongoDB-protocol server and S3 server)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from healthflow.devkit.embedded import EmbeddedStripe
from healthflow.devkit.testing import TokenFactory, eventually
from healthflow.payment import invoices

from .test_api import Client, payment_app
from .test_insurance import invoice_of
from .test_invoices import LAB, accountant_at, pdf_text


@pytest.fixture
async def client(mongodb_url: str, unique_name: str, tokens: TokenFactory,
                 stripe_server: EmbeddedStripe, s3_env: dict[str, str]
                 ) -> AsyncIterator[Client]:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env, default_tax_basis_points=700) as running:
        yield running


class HeldRendering:
    """Holds the first rendering of an invoice (in its worker thread) until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        real = invoices._render_invoice

        def render(doc: dict[str, Any], hospital: dict[str, Any] | None) -> bytes:
            self.calls += 1
            if self.calls == 1:
                self.started.set()
                assert self.release.wait(30)
            return real(doc, hospital)

        monkeypatch.setattr(invoices, "_render_invoice", render)


@pytest.mark.parametrize("stale_finishes", ["before", "after"])
async def test_a_rendering_of_an_older_revision_never_becomes_the_invoice_pdf(
        client: Client, tokens: TokenFactory, monkeypatch: pytest.MonkeyPatch,
        stale_finishes: str) -> None:
    """A download starts rendering the issued invoice; the invoice is cancelled; the
    stale rendering finishes ``before`` or ``after`` a download of the cancelled one."""
    http, app = client
    await accountant_at(app, "acc-lab", LAB)
    accountant = tokens.headers("acc-lab", ("accountant",))
    invoice = await invoice_of(http, app, tokens, "p-race", [("2345-7", 1, 1250)])
    url = f"/api/v1/invoices/{invoice['id']}/pdf"
    held = HeldRendering(monkeypatch)
    stale = asyncio.create_task(http.get(url, headers=accountant))

    async def rendering() -> bool:
        return held.started.is_set()

    await eventually(rendering, within=10, interval=0.02, message="no rendering started")
    cancelled = await http.post(f"/api/v1/invoices/{invoice['id']}/cancel",
                                headers=accountant)
    assert cancelled.status_code == 200, cancelled.text
    if stale_finishes == "after":
        fresh = await http.get(url, headers=accountant)
        assert "CANCELLED" in pdf_text(fresh.content)
    held.release.set()
    assert "CANCELLED" not in pdf_text((await stale).content)  # as it was when asked

    served = await http.get(url, headers=accountant)
    assert "CANCELLED" in pdf_text(served.content)
    again = await http.get(url, headers=accountant)
    assert again.content == served.content
    kept = await app.state.runtime.db["invoices"].find_one({"_id": invoice["id"]})
    assert (kept["revision"], kept["pdf"]["key"]) == (1, invoices.pdf_key(invoice["id"], 1))
