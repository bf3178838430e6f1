"""DICOMweb read side (PS3.18): QIDO-RS search in the DICOM JSON model and WADO-RS
retrieve as multipart/related application/dicom and rendered frames, with the images'
access rules."""

from __future__ import annotations

import io
from email.parser import BytesParser
from typing import Any

import httpx
import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.pixels import apply_modality_lut
from pydicom.uid import generate_uid

from healthflow.common.events.outbox import recorded_events
from healthflow.devkit.dicom import radiograph

from .conftest import DICOM, DOCTOR, PATIENT, RADIOGRAPHER, ordered
from .test_api import in_study
from .test_real_radiographs import encoded, real

BASE = "/api/v1/dicomweb/studies"


def parts(response: httpx.Response) -> list[bytes]:
    """The bodies of a multipart/related answer (RFC 2387), parsed by the standard library."""
    head = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser().parsebytes(head + response.content)
    assert message.get_content_type() == "multipart/related"
    assert message.get_param("type") == "application/dicom"
    return [bytes(p.get_payload(decode=True)) for p in message.get_payload()]


async def stored_study(http: httpx.AsyncClient, app: Any, tokens: Any
                       ) -> tuple[str, list[str]]:
    """Two DICOM images of one study and a photograph of a film: the study UID and
    the two SOP Instance UIDs."""
    order = await ordered(http, app, tokens)
    radiographer = tokens.headers(RADIOGRAPHER, ("radiographer",))
    study_uid, sops = generate_uid(), []
    for _ in range(2):
        data = in_study(radiograph(PATIENT, accession_number=order["accession_number"]),
                        study_uid)
        sops.append(dcmread(io.BytesIO(data)).SOPInstanceUID)
        up = await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                             content=data, headers=radiographer | DICOM)
        assert up.status_code == 201, up.text
    photo = io.BytesIO()
    Image.new("L", (20, 20)).save(photo, format="PNG")
    assert (await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                            content=photo.getvalue(), headers=radiographer | {
                                "Content-Type": "image/png"})).status_code == 201
    return study_uid, sops


async def test_qido_rs_finds_a_patient_s_studies_series_and_instances(xray, tokens) -> None:
    http, app = xray
    study_uid, sops = await stored_study(http, app, tokens)
    patient = tokens.headers(PATIENT, ("patient",))
    found = await http.get(BASE, headers=patient)
    assert found.headers["content-type"] == "application/dicom+json", found.text
    [study] = found.json()  # the photograph's study is not a DICOM one
    assert study["0020000D"] == {"vr": "UI", "Value": [study_uid]}
    assert study["00201208"]["Value"] == [2] and study["00080061"]["Value"] == ["CR"]
    assert study["00081190"]["Value"][0].endswith(f"{BASE}/{study_uid}")
    assert study["00080050"]["Value"][0].startswith("HF")
    series = (await http.get(f"{BASE}/{study_uid}/series", headers=patient)).json()
    assert [s["00201209"]["Value"] for s in series] == [[1], [1]]  # one image per series
    series_uid = series[0]["0020000E"]["Value"][0]
    [listed] = (await http.get(f"{BASE}/{study_uid}/series/{series_uid}/instances",
                               headers=patient)).json()
    assert listed["0020000E"]["Value"] == [series_uid]
    every = (await http.get(f"{BASE}/{study_uid}/instances", headers=patient)).json()
    assert sorted(i["00080018"]["Value"][0] for i in every) == sorted(sops)
    doctor = tokens.headers(DOCTOR, ("doctor",))
    assert (await http.get(BASE, headers=doctor)).status_code == 400  # no PatientID
    by_doctor = await http.get(BASE, params={"PatientID": PATIENT}, headers=doctor)
    assert len(by_doctor.json()) == 1
    accessed = await recorded_events(app.state.runtime.db, {"type": "xray.accessed"})
    assert [(e.data or {})["scope"] for e in accessed] == ["dicomweb"]
    stranger = await http.get(BASE, params={"PatientID": PATIENT},
                              headers=tokens.headers("dr-9", ("doctor",)))
    assert stranger.status_code == 403
    other = await http.get(f"{BASE}/{study_uid}/series", headers=tokens.headers(
        "p-2", ("patient",)))
    assert other.status_code == 404 and "study-not-found" in other.text


