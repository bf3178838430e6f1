"""WADO-RS metadata served from the header stored with each instance (never from the
blob store once kept), and WADO-RS frames (PS3.18 §10.4): the pixel data a viewer loads
by the metadata's BulkDataURI, read with ``dicomweb-client``."""

from __future__ import annotations

import asyncio
import io
from email.parser import BytesParser
from typing import Any

import httpx
import numpy as np
from pydicom import dcmread
from pydicom.encaps import get_frame
from pydicom.uid import generate_uid

from healthflow.common.events.outbox import recorded_events
from healthflow.devkit.dicom import radiograph
from healthflow.xray import wado_frames

from .conftest import DICOM, DOCTOR, PATIENT, RADIOGRAPHER, ordered
from .test_dicom_scp import c_store
from .test_dicomweb import BASE, stored_study
from .test_measurement_report import dicomweb_client
from .test_real_radiographs import encoded, real

UNCOMPRESSED = "1.2.840.10008.1.2.1"


async def drop_blobs(app: Any) -> None:
    """Delete every stored file from the blob store."""
    for key in await app.state.blobs.keys():
        await app.state.blobs.delete(key)


async def test_metadata_is_served_from_the_header_stored_at_upload(xray, tokens) -> None:
    """Uploaded instances' headers are stored with them: the metadata is the same with
    every file gone from the blob store."""
    http, app = xray
    study_uid, sops = await stored_study(http, app, tokens)
    patient = tokens.headers(PATIENT, ("patient",))
    before = await http.get(f"{BASE}/{study_uid}/metadata", headers=patient)
    assert before.status_code == 200, before.text
    assert await app.state.runtime.db["headers"].count_documents({}) == 2  # not the PNG
    await drop_blobs(app)
    after = await http.get(f"{BASE}/{study_uid}/metadata", headers=patient)
    assert after.status_code == 200, after.text
    assert after.json() == before.json()
    assert sorted(m["00080018"]["Value"][0] for m in after.json()) == sorted(sops)


async def test_metadata_of_instances_stored_before_is_kept_on_first_read(xray, tokens
                                                                        ) -> None:
    """An instance stored before headers were (no ``headers`` document) is read from
    its file once; its header is kept and later reads need no file."""
    http, app = xray
    study_uid, _ = await stored_study(http, app, tokens)
    patient = tokens.headers(PATIENT, ("patient",))
    stored = await http.get(f"{BASE}/{study_uid}/metadata", headers=patient)
    db = app.state.runtime.db
    await db["headers"].delete_many({})
    first = await http.get(f"{BASE}/{study_uid}/metadata", headers=patient)
    assert first.status_code == 200 and first.json() == stored.json()
    assert await db["headers"].count_documents({}) == 2
    await drop_blobs(app)
    again = await http.get(f"{BASE}/{study_uid}/metadata", headers=patient)
    assert again.status_code == 200 and again.json() == stored.json()


async def test_a_c_store_instance_s_metadata_needs_no_file(pacs, tokens) -> None:
    http, app = pacs
    order = await ordered(http, app, tokens)
    ds = dcmread(io.BytesIO(radiograph(PATIENT, accession_number=order["accession_number"])))
    assert await asyncio.to_thread(c_store, app.state.dicom_scp.port, [ds]) == [0]
    await drop_blobs(app)
    answer = await http.get(f"{BASE}/{ds.StudyInstanceUID}/metadata",
                            headers=tokens.headers(PATIENT, ("patient",)))
    assert answer.status_code == 200, answer.text
    [metadata] = answer.json()
    assert metadata["00080018"]["Value"] == [ds.SOPInstanceUID]
    assert metadata["00280010"]["Value"] == [ds.Rows]


def frame_parts(response: httpx.Response) -> list[tuple[str, bytes]]:
    """(Content-Type, body) of each part of a multipart/related answer."""
    head = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser().parsebytes(head + response.content)
    assert message.get_content_type() == "multipart/related"
    return [(str(p["Content-Type"]), bytes(p.get_payload(decode=True)))
            for p in message.get_payload()]


