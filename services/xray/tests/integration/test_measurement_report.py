"""The TID 1500 measurement report SR the processing worker makes (highdicom) of the
real chest CR (``RG1_UNCR`` from pydicom-data): read back with ``highdicom.sr.srread``
through its route, the lung boxes are planar ROIs on the source image; DICOMweb lists
it (QIDO-RS, a series of modality SR) and retrieves it (WADO-RS), through the
``dicomweb-client`` library; a radiograph that is not of the chest (``RG3_UNCR``, a
tibia, on a chest order) and a photograph of the chest film get none."""

from __future__ import annotations

import asyncio
import io
import uuid
from pathlib import Path
from typing import Any

import highdicom as hd
import httpx
import numpy as np
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.data import get_testdata_file
from pydicom.sr.codedict import codes
from pydicom.uid import Comprehensive3DSRStorage

from healthflow.common.events.outbox import recorded_events
from healthflow.xray import render
from healthflow.xray.checks import LABEL

from .conftest import DICOM, DOCTOR, RADIOGRAPHER, ordered
from .test_derived import processed_chest
from .test_dicomweb import BASE
from .test_processing import results_when_ready, worker  # noqa: F401 (fixture)
from .test_real_radiographs import encoded, real


def planar_rois(sr: Any) -> list[Any]:
    return list(sr.content.get_planar_roi_measurement_groups())