async def test_qido_rs_answers_a_patient_searching_another_patient_s_id_with_nothing(
        xray, tokens) -> None:
    """A patient's search matches their own studies only: another patient's PatientID,
    with studies or without, is 200 ``[]`` alike (nothing tells them apart)."""
    http, app = xray
    await stored_study(http, app, tokens)
    other = tokens.headers("p-2", ("patient",))
    for patient_id in (PATIENT, "p-404"):
        found = await http.get(BASE, params={"PatientID": patient_id}, headers=other)
        assert found.status_code == 200, found.text
        assert found.json() == []
        assert found.headers["content-type"] == "application/dicom+json"
    own = await http.get(BASE, params={"PatientID": PATIENT}, headers=tokens.headers(
        PATIENT, ("patient",)))
    assert len(own.json()) == 1


async def test_wado_rs_retrieves_the_stored_files_as_multipart(xray, tokens) -> None:
    http, app = xray
    study_uid, sops = await stored_study(http, app, tokens)
    patient = tokens.headers(PATIENT, ("patient",))
    whole = await http.get(f"{BASE}/{study_uid}", headers=patient)
    assert whole.status_code == 200, whole.text
    got = [dcmread(io.BytesIO(body)) for body in parts(whole)]
    assert sorted(ds.SOPInstanceUID for ds in got) == sorted(sops)
    assert all(ds.pixel_array.shape == (64, 64) for ds in got)
    series_uid = next(ds.SeriesInstanceUID for ds in got if ds.SOPInstanceUID == sops[1])
    one = await http.get(f"{BASE}/{study_uid}/series/{series_uid}/instances/{sops[1]}",
                         headers=patient)
    [body] = parts(one)
    assert dcmread(io.BytesIO(body)).SOPInstanceUID == sops[1]
    accepted = await http.get(f"{BASE}/{study_uid}", headers=patient | {
        "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
    assert accepted.status_code == 200 and len(parts(accepted)) == 2
    for accept in ("application/dicom+json", 'multipart/related; type="image/jpeg"'):
        refused = await http.get(f"{BASE}/{study_uid}", headers=patient | {"Accept": accept})
        assert refused.status_code == 406, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
    missing = await http.get(f"{BASE}/{study_uid}/series/{series_uid}/instances/1.2.3",
                             headers=patient)
    assert missing.status_code == 404
    assert (await http.get(f"{BASE}/{study_uid}", headers=tokens.headers(
        "p-2", ("patient",)))).status_code == 404
    assert (await http.get(f"{BASE}/{study_uid}", headers=tokens.headers(
        RADIOGRAPHER, ("radiographer",)))).status_code == 403


def multipart_related(*files: bytes, boundary: str = "b0undary-hf") -> tuple[bytes, str]:
    """A STOW-RS body (RFC 2387) and its Content-Type."""
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                    + data + b"\r\n" for data in files) + f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


async def test_stow_rs_stores_each_part_and_reports_the_refused_ones(xray, tokens) -> None:
    http, app = xray
    order = await ordered(http, app, tokens)
    good = radiograph(PATIENT, accession_number=order["accession_number"])
    broken = dcmread(io.BytesIO(radiograph(PATIENT,
                                           accession_number=order["accession_number"])))
    broken.PixelData = broken.PixelData[:-512]
    out = io.BytesIO()
    broken.save_as(out, enforce_file_format=True)
    orphan = radiograph(PATIENT, accession_number="HF000000000000")
    body, content_type = multipart_related(good, out.getvalue(), orphan)
    radiographer = tokens.headers(RADIOGRAPHER, ("radiographer",))
    answer = await http.post(BASE, content=body,
                             headers=radiographer | {"Content-Type": content_type})
    assert answer.status_code == 202, answer.text
    assert answer.headers["content-type"] == "application/dicom+json"
    [stored] = answer.json()["00081199"]["Value"]
    assert stored["00081155"]["Value"] == [dcmread(io.BytesIO(good)).SOPInstanceUID]
    retrieved = await http.get(stored["00081190"]["Value"][0].removeprefix(
        app.state.runtime.settings.public_base_url), headers=tokens.headers(
            PATIENT, ("patient",)))
    assert parts(retrieved) == [good]
    reasons = [f["00081197"]["Value"][0] for f in answer.json()["00081198"]["Value"]]
    assert reasons == [0xC000, 0xC001]
    assert await app.state.runtime.db["instances"].count_documents({}) == 1
    assert len(await app.state.blobs.keys()) == 1

    again = await http.post(BASE, content=multipart_related(good)[0],
                            headers=radiographer | {"Content-Type": content_type})
    assert again.status_code == 200  # the same file again: listed as stored, kept once
    assert again.json()["00081199"]["Value"] == [stored]
    assert await app.state.runtime.db["instances"].count_documents({}) == 1
    assert len(await app.state.blobs.keys(prefix="xray/")) == 1
    changed = dcmread(io.BytesIO(good))
    changed.PatientName = "Other^Name"
    other = io.BytesIO()
    changed.save_as(other, enforce_file_format=True)
    refused = await http.post(BASE, content=multipart_related(other.getvalue())[0],
                              headers=radiographer | {"Content-Type": content_type})
    assert refused.status_code == 409  # another file under a stored SOP Instance UID
    wrong = await http.post(BASE, content=good, headers=radiographer | DICOM)
    assert wrong.status_code == 415
    garbage = await http.post(BASE, content=b"no parts here",
                              headers=radiographer | {"Content-Type": content_type})
    assert garbage.status_code == 400
    patient = await http.post(BASE, content=body, headers=tokens.headers(
        PATIENT, ("patient",)) | {"Content-Type": content_type})
    assert patient.status_code == 403


async def test_stow_rs_takes_a_body_over_the_json_limit(xray, tokens) -> None:
    """STOW-RS has the upload's body limit, not the 1 MiB of JSON routes."""
    http, app = xray
    order = await ordered(http, app, tokens)
    big = radiograph(PATIENT, accession_number=order["accession_number"], rows=1024,
                     columns=1024)
    body, content_type = multipart_related(big)
    assert len(body) > 2 * 1024 * 1024
    answer = await http.post(BASE, content=body, headers=tokens.headers(
        RADIOGRAPHER, ("radiographer",)) | {"Content-Type": content_type})
    assert answer.status_code == 200, answer.text


async def test_wado_rs_renders_one_frame_as_jpeg_or_png(xray, tokens) -> None:
    """The real chest CR rendered as its preview is (MONOCHROME1 inverted, windowed) at
    its own size, JPEG by default and PNG when asked; refusals as problems (images are
    single-frame here: the upload refuses multi-frame ones, so frame 2 is never there)."""
    http, app = xray
    order = await ordered(http, app, tokens)
    radiographer = tokens.headers(RADIOGRAPHER, ("radiographer",)) | DICOM
    ds = real("RG1_UNCR.dcm", order)
    up = await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                         content=encoded(ds), headers=radiographer)
    assert up.status_code == 201, up.text
    url = (f"{BASE}/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
           f"{ds.SOPInstanceUID}/frames/1/rendered")
    doctor = tokens.headers(DOCTOR, ("doctor",))

    jpeg = await http.get(url, headers=doctor)
    assert jpeg.status_code == 200 and jpeg.headers["content-type"] == "image/jpeg"
    png = await http.get(url, headers=doctor | {"Accept": "image/webp, image/png;q=0.8"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    rendered = Image.open(io.BytesIO(png.content))
    assert rendered.size == (1841, 1955) and rendered.mode == "L"
    instance = up.json()["series"][0]["instances"][0]
    preview = Image.open(io.BytesIO((await http.get(instance["preview"],
                                                    headers=doctor)).content))
    shrunk = np.asarray(rendered.resize(preview.size), dtype=np.int16)
    assert np.abs(shrunk - np.asarray(preview, dtype=np.int16)).mean() < 3  # the same look
    assert np.abs(np.asarray(Image.open(io.BytesIO(jpeg.content)), dtype=np.int16)
                  - np.asarray(rendered, dtype=np.int16)).mean() < 3

    # a window replaces the stored one; MONOCHROME1 is still inverted (high values dark)
    values = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    center = float(np.median(values))
    narrow = await http.get(url, params={"window": f"{center},1,linear"},
                            headers=doctor | {"Accept": "image/png"})
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(narrow.content))),
                          np.where(values > center - 0.5, 0, 255).astype(np.uint8))

    refusals = [
        (await http.get(url, headers=doctor | {"Accept": "application/pdf"}), 406,
         "not-acceptable"),
        (await http.get(url.replace("/frames/1/", "/frames/1,2/"), headers=doctor), 400,
         "bad-request"),
        (await http.get(url.replace("/frames/1/", "/frames/0/"), headers=doctor), 400,
         "bad-request"),
        (await http.get(url.replace("/frames/1/", "/frames/2/"), headers=doctor), 404,
         "frame-not-found"),
        (await http.get(url, headers=tokens.headers("dr-9", ("doctor",))), 403,
         "not-treating"),
        (await http.get(url, headers=tokens.headers("p-2", ("patient",))), 404,
         "study-not-found")]
    for answer, status, slug in refusals:
        assert answer.status_code == status, answer.text
        assert answer.json()["type"].endswith(f"/{slug}")


