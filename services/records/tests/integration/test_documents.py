"""Clinical documents and patient images on the real S3 server: uploaded as streams,
checked by content (nothing kept on refusal), listed, downloaded, in the FHIR export."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from PIL import Image
from pypdf import PdfWriter

from healthflow.records import files

from .conftest import Records


def a_pdf(pages: int = 2) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(595, 842)  # A4 in points
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def an_image(kind: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 90)).save(out, kind)
    return out.getvalue()


@pytest.fixture
async def visit(records: Records) -> dict[str, Any]:
    pid = await records.register()
    encounter = (await records.walk_in(pid, "doc-d"))["id"]
    return {"patient": pid, "encounter": encounter, "doctor": records.as_("doc-d", "doctor"),
            "own": records.as_(pid, "patient")}


async def upload(records: Records, visit: dict[str, Any], body: bytes, content_type: str,
                 category: str = "lab-report", headers: dict[str, str] | None = None) -> Any:
    return await records.client.post(
        "/api/v1/documents", params={"encounter_id": visit["encounter"], "category": category},
        headers={**(headers or visit["doctor"]), "Content-Type": content_type}, content=body)


async def stored(records: Records) -> tuple[int, list[str]]:
    assert records.blobs is not None
    return (await records.runtime.db["documents"].count_documents({}),
            list(await records.blobs.keys()))


async def test_a_pdf_and_a_jpeg_are_stored_listed_downloaded_and_exported(
        records: Records, visit: dict[str, Any]) -> None:
    pdf, jpeg = a_pdf(), an_image("JPEG")
    report = await upload(records, visit, pdf, "application/pdf")
    assert report.status_code == 201, report.text
    photo = await upload(records, visit, jpeg, "image/jpeg", category="photo")
    assert photo.status_code == 201, photo.text
    assert (report.json()["pages"], report.json()["size"]) == (2, len(pdf))
    assert (photo.json()["width"], photo.json()["height"]) == (64, 48)
    assert photo.json()["uploaded_by"] == "doc-d"

    listed = (await records.client.get("/api/v1/documents", headers=visit["own"],
                                       params={"patient_id": visit["patient"]})).json()
    assert [d["category"] for d in listed["items"]] == ["lab-report", "photo"]
    got = await records.client.get(report.json()["file"], headers=visit["own"])
    assert got.status_code == 200 and got.content == pdf
    assert got.headers["content-type"] == "application/pdf"
    nurse = await records.client.get(photo.json()["file"], headers=records.as_("n-1", "nurse"))
    assert nurse.content == jpeg
    linked = await records.client.get(f"/api/v1/documents/{photo.json()['id']}/link",
                                      headers=visit["doctor"])
    link = linked.json()
    assert link["file"] == photo.json()["file"] and link["url"] is None  # S3 is internal
    assert link["expires_in"] == 60
    assert linked.headers["cache-control"] == "no-store"
    for answer in (got, nurse):  # never cached, saved not rendered, never sniffed
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["content-disposition"].startswith("attachment")
        assert answer.headers["x-content-type-options"] == "nosniff"
    scopes = {(e["data"]["accessor_id"], e["data"]["scope"])
              for e in await records.outbox("record.accessed")}
    assert {("n-1", "document-file"), ("doc-d", "document-file")} <= scopes
    assert not any(e["data"]["accessor_id"] == visit["patient"]
                   for e in await records.outbox("record.accessed"))
    uploaded = await records.outbox("document.uploaded")
    assert sorted(e["data"]["category"] for e in uploaded) == ["lab-report", "photo"]
    assert all(e["patientid"] == visit["patient"] for e in uploaded)

    bundle = (await records.client.get(f"/api/v1/fhir/Patient/{visit['patient']}/$everything",
                                       headers=visit["own"])).json()
    Bundle.model_validate(bundle)
    references = [e["resource"] for e in bundle["entry"]
                  if e["resource"]["resourceType"] == "DocumentReference"]
    assert [r["type"]["coding"][0]["code"] for r in references] == ["11502-2", "72170-4"]
    assert references[1]["content"][0]["attachment"]["contentType"] == "image/jpeg"
    assert references[0]["content"][0]["attachment"]["url"].endswith(report.json()["file"])


@pytest.mark.parametrize(("body", "content_type", "category", "problem"), [
    (an_image("PNG"), "application/pdf", "referral", "type-mismatch"),  # a PNG named .pdf
    (a_pdf()[:-40], "application/pdf", "referral", "unreadable-pdf"),  # truncated
    (an_image("JPEG")[:300], "image/jpeg", "photo", "unreadable-image"),
    (a_pdf(), "application/pdf", "photo", "not-accepted"),  # a photo is an image
    (b"just some text, not a file", "application/pdf", "consent", "not-accepted"),
])
async def test_refused_files_answer_422_and_leave_nothing(
        records: Records, visit: dict[str, Any], body: bytes, content_type: str,
        category: str, problem: str) -> None:
    refused = await upload(records, visit, body, content_type, category=category)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"].endswith("/invalid-document")
    assert refused.json()["problem"] == problem
    assert await stored(records) == (0, [])
    assert await records.outbox("document.uploaded") == []


async def test_only_a_treating_doctor_uploads_and_strangers_read_nothing(
        records: Records, visit: dict[str, Any]) -> None:
    pdf = a_pdf(1)
    stranger = await upload(records, visit, pdf, "application/pdf",
                            headers=records.as_("doc-x", "doctor"))
    assert stranger.status_code == 403 and stranger.json()["type"].endswith("/not-treating")
    own = await upload(records, visit, pdf, "application/pdf", headers=visit["own"])
    assert own.status_code == 403
    assert await stored(records) == (0, [])
    document = (await upload(records, visit, pdf, "application/pdf")).json()
    other = await records.register()
    for path in (f"/api/v1/documents/{document['id']}", document["file"]):
        assert (await records.client.get(path, headers=records.as_(other, "patient"))
                ).status_code == 404
        assert (await records.client.get(path, headers=records.as_("doc-x", "doctor"))
                ).status_code == 403
    listing = await records.client.get("/api/v1/documents", params={"patient_id": other},
                                       headers=visit["doctor"])
    assert listing.status_code == 403


async def test_a_document_filed_by_mistake_is_entered_in_error_and_kept(
        records: Records, visit: dict[str, Any]) -> None:
    pdf = a_pdf(1)
    document = (await upload(records, visit, pdf, "application/pdf")).json()
    assert document["status"] == "current" and document["withdrawal"] is None
    url = f"/api/v1/documents/{document['id']}/entered-in-error"
    body = {"reason": "uploaded to the wrong patient"}
    for who in (records.as_("doc-x", "doctor"), visit["own"]):  # not treating; the patient
        refused = await records.client.post(url, headers=who, json=body)
        assert refused.status_code == 403, refused.text
    empty = await records.client.post(url, headers=visit["doctor"], json={"reason": ""})
    assert empty.status_code == 422
    assert await records.outbox("document.entered_in_error") == []

    withdrawn = await records.client.post(url, headers=visit["doctor"], json=body)
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["status"] == "entered-in-error"
    assert withdrawn.json()["withdrawal"]["by"] == "doc-d"
    again = await records.client.post(url, headers=visit["doctor"], json=body)
    assert again.status_code == 409
    assert again.json()["type"].endswith("/document-entered-in-error")
    missing = await records.client.post("/api/v1/documents/nope/entered-in-error",
                                        headers=visit["doctor"], json=body)
    assert missing.status_code == 404

    [event] = await records.outbox("document.entered_in_error")
    assert event["data"]["document_id"] == document["id"]
    assert "reason" not in event["data"]  # free text stays out of events
    await withdrawn_file_is_served_to_clinicians_who_filed_or_treat(
        records, visit, document, pdf)
    bundle = (await records.client.get(f"/api/v1/fhir/Patient/{visit['patient']}/$everything",
                                       headers=visit["own"])).json()
    Bundle.model_validate(bundle)
    [reference] = [e["resource"] for e in bundle["entry"]
                   if e["resource"]["resourceType"] == "DocumentReference"]
    assert reference["status"] == "entered-in-error"


async def withdrawn_file_is_served_to_clinicians_who_filed_or_treat(
        records: Records, visit: dict[str, Any], document: dict[str, Any], pdf: bytes) -> None:
    """Once withdrawn: the uploader and another treating doctor still get the file (marked,
    never deleted); the patient and a nurse get 410 for the file and the link; only
    clinicians see the reason."""
    await records.walk_in(visit["patient"], "doc-t")
    link = f"/api/v1/documents/{document['id']}/link"
    for who in (visit["doctor"], records.as_("doc-t", "doctor")):
        got = await records.client.get(document["file"], headers=who)
        assert got.status_code == 200 and got.content == pdf
        assert (await records.client.get(link, headers=who)).status_code == 200
    nurse = records.as_("nurse-n", "nurse")
    for who in (visit["own"], nurse):
        for url in (document["file"], link):
            gone = await records.client.get(url, headers=who)
            assert gone.status_code == 410, (url, gone.text)
            assert gone.headers["content-type"].startswith("application/problem+json")
            assert gone.json()["type"].endswith("/document-withdrawn")
    metadata = f"/api/v1/documents/{document['id']}"
    seen = {name: (await records.client.get(metadata, headers=who)).json()["withdrawal"]
            for name, who in (("patient", visit["own"]), ("nurse", nurse))}
    assert seen["patient"]["reason"] is None and seen["patient"]["by"] == "doc-d"
    assert seen["nurse"]["reason"] == "uploaded to the wrong patient"
    listed = (await records.client.get("/api/v1/documents", headers=visit["own"], params={
        "patient_id": visit["patient"]})).json()["items"]
    assert [d["withdrawal"]["reason"] for d in listed] == [None]


async def test_an_upload_without_content_type_is_refused_and_nothing_kept(
        records: Records, visit: dict[str, Any]) -> None:
    refused = await records.client.post(
        "/api/v1/documents", params={"encounter_id": visit["encounter"],
                                     "category": "lab-report"},
        headers=visit["doctor"], content=a_pdf())
    assert refused.status_code == 415, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "Content-Type" in refused.json()["detail"]
    assert await stored(records) == (0, [])


async def test_at_most_inspect_concurrency_files_are_checked_at_once(
        records: Records, visit: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoding is CPU and memory heavy: concurrent uploads queue for a check slot
    (``inspect_concurrency``, 2 by default)."""
    active, most, lock = 0, 0, threading.Lock()
    real = files.inspect

    def counted(path: Any, content_type: str) -> Any:
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        try:
            time.sleep(0.3)
            return real(path, content_type)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(files, "inspect", counted)
    answers = await asyncio.gather(*(upload(records, visit, an_image("PNG"), "image/png",
                                            category="photo") for _ in range(5)))
    assert [a.status_code for a in answers] == [201] * 5
    assert most == 2