async def test_the_lung_boxes_are_a_tid_1500_measurement_report_on_the_image(
        worker, tokens) -> None:  # noqa: F811
    http, app = worker
    patient = f"patient-{uuid.uuid4().hex[:8]}"
    original, study, one = await processed_chest(http, app, tokens, patient)
    assert one["sr"] == (f"/api/v1/imaging/studies/{study['id']}/instances/"
                         f"{one['instance_id']}/sr")
    answer = await http.get(one["sr"], headers=tokens.headers(DOCTOR, ("doctor",)))
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/dicom"
    sr = hd.sr.srread(io.BytesIO(answer.content))

    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert sr.StudyInstanceUID == original.StudyInstanceUID
    assert sr.SeriesInstanceUID != original.SeriesInstanceUID and sr.Modality == "SR"
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("COMPLETE", "UNVERIFIED")
    assert LABEL in sr.SeriesDescription.lower()
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == \
        original.SOPInstanceUID

    observer_type = {item.ConceptCodeSequence[0].CodeValue for item in sr.ContentSequence
                     if item.ConceptNameCodeSequence[0].CodeValue == "121005"}
    assert observer_type == {codes.DCM.Device.value}
    names = {item.ConceptNameCodeSequence[0].CodeMeaning: item.get("TextValue")
             for item in sr.ContentSequence}
    assert names["Device Observer Manufacturer"] == "HealthFlow"
    assert names["Device Observer Name"] == "HealthFlow automated check"
    boxes = one["checks"]["lung_fields"]["boxes"]
    rois = planar_rois(sr)
    assert len(boxes) == 2 and len(rois) == len(boxes)
    for roi, box in zip(rois, boxes, strict=True):
        assert roi.roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
        points = roi.roi.value
        x0, y0 = box["x"], box["y"]
        x1, y1 = x0 + box["width"], y0 + box["height"]
        assert np.array_equal(points, [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
        assert (points[:, 0] >= 0).all() and (points[:, 0] <= original.Columns).all()
        assert (points[:, 1] >= 0).all() and (points[:, 1] <= original.Rows).all()
        source = roi.roi.ContentSequence[0].ReferencedSOPSequence[0]
        assert source.ReferencedSOPInstanceUID == original.SOPInstanceUID
        assert source.ReferencedSOPClassUID == original.SOPClassUID
        assert roi.finding_sites[0].value == codes.SCT.Lung
    assert sorted(r.tracking_identifier for r in rois) == [
        "left lung field (machine-generated)", "right lung field (machine-generated)"]
    image_level = sr.content.get_image_measurement_groups()
    assert len(image_level) == 1
    evaluated = {e.name.value: e.value.value
                 for e in image_level[0].get_qualitative_evaluations()}
    assert evaluated["lung_fields"] == "ok" and evaluated["body_part"] == "ok"

    # read like the preview by doctors (the patient once the report is signed:
    # test_derived), not by a doctor who does not treat them
    own = await http.get(one["sr"], headers=tokens.headers(DOCTOR, ("doctor",)))
    assert own.status_code == 200 and own.content == answer.content
    stranger = await http.get(one["sr"], headers=tokens.headers("dr-9", ("doctor",)))
    assert stranger.status_code == 403
    accessed = await recorded_events(app.state.runtime.db, {"type": "xray.accessed"})
    assert "sr" in {(e.data or {})["scope"] for e in accessed}


class InProcess(requests.adapters.BaseAdapter):
    """A ``requests`` transport that sends each request to the in-process app through
    ``http`` on the test's event loop (the client runs in a worker thread meanwhile)."""

    def __init__(self, http: httpx.AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.http, self.loop = http, loop

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
             ) -> requests.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        answer = asyncio.run_coroutine_threadsafe(self.http.request(
            str(request.method), str(request.url), headers=headers,
            content=request.body), self.loop).result(timeout=60)
        response = requests.Response()
        response.status_code, response.url, response.request = (
            answer.status_code, str(request.url), request)
        response.headers = requests.structures.CaseInsensitiveDict(answer.headers)
        response.raw = io.BytesIO(answer.content)
        return response

    def close(self) -> None:
        pass


def dicomweb_client(http: httpx.AsyncClient, headers: dict[str, str]) -> DICOMwebClient:
    session = requests.Session()
    session.mount("http://", InProcess(http, asyncio.get_running_loop()))
    return DICOMwebClient(url=f"{http.base_url}{BASE.removesuffix('/studies')}",
                          session=session, headers=headers)


async def test_dicomweb_lists_and_retrieves_the_measurement_report_beside_the_image(
        worker, tokens) -> None:  # noqa: F811
    """QIDO-RS finds the SR's series (modality SR) in the image's study and WADO-RS
    retrieves it, through ``dicomweb-client``: its ROIs are the stored lung boxes on
    the source image, its observer the device; it has no frame to render."""
    http, app = worker
    patient = f"patient-{uuid.uuid4().hex[:8]}"
    original, _, one = await processed_chest(http, app, tokens, patient)
    client = dicomweb_client(http, tokens.headers(DOCTOR, ("doctor",)))
    study_uid = original.StudyInstanceUID

    [listed] = await asyncio.to_thread(client.search_for_series, study_uid,
                                       search_filters={"Modality": "SR"})
    assert listed["00080060"]["Value"] == ["SR"] and listed["00201209"]["Value"] == [1]
    series_uid = listed["0020000E"]["Value"][0]
    assert series_uid != original.SeriesInstanceUID
    every = await asyncio.to_thread(client.search_for_series, study_uid)
    assert sorted(s["00080060"]["Value"][0] for s in every) == ["CR", "SR"]
    [entry] = await asyncio.to_thread(client.search_for_instances, study_uid, series_uid)
    sop_uid = entry["00080018"]["Value"][0]
    assert entry["00080016"]["Value"] == [Comprehensive3DSRStorage]
    assert "00280010" not in entry  # no rows: not an image

    dataset = await asyncio.to_thread(client.retrieve_instance, study_uid, series_uid,
                                      sop_uid)
    sr = hd.sr.Comprehensive3DSR.from_dataset(dataset)
    assert (sr.SOPInstanceUID, sr.StudyInstanceUID) == (sop_uid, study_uid)
    boxes = {b["side"]: b for b in one["checks"]["lung_fields"]["boxes"]}
    for roi in planar_rois(sr):
        box = boxes[roi.tracking_identifier.split()[0]]
        xs, ys = sorted(set(roi.roi.value[:, 0])), sorted(set(roi.roi.value[:, 1]))
        assert xs == [box["x"], box["x"] + box["width"]]
        assert ys == [box["y"], box["y"] + box["height"]]
        assert roi.roi.ContentSequence[0].ReferencedSOPSequence[0]\
            .ReferencedSOPInstanceUID == original.SOPInstanceUID
    observer = sr.content.get_observer_contexts()
    assert [o.observer_type for o in observer] == [codes.DCM.Device]
    whole = await asyncio.to_thread(client.retrieve_study, study_uid)
    assert sorted(ds.Modality for ds in whole) == ["CR", "SR"]

    rendered = await http.get(f"{BASE}/{study_uid}/series/{series_uid}/instances/"
                              f"{sop_uid}/frames/1/rendered",
                              headers=tokens.headers(DOCTOR, ("doctor",)))
    assert rendered.status_code == 404 and "frame-not-found" in rendered.text
    stranger = dicomweb_client(http, tokens.headers("dr-9", ("doctor",)))
    with pytest.raises(requests.HTTPError) as refused:
        await asyncio.to_thread(stranger.retrieve_instance, study_uid, series_uid, sop_uid)
    assert refused.value.response.status_code == 403


def chest_photograph() -> bytes:
    """A photograph of the chest film: the chest CR as shown, as a PNG."""
    path = get_testdata_file("RG1_UNCR.dcm")
    assert path is not None
    return render.dicom_preview(Path(path))


@pytest.mark.parametrize("image", ["RG3_UNCR.dcm", "photograph"],
                         ids=["tibia-CR", "chest-photograph"])
async def test_an_image_not_of_the_chest_or_not_dicom_gets_no_measurement_report(
        worker, tokens, image) -> None:  # noqa: F811
    http, app = worker
    patient = f"patient-{uuid.uuid4().hex[:8]}"
    order = await ordered(http, app, tokens, patient=patient)
    if image == "photograph":
        body, kind = chest_photograph(), {"Content-Type": "image/png"}
    else:
        ds = real(image, order)
        ds.PatientID = patient
        body, kind = encoded(ds), DICOM
    up = await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                         content=body,
                         headers=tokens.headers(RADIOGRAPHER, ("radiographer",)) | kind)
    assert up.status_code == 201, up.text
    found = await results_when_ready(http, up.json()["id"],
                                     tokens.headers(DOCTOR, ("doctor",)))
    one = found["instances"][0]
    assert one["sr"] is None
    if image == "photograph":  # lungs seen on the film, but no DICOM image to refer to
        assert one["checks"]["lung_fields"]["boxes"] and one["overlay"]
    else:
        assert one["checks"]["lung_fields"]["boxes"] == []
    url = f"/api/v1/imaging/studies/{up.json()['id']}/instances/{one['instance_id']}/sr"
    missing = await http.get(url, headers=tokens.headers(DOCTOR, ("doctor",)))
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert "instance-not-found" in missing.text
    assert "lung fields were found" in missing.json()["detail"]


async def test_a_chest_cr_without_type_2_attributes_is_processed_with_its_report(
        worker, tokens, caplog) -> None:  # noqa: F811
    """The real chest CR without Accession Number, Study Date and Patient's Name (type 2:
    present but possibly empty, yet uploads take files that leave them out) and SOP
    Class UID in its dataset: highdicom
    refused such a source, and the SR was made inside the job, so the whole job died
    (no thumbnail, results, overlay or ``xray.processed``). Now the SR is made from a
    copy with the empty type-2 values, and the results are there."""
    http, app = worker
    order = await ordered(http, app, tokens)
    ds = real("RG1_UNCR.dcm", order)
    for keyword in ("AccessionNumber", "StudyDate", "PatientName", "SOPClassUID"):
        delattr(ds, keyword)  # SOP Class UID: the file meta's Media Storage one stays
    up = await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                         content=encoded(ds),
                         headers=tokens.headers(RADIOGRAPHER, ("radiographer",)) | DICOM)
    assert up.status_code == 201, up.text
    found = await results_when_ready(http, up.json()["id"],
                                     tokens.headers(DOCTOR, ("doctor",)))
    [one] = found["instances"]
    assert one["checks"]["lung_fields"]["boxes"] and one["overlay"]
    answer = await http.get(one["sr"], headers=tokens.headers(DOCTOR, ("doctor",)))
    assert answer.status_code == 200, answer.text
    sr = hd.sr.srread(io.BytesIO(answer.content))
    assert (sr.AccessionNumber, sr.PatientName, sr.StudyDate) == ("", "", "")
    assert sr.PatientID == ds.PatientID
    [result] = await app.state.runtime.db["results"].find({}).to_list()
    assert result["not_made"] == {"deidentified": "burned-in-annotation"}  # none stated
    assert await recorded_events(app.state.runtime.db, {"type": "xray.processed"})


