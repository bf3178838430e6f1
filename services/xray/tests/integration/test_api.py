"""The xray service in-process, on the real MongoDB-protocol server and the real S3 server:
orders, uploads (a good DICOM, a JPEG 2000 one, refused ones with nothing stored),
listing, previews, downloads, access."""

from __future__ import annotations

import asyncio
import io
import logging
import struct
import zlib
from typing import Any

import httpx
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.uid import JPEG2000Lossless, generate_uid

from healthflow.common.blobs import XRAY
from healthflow.common.events.outbox import OUTBOX
from healthflow.devkit.dicom import radiograph
from healthflow.devkit.testing import running_app
from healthflow.xray import imaging
from healthflow.xray.app import create_app

from .conftest import DICOM, DOCTOR, PATIENT, RADIOGRAPHER, ordered, settings_for


async def stored_keys(app: Any) -> list[str]:
    """The stored originals (not what the processing worker derives from them)."""
    return list(await app.state.blobs.keys(prefix="xray/"))


async def test_an_order_is_uploaded_listed_previewed_and_downloaded(xray, tokens) -> None:
    http, app = xray
    order = await ordered(http, app, tokens)
    assert (order["body_site"]["code"], order["priority"]) == ("51185008", "urgent")
    other = await http.post("/api/v1/imaging/orders", headers=tokens.headers(
        "dr-2", ("doctor",)), json={"encounter_id": order["encounter_id"],
                                    "body_part": "CHEST", "view": "PA", "question": "x"})
    assert other.status_code == 403 and "not-your-encounter" in other.text
    radiographer = tokens.headers(RADIOGRAPHER, ("radiographer",))
    work = (await http.get("/api/v1/imaging/orders", headers=radiographer)).json()["items"]
    assert [o["id"] for o in work] == [order["id"]]

    for data in (radiograph(PATIENT, accession_number=order["accession_number"]),
                 radiograph(PATIENT, transfer_syntax=JPEG2000Lossless)):
        up = await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                             content=data, headers=radiographer | DICOM)
        assert up.status_code == 201, up.text
    assert len(await stored_keys(app)) == 2
    patient = tokens.headers(PATIENT, ("patient",))
    studies = (await http.get("/api/v1/imaging/studies", params={"patient_id": PATIENT},
                              headers=patient)).json()["items"]
    assert len(studies) == 2 and {s["order_id"] for s in studies} == {order["id"]}
    instance = studies[0]["series"][0]["instances"][0]
    preview = await http.get(instance["preview"], headers=tokens.headers(DOCTOR, ("doctor",)))
    assert preview.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(preview.content)).size == (64, 64)
    file = await http.get(instance["file"], headers=patient)
    assert file.status_code == 200 and len(file.content) == instance["size"]
    link = (await http.get(instance["file"].replace("/file", "/link"), headers=patient)).json()
    assert link == {"url": None, "expires_in": 300, "file": instance["file"]}
    stranger = await http.get(instance["preview"], headers=tokens.headers("dr-9", ("doctor",)))
    assert stranger.status_code == 403 and "not-treating" in stranger.text
    assert (await http.get(f"/api/v1/imaging/studies/{studies[0]['id']}",
                           headers=tokens.headers("p-2", ("patient",)))).status_code == 404
    types = [e["type"] for e in await app.state.runtime.db[OUTBOX].find().to_list()]
    assert types.count("xray.uploaded") == 2 and "xray.requested" in types
    assert "xray.accessed" in types
    events = await app.state.runtime.db[OUTBOX].find({"type": "xray.requested"}).to_list()
    assert "pneumonia" not in str(events)  # no free text in events


@pytest.mark.parametrize("case, problem", [
    ("truncated", "truncated"), ("png-as-dicom", "type-mismatch"),
    ("no-uids", "missing-uid"), ("other-patient", None), ("ct", "unsupported-modality")])
