"""The paramedic service in-process, on the real MongoDB-protocol server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from healthflow.common.events.outbox import OUTBOX
from healthflow.devkit.testing import TokenFactory, running_app
from healthflow.paramedic.app import create_app
from healthflow.paramedic.settings import Settings


@pytest.fixture
async def client(mongodb_url: str, unique_name: str,
                 tokens: TokenFactory) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    settings = Settings(mongodb_url=mongodb_url, mongodb_database=f"paramedic_{unique_name}",
                        transport="inprocess")
    app = create_app(settings)
    app.state.verifier = tokens.verifier()
    async with running_app(app) as http:
        yield http, app


async def test_a_note_is_written_read_back_by_its_owner_only_and_published(
        client: tuple[httpx.AsyncClient, object], tokens: TokenFactory) -> None:
    http, app = client
    me = tokens.headers("user-1", ("patient",))
    created = await http.post("/api/v1/paramedic/notes", json={"title": "  Bring the  scans "},
                              headers=me)
    assert created.status_code == 201, created.text
    note = created.json()
    assert note["title"] == "Bring the scans" and note["owner_id"] == "user-1"
    assert created.headers["location"] == f"/api/v1/paramedic/notes/{note['id']}"
    assert (await http.get(f"/api/v1/paramedic/notes/{note['id']}", headers=me)).json() == note
    other = await http.get(f"/api/v1/paramedic/notes/{note['id']}",
                           headers=tokens.headers("user-2", ("patient",)))
    assert other.status_code == 404
    assert other.headers["content-type"].startswith("application/problem+json")
    outbox = app.state.runtime.db[OUTBOX]
    published = await outbox.find({"type": "paramedic.note_created"}).to_list()
    assert [e["envelope"]["data"] for e in published] == [
        {"note_id": note["id"], "owner_id": "user-1"}]


async def test_bad_input_and_no_token_are_refused_and_write_nothing(
        client: tuple[httpx.AsyncClient, object], tokens: TokenFactory) -> None:
    http, app = client
    assert (await http.post("/api/v1/paramedic/notes", json={"title": "x"})).status_code == 401
    bad = await http.post("/api/v1/paramedic/notes", json={"title": "   "},
                          headers=tokens.headers("user-1"))
    assert bad.status_code == 422 and "title" in bad.text
    assert await app.state.runtime.db["notes"].count_documents({}) == 0