async def test_an_output_that_fails_is_recorded_as_not_made_and_the_rest_is_stored(
        worker, tokens, monkeypatch, caplog) -> None:  # noqa: F811
    """Each optional output is made on its own: an SR that cannot be made (a fault
    injected into its builder, whose message carries an element value as highdicom's
    do) leaves the results, thumbnail, overlay and de-identified copy, is recorded as
    ``not_made`` and logged by its exception's class alone."""
    from healthflow.xray import measurements

    def refuse(*_: Any) -> bytes:
        raise AttributeError("PatientName 'Doe^Jane' is not what was expected")

    monkeypatch.setattr(measurements, "measurement_report", refuse)
    http, app = worker
    order = await ordered(http, app, tokens)
    image = real("RG1_UNCR.dcm", order)
    image.BurnedInAnnotation = "NO"  # stated, so a de-identified copy is made too
    up = await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                         content=encoded(image),
                         headers=tokens.headers(RADIOGRAPHER, ("radiographer",)) | DICOM)
    assert up.status_code == 201, up.text
    found = await results_when_ready(http, up.json()["id"],
                                     tokens.headers(DOCTOR, ("doctor",)))
    [one] = found["instances"]
    assert one["sr"] is None and one["overlay"] and one["thumbnail"]
    assert one["not_made"] == [{  # shown with its reason: the doctor knows it did not run
        "output": "sr", "name": "measurement report SR (TID 1500)", "reason": "error",
        "detail": "making it failed (an odd file); the checks and the other outputs stand"}]
    [result] = await app.state.runtime.db["results"].find({}).to_list()
    assert result["not_made"] == {"sr": "error"} and result["deidentified"] is not None
    [logged] = [r for r in caplog.records if r.getMessage() == "derived output not made"]
    assert (logged.kind, logged.error) == ("sr", "AttributeError")  # type: ignore[attr-defined]
    assert "Doe" not in caplog.text and logged.exc_info is None