async def test_a_refused_file_answers_422_and_nothing_is_stored(xray, tokens, case,
                                                                problem) -> None:
    http, app = xray
    order = await ordered(http, app, tokens)
    image = io.BytesIO()
    Image.new("L", (20, 20)).save(image, format="PNG")
    body = {"truncated": radiograph(PATIENT)[:-500], "png-as-dicom": image.getvalue(),
            "no-uids": radiograph(PATIENT, with_uids=False),
            "other-patient": radiograph("MRN-0042"),
            "ct": radiograph(PATIENT, modality="CT")}[case]
    answer = await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                             content=body, headers=tokens.headers(
                                 RADIOGRAPHER, ("radiographer",)) | DICOM)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    if problem:
        assert answer.json()["problem"] == problem
    else:
        assert answer.json()["type"].endswith("/patient-mismatch")
    assert await stored_keys(app) == []
    assert await app.state.runtime.db["instances"].count_documents({}) == 0
    assert await app.state.runtime.db[OUTBOX].count_documents({"type": "xray.uploaded"}) == 0


async def test_a_report_is_drafted_signed_once_and_shown_to_the_patient_when_final(
        xray, tokens) -> None:
    http, app = xray
    order = await ordered(http, app, tokens)
    study = (await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                             content=radiograph(PATIENT), headers=tokens.headers(
                                 RADIOGRAPHER, ("radiographer",)) | DICOM)).json()
    url = f"/api/v1/imaging/studies/{study['id']}/report"
    doctor, patient = tokens.headers(DOCTOR, ("doctor",)), tokens.headers(PATIENT, ("patient",))
    text = {"findings": "Right lower lobe consolidation.", "impression": "Pneumonia."}
    draft = await http.put(url, headers=doctor, json=text)
    assert draft.status_code == 200 and draft.json()["status"] == "preliminary", draft.text
    assert (await http.get(url, headers=patient)).status_code == 404
    stranger = await http.put(url, headers=tokens.headers("dr-9", ("doctor",)), json=text)
    assert stranger.status_code == 403 and "not-treating" in stranger.text
    signed = (await http.post(f"{url}/sign", headers=doctor)).json()
    assert signed["status"] == "final" and signed["issued_at"]
    assert (await http.get(url, headers=patient)).json()["impression"] == "Pneumonia."
    again = await http.put(url, headers=doctor, json=text)
    assert again.status_code == 409 and "report-final" in again.text
    reported = await app.state.runtime.db[OUTBOX].find({"type": "xray.reported"}).to_list()
    assert len(reported) == 1 and "Pneumonia" not in str(reported)


async def test_only_the_upload_route_takes_a_large_body(xray, tokens) -> None:
    """The large limit is for the streamed upload alone: a JSON route refuses a body over
    the platform's 1 MiB before parsing it (and before any permission is checked, so
    a patient could otherwise make the service hold hundreds of MiB of JSON)."""
    http, app = xray
    order = await ordered(http, app, tokens)
    big = b'{"findings": "' + b"x" * (2 * 1024 * 1024) + b'", "impression": "y"}'
    json_type = {"Content-Type": "application/json"}
    for method, url in (("PUT", "/api/v1/imaging/studies/s-1/report"),
                        ("POST", "/api/v1/imaging/orders")):
        answer = await http.request(method, url, content=big, headers=tokens.headers(
            PATIENT, ("patient",)) | json_type)
        assert answer.status_code == 413, (url, answer.status_code)
        assert answer.headers["content-type"].startswith("application/problem+json")
    image = radiograph(PATIENT, rows=1024, columns=1024)  # 2 MiB of pixels
    assert len(image) > 2 * 1024 * 1024
    up = await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                         content=image, headers=tokens.headers(
                             RADIOGRAPHER, ("radiographer",)) | DICOM)
    assert up.status_code == 201, up.text


def in_study(data: bytes, study_uid: str, patient_id: str | None = None) -> bytes:
    """The DICOM file ``data`` moved into the study ``study_uid`` (and to ``patient_id``)."""
    ds = dcmread(io.BytesIO(data))
    ds.StudyInstanceUID = study_uid
    if patient_id is not None:
        ds.PatientID = patient_id
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


