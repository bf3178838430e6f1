"""What the processing worker makes beside the real chest CR (``RG1_UNCR`` from
pydicom-data): the lung-field overlay (the preview with lungs-finder's boxes drawn,
labelled machine-generated) and a de-identified copy (dicognito) that only the
teaching/export permission downloads, with no identifier of the original left in it."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom import dcmread

from healthflow.common.events.outbox import recorded_events
from healthflow.xray import store
from healthflow.xray.checks import LABEL

from .conftest import DICOM, DOCTOR, RADIOGRAPHER, ordered
from .test_processing import results_when_ready, worker  # noqa: F401 (fixture)
from .test_real_radiographs import encoded, real


async def processed_chest(http: Any, app: Any, tokens: Any, patient: str,
                          burned_in: str | None = "NO"
                          ) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The chest CR of a fresh ``patient`` uploaded and processed: (the dataset as sent,
    the upload's study, the instance's results). ``burned_in``: its Burned In
    Annotation (RG1_UNCR states none; None leaves it out)."""
    order = await ordered(http, app, tokens, patient=patient)
    ds = real("RG1_UNCR.dcm", order)
    ds.PatientID = patient
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    up = await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                         content=encoded(ds),
                         headers=tokens.headers(RADIOGRAPHER, ("radiographer",)) | DICOM)
    assert up.status_code == 201, up.text
    found = await results_when_ready(http, up.json()["id"],
                                     tokens.headers(DOCTOR, ("doctor",)))
    return ds, up.json(), found["instances"][0]


async def test_the_lung_boxes_are_drawn_on_an_overlay_of_the_preview(
        worker, tokens, tmp_path: Path) -> None:  # noqa: F811
    http, app = worker
    patient = f"patient-{uuid.uuid4().hex[:8]}"
    _, study, one = await processed_chest(http, app, tokens, patient)
    doctor = tokens.headers(DOCTOR, ("doctor",))
    assert one["overlay"].endswith(f"/instances/{one['instance_id']}/overlay")
    answer = await http.get(one["overlay"], headers=doctor)
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    overlay = Image.open(io.BytesIO(answer.content))
    assert LABEL in overlay.info["Description"]
    assert "machine-generated" in overlay.info["Software"]
    (tmp_path / "RG1-lung-overlay.png").write_bytes(answer.content)
    preview_url = one["overlay"].removesuffix("/overlay") + "/preview"
    preview = Image.open(io.BytesIO((await http.get(preview_url, headers=doctor)).content))
    assert overlay.size == preview.size and overlay.mode == "RGB"

    drawn = np.asarray(overlay, dtype=np.int16)
    shown = np.asarray(preview.convert("RGB"), dtype=np.int16)
    scale = preview.width / 1841
    boxes = one["checks"]["lung_fields"]["boxes"]
    assert len(boxes) == 2
    outside = np.ones(shown.shape[:2], dtype=bool)
    outside[:20, :] = False  # the label
    for box in boxes:
        x0, y0 = round(box["x"] * scale), round(box["y"] * scale)
        x1, y1 = x0 + round(box["width"] * scale), y0 + round(box["height"] * scale)
        inside = np.abs(drawn[y0:y1, x0:x1] - shown[y0:y1, x0:x1]).sum(axis=2)
        assert (inside > 0).mean() > 0.9, box  # tinted all over, not just outlined
        outside[max(0, y0 - 8):y1 + 8, max(0, x0 - 8):x1 + 8] = False
    assert np.array_equal(drawn[outside], shown[outside])  # the rest is the preview

    stranger = await http.get(one["overlay"], headers=tokens.headers("dr-9", ("doctor",)))
    assert stranger.status_code == 403
    accessed = await recorded_events(app.state.runtime.db, {"type": "xray.accessed"})
    assert "overlay" in {(e.data or {})["scope"] for e in accessed}
    missing = await http.get(f"/api/v1/imaging/studies/{study['id']}/instances/"
                             f"{uuid.uuid4()}/overlay", headers=doctor)
    assert missing.status_code == 404 and "instance-not-found" in missing.text


def strings(value: Any) -> list[str]:
    """The text an element holds (a person name's components as one string too)."""
    values = value if isinstance(value, list | tuple) or type(value).__name__ == \
        "MultiValue" else [value]
    return [str(v) for v in values if str(v)]


IDENTIFIERS = ("PatientName", "PatientID", "OtherPatientIDs", "PatientBirthDate",
               "AccessionNumber", "StudyID", "StudyDate", "SeriesDate", "ContentDate",
               "InstanceCreationDate", "StudyInstanceUID", "SeriesInstanceUID",
               "SOPInstanceUID", "InstitutionName", "ReferringPhysicianName",
               "StationName")


