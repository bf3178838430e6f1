"""The TID 1500 measurement report SR the processing worker makes (highdicom) of the
real chest CR (``RG1_UNCR`` from pydicom-data): read back with ``highdicom.sr.srread``
through its route, the lung boxes are planar ROIs on the source image; a radiograph
that is not of the chest (``RG3_UNCR``, a tibia, on a chest order) and a photograph of
the chest film get none."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.sr.codedict import codes

from healthflow.common.events.outbox import recorded_events
from healthflow.xray import render
from healthflow.xray.checks import LABEL

from .conftest import DICOM, DOCTOR, RADIOGRAPHER, ordered
from .test_derived import processed_chest
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
    boxes = one["checks"]["lung_fields"]["boxes"]
    rois = planar_rois(sr)
    assert len(boxes) == 2 and len(rois) == len(boxes)
    for roi, box in zip(rois, boxes, strict=True):
        assert roi.roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
        points = roi.roi.value
        assert points.shape == (5, 2) and np.array_equal(points[0], points[-1])
        assert points[:, 0].min() == box["x"] and points[:, 1].min() == box["y"]
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

    # read like the preview: the patient, not a doctor who does not treat them
    own = await http.get(one["sr"], headers=tokens.headers(patient, ("patient",)))
    assert own.status_code == 200 and own.content == answer.content
    stranger = await http.get(one["sr"], headers=tokens.headers("dr-9", ("doctor",)))
    assert stranger.status_code == 403
    accessed = await recorded_events(app.state.runtime.db, {"type": "xray.accessed"})
    assert "sr" in {(e.data or {})["scope"] for e in accessed}


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
                                     tokens.headers(patient, ("patient",)))
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