async def test_frames_are_each_frame_s_pixels_uncompressed(xray, tokens, monkeypatch
                                                            ) -> None:
    """The BulkDataURI of Pixel Data names the frames; they are the stored pixels,
    uncompressed, as dicomweb-client retrieves them; the images' access rules."""
    http, app = xray
    order = await ordered(http, app, tokens)
    data = radiograph(PATIENT, accession_number=order["accession_number"])
    original = dcmread(io.BytesIO(data))
    up = await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                         content=data, headers=tokens.headers(RADIOGRAPHER, (
                             "radiographer",)) | DICOM)
    assert up.status_code == 201, up.text
    uids = (original.StudyInstanceUID, original.SeriesInstanceUID, original.SOPInstanceUID)
    patient = tokens.headers(PATIENT, ("patient",))
    [metadata] = (await http.get(f"{BASE}/{uids[0]}/metadata", headers=patient)).json()
    pixels = metadata["7FE00010"]
    url = f"{BASE}/{uids[0]}/series/{uids[1]}/instances/{uids[2]}/frames/1"
    assert pixels["vr"] == "OW" and pixels["BulkDataURI"].endswith(url)
    answer = await http.get(url, headers=patient)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith(
        'multipart/related; type="application/octet-stream"')
    [(kind, body)] = frame_parts(answer)
    assert kind == f"application/octet-stream; transfer-syntax={UNCOMPRESSED}"
    assert body == original.PixelData
    client = dicomweb_client(http, tokens.headers(DOCTOR, ("doctor",)))
    for media_types in (None, (("application/octet-stream", UNCOMPRESSED),)):
        [frame] = await asyncio.to_thread(client.retrieve_instance_frames, *uids, [1],
                                          media_types=media_types)
        assert frame == original.PixelData
    refused = {"0": 400, "1,x": 400, "1,1": 400, "2": 404, "1,2": 404}  # 1,1: decoded twice
    for frames, status in refused.items():
        got = await http.get(url.removesuffix("/1") + f"/{frames}", headers=patient)
        assert got.status_code == status, (frames, got.text)
    # a request's frames are held whole: over the budget (from the header) it is refused
    monkeypatch.setattr(wado_frames, "MAX_RESPONSE_BYTES", len(original.PixelData) - 1)
    too_big = await http.get(url, headers=patient)
    assert too_big.status_code == 400 and "fewer frames" in too_big.text, too_big.text
    monkeypatch.undo()
    jp2 = await http.get(url, headers=patient | {"Accept": 'multipart/related; type="image/jp2"'})
    assert jp2.status_code == 406 and "not-acceptable" in jp2.text
    stranger = await http.get(url, headers=tokens.headers("dr-9", ("doctor",)))
    other = await http.get(url, headers=tokens.headers("p-2", ("patient",)))
    assert (stranger.status_code, other.status_code) == (403, 404)
    accessed = await recorded_events(app.state.runtime.db, {"type": "xray.accessed"})
    assert any((e.data or {}).get("scope") == "dicomweb"
               and (e.data or {}).get("accessor_id") == DOCTOR for e in accessed)


async def test_a_jpeg_2000_frame_decoded_or_as_stored(xray, tokens) -> None:
    """The chest CR in JPEG 2000: its frame decoded (octet-stream, the decoder's values)
    or its codestream as stored (``image/jp2``)."""
    http, app = xray
    order = await ordered(http, app, tokens)
    ds = real("RG1_J2KR.dcm", order, new_uids=True)
    ds.StudyInstanceUID = generate_uid()
    up = await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                         content=encoded(ds), headers=tokens.headers(RADIOGRAPHER, (
                             "radiographer",)) | DICOM)
    assert up.status_code == 201, up.text
    uids = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    client = dicomweb_client(http, tokens.headers(PATIENT, ("patient",)))
    [decoded] = await asyncio.to_thread(client.retrieve_instance_frames, *uids, [1])
    expected = ds.pixel_array
    assert decoded == np.ascontiguousarray(expected, expected.dtype.newbyteorder("<")).tobytes()
    syntax = str(ds.file_meta.TransferSyntaxUID)
    [stream] = await asyncio.to_thread(client.retrieve_instance_frames, *uids, [1],
                                       media_types=(("image/jp2", syntax),))
    assert stream == get_frame(ds.PixelData, 0, number_of_frames=1)