async def test_a_rendered_frame_takes_the_window_and_viewport_asked_for(xray, tokens) -> None:
    """PS3.18 §8.3.5.1.4 ``window=center,width,function`` and §8.3.5.1.3
    ``viewport=vw,vh[,sx,sy,sw,sh]`` on the devkit radiograph (a ramp 0…3000 left to
    right, a disc of 4000 in the centre, 64 × 64): a 1-wide linear window splits it at the
    center, a sigmoid is smooth around it; a viewport fits the image or its source region
    into the box (aspect kept, up or down) and a region is the pixels it names; the
    rendered instance is its frame; malformed or out-of-range values are 400 problems
    naming the parameter."""
    http, app = xray
    order = await ordered(http, app, tokens)
    ds = dcmread(io.BytesIO(radiograph(PATIENT, accession_number=order["accession_number"])))
    up = await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                         content=encoded(ds), headers=tokens.headers(
                             RADIOGRAPHER, ("radiographer",)) | DICOM)
    assert up.status_code == 201, up.text
    instance = (f"{BASE}/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
                f"{ds.SOPInstanceUID}")
    url = f"{instance}/frames/1/rendered"
    doctor = tokens.headers(DOCTOR, ("doctor",)) | {"Accept": "image/png"}

    async def shown(at: str = url, **params: str) -> np.ndarray:
        answer = await http.get(at, params=params, headers=doctor)
        assert answer.status_code == 200, answer.text
        return np.asarray(Image.open(io.BytesIO(answer.content)))

    split = await shown(window="1500,1,linear")
    assert set(np.unique(split)) == {0, 255}
    assert split[0, 0] == 0 and split[0, -1] == 255 and split[32, 32] == 255  # the disc
    row = (await shown(window="1500,3000,sigmoid")).astype(int)[0]
    assert row[0] == round(255 / (1 + np.exp(2))) and (np.diff(row) >= 0).all()
    assert abs(row[32] - 128) < 8 and row[-1] < 255
    exact = (await shown(window="1500,3000,linear-exact")).astype(int)[0]
    assert exact[0] == 0 and exact[-1] == 255

    whole = await shown()
    assert (await shown(viewport="32,16")).shape == (16, 16)
    assert (await shown(viewport="128,96", window="2000,4000,linear")).shape == (96, 96)
    top_right = await shown(viewport="16,16,48,0,16,16")  # same size: the very pixels
    assert np.array_equal(top_right, whole[0:16, 48:64])
    assert (await shown(viewport="32,32,48,0,16,16", window="1500,1,linear") == 255).all()
    assert (await shown(viewport="32,32,0,0,16,16", window="1500,1,linear") == 0).all()
    assert (await shown(viewport="16,16,0,0,32,64")).shape == (16, 8)  # tall region
    corner = await shown(viewport="64,64,32,32,,", window="3500,1,linear")
    assert corner.shape == (64, 64) and corner[0, 0] == 255 and corner[-1, -1] == 0

    assert np.array_equal(await shown(f"{instance}/rendered"), whole)
    assert np.array_equal(await shown(f"{instance}/rendered", viewport="16,16,48,0,16,16"),
                          top_right)

    for params in ({"window": "1500,1"}, {"window": "a,b,linear"},
                   {"window": "1500,0.5,linear"}, {"window": "1500,0,sigmoid"},
                   {"window": "1500,10,gamma"}, {"window": "nan,10,linear"},
                   {"viewport": "0,10"}, {"viewport": "10"}, {"viewport": "1,2,3"},
                   {"viewport": "x,y"}, {"viewport": "5000,10"},
                   {"viewport": "10,10,0,0,-16,16"}, {"viewport": "10,10,-1,0,16,16"},
                   {"viewport": "10,10,60,0,16,16"}, {"viewport": "10,10,0,64,,"},
                   {"viewport": "10,10,0,0,65,1"}):
        for at in (url, f"{instance}/rendered"):
            answer = await http.get(at, params=params, headers=doctor)
            assert answer.status_code == 400, (params, answer.text)
            assert answer.headers["content-type"].startswith("application/problem+json")
            name = next(iter(params))
            assert answer.json()["parameter"] == name and name in answer.json()["detail"]


