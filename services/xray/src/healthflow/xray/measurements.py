"""The automated results of a chest radiograph as a DICOM Measurement Report (PS3.16
TID 1500 "Measurement Report") in a Comprehensive 3D SR, built with ``highdicom``:
a machine-generated suggestion, not a diagnosis.

* Each lung box of :mod:`.lungs` is a planar ROI (TID 1410): an SCOORD ``POLYLINE``
  (the rectangle, closed: five points) in the source image's pixel coordinates
  (column, row from the top-left corner of the top-left pixel, PS3.3 C.18.6.1.2),
  referencing the source image's SOP Class and Instance UIDs, with its finding site
  (SCT Lung, laterality Right/Left) and, when the image states its pixel spacing, its
  area in mm².
* The image checks of :mod:`.checks` are one image-level group (TID 1501) of coded
  qualitative evaluations (the HealthFlow private scheme :data:`SCHEME`: a check's
  name and its code ``ok`` / ``warning`` / ``not-assessed``) and the exposure's
  clipped fractions and range used in % (UCUM).
* The observer is a device (DCM 121007): the HealthFlow automated check; the
  algorithm identification (TID 4019) and the series description carry
  :data:`~healthflow.xray.checks.LABEL`. Completion Flag ``COMPLETE`` (every check
  ran), Verification Flag ``UNVERIFIED`` (no person checked it), Preliminary Flag
  ``PRELIMINARY``.

The SR is in the source image's study, in its own series; its UIDs derive from the
instance id (:func:`report_uids`: a job run again makes the same SR), and DICOMweb
lists and retrieves it beside the image (:mod:`.dicomweb`). The doctor's signed report stays the
Basic Text SR of :mod:`.documents`: TID 1500 holds coded evaluations, not free text.
"""

from __future__ import annotations

import io
import logging
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
from pydicom import Dataset, dcmread
from pydicom.sr.codedict import codes
from pydicom.uid import Comprehensive3DSRStorage, ExplicitVRLittleEndian, generate_uid

from healthflow.xray.checks import LABEL

logging.getLogger("highdicom").setLevel(logging.WARNING)  # its INFO lines name UIDs

SCHEME = "99HEALTHFLOW"
"""The private coding scheme (PS3.16 8.2: private schemes begin ``99``) of the checks."""
SERIES_NUMBER = 901
INSTANCE_NUMBER = 1
SOP_CLASS_UID = str(Comprehensive3DSRStorage)
TRANSFER_SYNTAX_UID = str(ExplicitVRLittleEndian)
SERIES_DESCRIPTION = f"{LABEL[0].upper()}{LABEL[1:]}: lung fields"
"""58 characters (LO allows 64)."""
DEVICE_NAME = "HealthFlow automated check"
PLAIN_CHEST_XRAY = hd.sr.CodedConcept("399208008", "SCT", "Plain chest X-ray")
CHECKS = {"exposure": "Exposure check", "view": "View position check",
          "body_part": "Body part check", "laterality": "Laterality check",
          "resolution": "Resolution check", "lung_fields": "Lung field detection"}
RESULTS = {"ok": "OK", "warning": "Warning: look again", "not-assessed": "Not assessed"}
SIDES = {"right": codes.SCT.Right, "left": codes.SCT.Left}


def _code(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value, SCHEME, meaning)


def _algorithm() -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=f"HealthFlow lung fields and image checks ({LABEL})"[:64],
        version=f"lungs-finder {version('lungs-finder')}",
        parameters=["Haar cascades, 8-bit preview at 1024 px"])


def _observation() -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=["healthflow", "xray", "automated-check"]),
        name=DEVICE_NAME, manufacturer_name="HealthFlow",
        model_name="xray processing worker", serial_number="healthflow-xray-1")
    return hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))


def _spacing_mm(source: Dataset) -> tuple[float, float] | None:
    value = source.get("ImagerPixelSpacing") or source.get("PixelSpacing")
    try:
        row, column = float(value[0]), float(value[1])
    except (TypeError, ValueError, IndexError):
        return None
    return (row, column) if row > 0 and column > 0 else None