async def test_a_deidentified_copy_keeps_no_identifier_and_only_a_treating_doctor_exports_it(
        worker, tokens) -> None:  # noqa: F811
    http, app = worker
    patient = f"patient-{uuid.uuid4().hex[:8]}"
    original, study, one = await processed_chest(http, app, tokens, patient)
    url = one["deidentified"]
    assert url.endswith(f"/instances/{one['instance_id']}/deidentified")

    for who, roles in ((patient, ("patient",)), (RADIOGRAPHER, ("radiographer",)),
                       ("admin-1", ("admin",)), ("dr-teach", ("doctor",))):
        refused = await http.get(url, headers=tokens.headers(who, roles))
        assert refused.status_code == 403, (who, refused.text)
    # a doctor with the permission but no care relationship: another patient's image
    # must not open by its ids (imaging:export_deidentified is scoped care-relationship)
    assert "not-treating" in refused.text
    answer = await http.get(url, headers=tokens.headers(DOCTOR, ("doctor",)))
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/dicom"
    copy = dcmread(io.BytesIO(answer.content))

    for name in IDENTIFIERS:
        assert copy.get(name) != original.get(name), name
    assert (copy.Rows, copy.Columns, copy.Modality) == (1955, 1841, "CR")
    assert np.array_equal(copy.pixel_array, original.pixel_array)  # the image kept
    assert "DICOGNITO" in copy.DeidentificationMethod and copy.PatientIdentityRemoved == "YES"
    for name in ("InstitutionName", "StationName", "DeviceSerialNumber", "ImageComments",
                 "StudyDescription", "OtherPatientIDs", "PatientSex"):
        assert not copy.get(name), name
    assert "SourceApplicationEntityTitle" not in copy.file_meta  # CLUNIE1 in the original
    for name in IDENTIFIERS:
        for text in strings(original.get(name)):
            if len(text) >= 4:  # shorter strings occur in any pixel data by chance
                assert text.encode() not in answer.content, (name, text)
    assert patient.encode() not in answer.content and b"CompressedSamples" not in \
        answer.content

    # stored beside the original, referenced from the result (kept by the sweeper)
    db = app.state.runtime.db
    result = await db[store.RESULTS].find_one({"_id": one["instance_id"]})
    key = result["deidentified"]["key"]
    assert key.startswith("xray-derived/")
    assert result["deidentified"]["size"] == len(answer.content)
    assert await store.derived_keys(db, [key, "xray-derived/unreferenced"]) == {key}
    blobs = app.state.blobs
    await blobs.put_generated("xray-derived/orphan", b"left by a job that died", "text/plain")
    swept = await blobs.sweep(lambda keys: store.derived_keys(db, keys), older_than=0,
                              prefix="xray-derived/")
    assert "xray-derived/orphan" in swept and key not in swept
    assert await blobs.exists(key)
    exported = [e.data or {} for e in await recorded_events(db, {"type": "xray.accessed"})
                if (e.data or {}).get("scope") == "deidentified"]
    assert [(e["accessor_id"], e["accessor_role"]) for e in exported] == [
        (DOCTOR, "export")]
    assert study["patient_id"] == patient


async def test_an_image_not_stated_free_of_burned_in_text_gets_no_copy(
        worker, tokens) -> None:  # noqa: F811
    """RG1_UNCR as shipped states no Burned In Annotation: CR plates routinely carry name
    and date in the pixels, so no copy is made and the download says why."""
    http, app = worker
    patient = f"patient-{uuid.uuid4().hex[:8]}"
    _, study, one = await processed_chest(http, app, tokens, patient, burned_in=None)
    assert one["deidentified"] is None
    # the results route says the copy was not made, and why (the doctor knows it did not run)
    assert one["not_made"] == [{
        "output": "deidentified", "name": "de-identified copy",
        "reason": "burned-in-annotation",
        "detail": "not made: burned-in text possible (Burned In Annotation is not stated NO)"}]
    url = f"/api/v1/imaging/studies/{study['id']}/instances/{one['instance_id']}/deidentified"
    answer = await http.get(url, headers=tokens.headers(DOCTOR, ("doctor",)))
    assert answer.status_code == 404 and "burned-in text possible" in answer.text


async def test_the_patient_sees_the_automated_results_once_the_report_is_signed(
        worker, tokens) -> None:  # noqa: F811
    """As with the report itself: results, overlay and measurement SR are 404 to the
    patient while the report is missing or a draft, the treating doctor reads them all
    along; once the report is signed the patient reads the same bytes."""
    http, app = worker
    patient_id = f"patient-{uuid.uuid4().hex[:8]}"
    _, study, one = await processed_chest(http, app, tokens, patient_id)
    patient, doctor = tokens.headers(patient_id, ("patient",)), tokens.headers(
        DOCTOR, ("doctor",))
    paths = (f"/api/v1/imaging/studies/{study['id']}/results", one["overlay"], one["sr"])
    report = f"/api/v1/imaging/studies/{study['id']}/report"

    async def patient_reads() -> list[int]:
        return [(await http.get(path, headers=patient)).status_code for path in paths]

    assert await patient_reads() == [404, 404, 404]
    assert await dicomweb_modalities(http, patient, study) == ["CR"]  # no SR listed
    withheld = await http.get(paths[0], headers=patient)
    assert "report-not-found" in withheld.text and "once" in withheld.json()["detail"]
    assert (await http.put(report, headers=doctor, json={
        "findings": "Clear lungs.", "impression": "Normal."})).status_code == 200
    assert await patient_reads() == [404, 404, 404]  # a draft is not the reading
    seen = [await http.get(path, headers=doctor) for path in paths]
    assert [answer.status_code for answer in seen] == [200, 200, 200]
    assert (await http.post(f"{report}/sign", headers=doctor)).status_code == 200
    released = [await http.get(path, headers=patient) for path in paths]
    assert [answer.status_code for answer in released] == [200, 200, 200]
    assert [a.content for a in released[1:]] == [a.content for a in seen[1:]]
    assert await dicomweb_modalities(http, patient, study) == ["CR", "SR"]


async def dicomweb_modalities(http: Any, headers: dict[str, str], study: dict[str, Any]
                              ) -> list[str]:
    """The modalities of the study's series as QIDO-RS lists them to ``headers``."""
    listed = await http.get(f"/api/v1/dicomweb/studies/{study['study_instance_uid']}/series",
                            headers=headers)
    assert listed.status_code == 200, listed.text
    return sorted(s["00080060"]["Value"][0] for s in listed.json())
