"""Paging: listings and the FHIR export go past their first page, never repeat or skip,
and refuse a cursor they did not issue."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fhir.resources.R4B.bundle import Bundle

from healthflow.common.pagination import encode_cursor
from healthflow.records import export

from .conftest import Records

PULSE = {"type": "Observation", "code": "8867-4"}


async def a_long_record(records: Records, entries: int) -> tuple[str, str, dict[str, str]]:
    """A patient with one encounter of ``doc-g`` holding ``entries`` heart rates."""
    pid = await records.register()
    encounter = (await records.walk_in(pid, "doc-g"))["id"]
    doctor = records.as_("doc-g", "doctor")
    for rate in range(entries):
        written = await records.client.post(
            f"/api/v1/records/encounters/{encounter}/entries", headers=doctor,
            json={"entry": {**PULSE, "quantity": {"value": 60 + rate, "unit": "/min"}}})
        assert written.status_code == 201, written.text
    return pid, encounter, doctor


async def all_pages(records: Records, url: str, headers: dict[str, str],
                    params: dict[str, Any]) -> list[list[dict[str, Any]]]:
    pages, cursor = [], None
    while True:
        response = await records.client.get(url, headers=headers,
                                            params={**params, "cursor": cursor} if cursor
                                            else params)
        assert response.status_code == 200, response.text
        pages.append(response.json()["items"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages


async def test_entries_and_encounters_come_page_by_page_past_the_default_page(
        records: Records) -> None:
    pid, encounter, doctor = await a_long_record(records, 53)
    url = f"/api/v1/records/encounters/{encounter}/entries"
    pages = await all_pages(records, url, doctor, {})
    assert [len(p) for p in pages] == [50, 3]  # the default page is 50
    values = [e["content"]["quantity"]["value"] for p in pages for e in p]
    assert values == [60 + i for i in range(53)]  # oldest first, none twice
    small = await all_pages(records, url, records.as_(pid, "patient"), {"limit": 20})
    assert [len(p) for p in small] == [20, 20, 13]
    for _ in range(2):
        await records.walk_in(pid, "doc-g")
    encounters = await all_pages(records, "/api/v1/encounters", doctor,
                                 {"patient_id": pid, "limit": 2})
    assert [len(p) for p in encounters] == [2, 1]
    assert encounters[0][0]["id"] == encounter
    forged = await records.client.get(url, headers=doctor, params={"cursor": "bm90LWpzb24"})
    assert forged.status_code == 400
    assert forged.headers["content-type"].startswith("application/problem+json")
    too_many = await records.client.get(url, headers=doctor, params={"limit": 201})
    assert too_many.status_code == 422


async def test_the_export_follows_next_links_and_every_page_validates(
        records: Records) -> None:
    pid, _, doctor = await a_long_record(records, 9)
    url: str | None = f"/api/v1/fhir/Patient/{pid}/$everything?_count=4"
    seen: list[str] = []
    sizes = []
    while url is not None:
        response = await records.client.get(url, headers=doctor)
        assert response.status_code == 200, response.text
        bundle = response.json()
        Bundle.model_validate(bundle)
        matches = [e for e in bundle["entry"] if e["search"]["mode"] == "match"]
        sizes.append(len(matches))  # the Patient, one Encounter, nine Observations
        seen += [e["fullUrl"] for e in matches]
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        assert "self" in links
        next_url = links.get("next")
        url = None if next_url is None else f"{urlsplit(next_url).path}?" \
            f"{urlsplit(next_url).query}"
    assert sizes == [4, 4, 3]
    assert len(seen) == len(set(seen)) == 11
    assert seen[0].endswith(f"/Patient/{pid}") and "/Encounter/" in seen[1]
    whole = (await records.client.get(f"/api/v1/fhir/Patient/{pid}/$everything",
                                      headers=doctor)).json()
    assert [e["fullUrl"] for e in whole["entry"] if e["search"]["mode"] == "match"] == seen
    assert [link["relation"] for link in whole["link"]] == ["self"]
    forged = await records.client.get(f"/api/v1/fhir/Patient/{pid}/$everything",
                                      headers=doctor, params={"_cursor": "eyJzIjo5fQ"})
    assert forged.status_code == 400
    # A forged inner cursor of the prescriptions section is refused here, not handed on.
    for inner in ("not base64 !", encode_cursor({"x": 1}), encode_cursor({"k": "1"}),
                  encode_cursor({"k": [{"$where": "1"}]})):
        tampered = await records.client.get(
            f"/api/v1/fhir/Patient/{pid}/$everything", headers=doctor,
            params={"_cursor": encode_cursor({"s": export.PRESCRIPTIONS, "c": inner})})
        assert tampered.status_code == 400, (inner, tampered.text)
        assert tampered.headers["content-type"].startswith("application/problem+json")