async def test_concurrent_uploads_to_one_new_study_are_all_stored_numbered_apart(
        xray, tokens) -> None:
    """Images of one new study arriving together (a modality sending a series) make one
    study, and each gets its own instance number: no 500 from the study's unique index,
    no two images numbered alike."""
    http, app = xray
    order = await ordered(http, app, tokens)
    study_uid, count = generate_uid(), 12
    radiographer = tokens.headers(RADIOGRAPHER, ("radiographer",)) | DICOM
    answers = await asyncio.gather(*(
        http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                  content=in_study(radiograph(PATIENT), study_uid), headers=radiographer)
        for _ in range(count)))
    assert [a.status_code for a in answers] == [201] * count, [a.text for a in answers]
    db = app.state.runtime.db
    assert await db["studies"].count_documents({"study_uid": study_uid}) == 1
    numbers = sorted(i["number"] for i in await db["instances"].find().to_list())
    assert numbers == list(range(1, count + 1))
    assert len(await stored_keys(app)) == count


async def test_a_uid_stored_for_another_patient_is_refused_without_saying_so(
        xray, tokens) -> None:
    """Re-sending a stored image is 200 with its study (stored once), another file under
    its SOP Instance UID 409 ``duplicate-instance`` within its order, but the same UIDs
    under another patient's order (the Patient ID rewritten to match)
    answer a generic 422 that does not confirm they are stored, whether the study UID
    or only the SOP Instance UID is the stored one."""
    http, app = xray
    mine, theirs = await ordered(http, app, tokens), await ordered(http, app, tokens, "p-2")
    radiographer = tokens.headers(RADIOGRAPHER, ("radiographer",)) | DICOM
    image = radiograph(PATIENT)

    async def send(order: dict[str, Any], data: bytes) -> httpx.Response:
        return await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                               content=data, headers=radiographer)

    first = await send(mine, image)
    assert first.status_code == 201
    again = await send(mine, image)  # the same file: 200 with its study, stored once
    assert (again.status_code, again.json()) == (200, first.json())
    assert again.headers["location"] == first.headers["location"]
    changed = dcmread(io.BytesIO(image))
    changed.PatientName = "Other^Name"
    out = io.BytesIO()
    changed.save_as(out, enforce_file_format=True)
    another = await send(mine, out.getvalue())  # another file under the stored UID
    assert another.status_code == 409
    assert another.json()["type"].endswith("/duplicate-instance")
    study_uid = dcmread(io.BytesIO(image)).StudyInstanceUID
    for data in (in_study(image, study_uid, "p-2"), in_study(image, generate_uid(), "p-2")):
        answer = await send(theirs, data)
        assert answer.status_code == 422, answer.text
        assert answer.json()["type"].endswith("/uid-not-accepted")
        assert "stored" not in answer.json()["detail"]
    assert await app.state.runtime.db["instances"].count_documents({}) == 1
    assert len(await stored_keys(app)) == 1


async def test_an_image_that_does_not_render_logs_no_element_value(xray, tokens,
                                                                   caplog) -> None:
    """A stored file that fails to render (here its Photometric Interpretation, which
    pydicom quotes in its error, carries a name) answers a generic 500 and logs the
    error's type, never the message with the value."""
    http, app = xray
    order = await ordered(http, app, tokens)
    study = (await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                             content=radiograph(PATIENT), headers=tokens.headers(
                                 RADIOGRAPHER, ("radiographer",)) | DICOM)).json()
    instance = study["series"][0]["instances"][0]
    ds = dcmread(io.BytesIO(radiograph(PATIENT)))
    ds.PhotometricInterpretation = "DOE JANE"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    broken = await app.state.blobs.put(XRAY, out.getvalue(), declared_type=DICOM[
        "Content-Type"])
    await app.state.runtime.db["instances"].update_one(
        {"_id": instance["id"]}, {"$set": {"blob.key": broken.key}})
    caplog.set_level(logging.DEBUG)
    answer = await http.get(instance["preview"], headers=tokens.headers(DOCTOR, ("doctor",)))
    assert answer.status_code == 500, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "DOE" not in answer.text and "DOE" not in caplog.text
    assert "ValueError" in {getattr(r, "error", None) for r in caplog.records}


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width`` × ``height`` grey pixels and whose IDAT holds
    almost nothing: a few hundred bytes that claim gigapixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height,
                                                              8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("width, height", [(10_000, 7_000), (20_000, 10_000)],
                         ids=["above-our-limit", "above-pillows-bomb-limit"])