async def test_wado_rs_metadata_is_each_instance_s_header_in_dicom_json(xray, tokens) -> None:
    """PS3.18 §10.4.1.1.2 (what OHIF loads a study by): the study's, a series' and an
    instance's metadata in the DICOM JSON Model, read by dicomweb-client as datasets;
    everything up to Pixel Data, which is a BulkDataURI (the frames); the images'
    access rules."""
    import asyncio

    from pydicom import Dataset

    from .test_measurement_report import dicomweb_client

    http, app = xray
    study_uid, sops = await stored_study(http, app, tokens)
    patient = tokens.headers(PATIENT, ("patient",))
    answer = await http.get(f"{BASE}/{study_uid}/metadata", headers=patient)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/dicom+json"
    study = answer.json()
    assert sorted(m["00080018"]["Value"][0] for m in study) == sorted(sops)
    first = study[0]
    assert first["0020000D"]["Value"] == [study_uid] and first["00100020"]["Value"] == [PATIENT]
    assert (first["00280010"]["Value"], first["00280011"]["Value"]) == ([64], [64])
    assert first["00280004"]["Value"] == ["MONOCHROME2"] and first["00280100"]["Value"] == [16]
    assert first["00100010"]["Value"] == [{"Alphabetic": "Test^Patient"}]  # PN, F.2.2
    assert first["00083002"]["Value"] == ["1.2.840.10008.1.2.1"]
    assert set(first["7FE00010"]) == {"vr", "BulkDataURI"}
    assert not any(k.startswith("0002") for k in first)
    series_uid = first["0020000E"]["Value"][0]
    [series] = (await http.get(f"{BASE}/{study_uid}/series/{series_uid}/metadata",
                               headers=patient)).json()
    sop = series["00080018"]["Value"][0]
    one = await http.get(f"{BASE}/{study_uid}/series/{series_uid}/instances/{sop}/metadata",
                         headers=patient | {"Accept": "application/dicom+json"})
    assert one.json() == [series]
    client = dicomweb_client(http, tokens.headers(DOCTOR, ("doctor",)))
    bulk: list[str] = []
    datasets = [Dataset.from_json(m, bulk_data_uri_handler=lambda _t, _v, uri: bulk.append(
        uri) or b"") for m in await asyncio.to_thread(client.retrieve_study_metadata,
                                                      study_uid)]
    assert all(uri.split("/instances/")[1].endswith("/frames/1") for uri in bulk)
    assert len(bulk) == 2
    assert sorted(ds.SOPInstanceUID for ds in datasets) == sorted(sops)
    assert all(ds.Rows == 64 for ds in datasets)
    wrong = await http.get(f"{BASE}/{study_uid}/metadata", headers=patient | {
        "Accept": 'multipart/related; type="application/dicom"'})
    assert wrong.status_code == 406 and "not-acceptable" in wrong.text
    stranger = await http.get(f"{BASE}/{study_uid}/metadata",
                              headers=tokens.headers("dr-9", ("doctor",)))
    other = await http.get(f"{BASE}/{study_uid}/metadata",
                           headers=tokens.headers("p-2", ("patient",)))
    assert (stranger.status_code, other.status_code) == (403, 404)
    missing = await http.get(f"{BASE}/{study_uid}/series/1.2.3/metadata", headers=patient)
    assert missing.status_code == 404
    accessed = await recorded_events(app.state.runtime.db, {"type": "xray.accessed"})
    assert any((e.data or {}).get("scope") == "dicomweb"
               and (e.data or {}).get("accessor_id") == DOCTOR for e in accessed)