def _roi(source: Dataset, box: dict[str, Any], instance_id: str
         ) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """One lung box (pixels of the stored image) as a TID 1410 group."""
    x0, y0 = float(box["x"]), float(box["y"])
    x1, y1 = x0 + float(box["width"]), y0 + float(box["height"])
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]),
        source_image=hd.sr.SourceImageForRegion(source.SOPClassUID, source.SOPInstanceUID))
    spacing = _spacing_mm(source)
    measurements = [hd.sr.Measurement(
        name=codes.SCT.Area, unit=codes.UCUM.SquareMillimeter,
        value=round(box["width"] * spacing[1] * box["height"] * spacing[0], 1),
        algorithm_id=_algorithm())] if spacing else None
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(entropy_srcs=[instance_id, "lung", box["side"]]),
            identifier=f"{box['side']} lung field (machine-generated)"),
        referenced_region=region, finding_type=codes.SCT.Lung,
        finding_sites=[hd.sr.FindingSite(codes.SCT.Lung, laterality=SIDES[box["side"]])],
        algorithm_id=_algorithm(), measurements=measurements)


def _checks(source: Dataset, found: dict[str, Any], instance_id: str
            ) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """The image checks as one image-level TID 1501 group."""
    evaluations = [hd.sr.QualitativeEvaluation(
        _code(name, meaning), _code(found[name]["code"], RESULTS[found[name]["code"]]))
        for name, meaning in CHECKS.items() if name in found]
    exposure = found.get("exposure", {})
    measurements = [hd.sr.Measurement(name=_code(name, meaning), unit=codes.UCUM.Percent,
                                      value=round(100 * float(exposure[name]), 2))
                    for name, meaning in (("clipped_low", "Pixels clipped low"),
                                          ("clipped_high", "Pixels clipped high"),
                                          ("range_used", "Detector range used"))
                    if exposure.get(name) is not None]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(entropy_srcs=[instance_id, "checks"]),
            identifier="automated image checks (machine-generated)"),
        algorithm_id=_algorithm(), qualitative_evaluations=evaluations,
        measurements=measurements or None,
        source_images=[hd.sr.SourceImageForMeasurementGroup(source.SOPClassUID,
                                                             source.SOPInstanceUID)])


def report_uids(instance_id: str) -> tuple[str, str]:
    """(Series Instance UID, SOP Instance UID) of the SR of the image ``instance_id``:
    derived from the id (pydicom's UID root, PS3.5 §B.2), so the SR made again and its
    DICOMweb listing (:mod:`.dicomweb`) name the same object."""
    return (generate_uid(entropy_srcs=[instance_id, "tid1500-series"]),
            generate_uid(entropy_srcs=[instance_id, "tid1500-instance"]))


TYPE_2 = ("PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
          "StudyDate", "StudyTime", "ReferringPhysicianName")
"""Patient and study attributes the SR copies from its evidence: type 2 (PS3.3 C.7.1.1,
C.7.2.1: present, possibly empty); highdicom reads them, and uploads accept files that
leave them out."""


def _with_type_2(source: Dataset) -> Dataset:
    """``source`` (a copy read for the SR alone) with each absent :data:`TYPE_2`
    attribute present and empty, and its SOP Class UID from the file meta information
    (Media Storage SOP Class UID, PS3.10 §7.1) when the dataset leaves it out."""
    for keyword in TYPE_2:
        if keyword not in source:
            setattr(source, keyword, "")
    if "SOPClassUID" not in source and "MediaStorageSOPClassUID" in source.file_meta:
        source.SOPClassUID = source.file_meta.MediaStorageSOPClassUID
    return source


def measurement_report(path: Path, found: dict[str, Any], instance_id: str) -> bytes | None:
    """The TID 1500 SR (DICOM Part 10 bytes) of the DICOM image at ``path`` and its
    results ``found`` (:func:`healthflow.xray.checks.run` plus ``lung_fields``), or
    None when no lung box was found (not a chest, or no lung seen). Blocking: run in
    a thread."""
    boxes = found.get("lung_fields", {}).get("boxes") or []
    if not boxes:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = _with_type_2(dcmread(path, stop_before_pixels=True))
    report = hd.sr.MeasurementReport(
        observation_context=_observation(), procedure_reported=PLAIN_CHEST_XRAY,
        imaging_measurements=[*(_roi(source, b, instance_id) for b in boxes),
                              _checks(source, found, instance_id)])
    series_uid, sop_uid = report_uids(instance_id)
    sr = hd.sr.Comprehensive3DSR(
        evidence=[source], content=report[0], series_instance_uid=series_uid,
        series_number=SERIES_NUMBER, sop_instance_uid=sop_uid,
        instance_number=INSTANCE_NUMBER, manufacturer="HealthFlow", is_complete=True,
        is_final=False, is_verified=False, performed_procedure_codes=[PLAIN_CHEST_XRAY],
        transfer_syntax_uid=TRANSFER_SYNTAX_UID)
    sr.SeriesDescription = SERIES_DESCRIPTION
    out = io.BytesIO()
    sr.save_as(out, enforce_file_format=True)
    return out.getvalue()