async def test_a_photograph_claiming_too_many_pixels_is_422_and_nothing_is_stored(
        xray, tokens, width, height) -> None:
    http, app = xray
    order = await ordered(http, app, tokens)
    answer = await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                             content=_png_header_only(width, height), headers=tokens.headers(
                                 RADIOGRAPHER, ("radiographer",)) | {"Content-Type": "image/png"})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["problem"] == "too-many-pixels"
    assert await stored_keys(app) == []
    assert await app.state.runtime.db["instances"].count_documents({}) == 0


async def test_an_image_over_the_configured_pixel_limit_is_422_before_decoding(
        mongodb_url, s3_env, unique_name, tokens, monkeypatch) -> None:
    """XRAY_MAX_IMAGE_PIXELS bounds what an upload may declare (Rows × Columns × frames,
    or a photograph's header): over it, 422 ``too-many-pixels`` naming both numbers,
    nothing stored, and no pixel decoded; Pillow's guard is set to it."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after
    photo = io.BytesIO()
    Image.new("L", (80, 60)).save(photo, format="PNG")

    decoded: list[object] = []  # a raise here would be caught as "unreadable"

    def no_decoding(*args: object) -> None:
        decoded.append(args)

    monkeypatch.setattr(imaging, "_check_decodes", no_decoding)
    app = create_app(settings_for(mongodb_url, s3_env, unique_name,
                                  max_image_pixels=64 * 64 - 1))
    app.state.verifier = tokens.verifier()
    assert Image.MAX_IMAGE_PIXELS == 64 * 64 - 1
    async with running_app(app) as http:
        order = await ordered(http, app, tokens)
        for body, content_type in ((radiograph(PATIENT), imaging.DICOM),
                                   (radiograph(PATIENT, transfer_syntax=JPEG2000Lossless),
                                    imaging.DICOM), (photo.getvalue(), "image/png")):
            answer = await http.post(
                "/api/v1/imaging/studies", params={"order_id": order["id"]}, content=body,
                headers=tokens.headers(RADIOGRAPHER, ("radiographer",))
                | {"Content-Type": content_type})
            assert answer.status_code == 422, answer.text
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert answer.json()["problem"] == "too-many-pixels"
            assert answer.json()["max_pixels"] == 64 * 64 - 1
        assert decoded == []
        assert await stored_keys(app) == []
        assert await app.state.runtime.db["instances"].count_documents({}) == 0


async def test_an_upload_whose_body_takes_longer_than_the_database_budget_is_stored(
        xray, tokens, monkeypatch) -> None:
    """A radiographer's slow link: the body arrives over more than the database budget
    (lowered here from 8 s to keep the test fast), and the upload and the STOW-RS request
    are still stored, because each transaction has its own budget on streamed routes
    rather than one counted from the request's start."""
    from healthflow.common import mongo

    from .test_dicomweb import BASE, multipart_related

    http, app = xray
    order = await ordered(http, app, tokens)
    radiographer = tokens.headers(RADIOGRAPHER, ("radiographer",))
    monkeypatch.setattr(mongo, "TRANSACTION_BUDGET", 1.5)

    def slowly(data: bytes) -> Any:
        async def chunks() -> Any:
            yield data[:1024]
            await asyncio.sleep(2.0)  # longer than the budget
            yield data[1024:]
        return chunks()

    up = await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                         content=slowly(radiograph(PATIENT)), headers=radiographer | DICOM)
    assert up.status_code == 201, up.text
    body, content_type = multipart_related(
        radiograph(PATIENT, accession_number=order["accession_number"]))
    stow = await http.post(BASE, content=slowly(body),
                           headers=radiographer | {"Content-Type": content_type})
    assert stow.status_code == 200, stow.text
    late_json = await http.post("/api/v1/imaging/orders", content=slowly(
        b'{"encounter_id": "' + order["encounter_id"].encode() + b'", "body_part": "CHEST",'
        + b' ' * 1024 + b'"view": "PA", "question": "x"}'),
        headers=tokens.headers(DOCTOR, ("doctor",)) | {"Content-Type": "application/json"})
    assert late_json.status_code == 503  # a JSON route keeps the request-wide budget
