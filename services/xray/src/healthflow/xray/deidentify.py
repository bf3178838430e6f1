"""De-identified copies of stored DICOM images, for teaching and export, per the Basic
Application Level Confidentiality Profile (DICOM PS3.15 Annex E, Table E.1-1) with the
Retain Longitudinal Temporal Information Modified Dates Option:

1. ``dicognito`` replaces names, ids, birth date, accession number and study id with
   invented ones, shifts dates and times into the past (order kept) and gives every UID
   a new value; a fresh anonymizer (random seed) per copy, so copies of different images
   cannot be linked by their replaced identifiers.
2. Then an allow-list (:data:`KEPT`) keeps only attributes known to be safe — the
   replaced identifiers and dates, the SOP class, the image pixel, LUT and acquisition
   geometry attributes, body part and view — at every nesting level. Everything else
   goes, whatever its name: free text and descriptions, institution and device identity,
   private elements, overlay planes (groups 60xx) and curves (50xx) that may draw the
   patient's name, the icon image (0088,0200), the processing description, and the
   patient characteristics Age, Size and Weight (the Retain Patient Characteristics
   Option is not declared; Patient's Sex is emptied, action Z). The File Meta is built
   anew, so its Source/Sending Application Entity Title do not survive.
3. Patient Identity Removed (0012,0062) ``YES``; De-identification Method (0012,0063)
   names both steps; De-identification Method Code Sequence (0012,0064) holds the CID
   7050 codes of what was applied: 113100 (Basic Application Confidentiality Profile)
   and 113107 (Retain Longitudinal Temporal Information Modified Dates Option).

Pixels are not changed (no Clean Pixel Data Option), so a copy is made only of an image
whose header states Burned In Annotation (0028,0301) ``NO``; absent, empty or ``YES``
(computed radiography plates routinely carry name and date in the pixels): no copy.
Photographs of films are not DICOM and get no copy.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from dicognito.anonymizer import Anonymizer
from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes

KEPT = frozenset(tag_for_keyword(keyword) for keyword in (
    # SOP Common, General Study/Series/Image (identifiers and dates as dicognito left them)
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "ImageType",
    "InstanceCreationDate", "InstanceCreationTime", "StudyInstanceUID",
    "SeriesInstanceUID", "FrameOfReferenceUID", "StudyDate", "StudyTime", "SeriesDate",
    "SeriesTime", "ContentDate", "ContentTime", "AcquisitionDate", "AcquisitionTime",
    "AcquisitionDateTime", "AccessionNumber", "StudyID", "ReferringPhysicianName",
    "Modality", "Manufacturer", "ManufacturerModelName", "SeriesNumber", "InstanceNumber",
    "PatientOrientation", "Laterality", "ImageLaterality", "BodyPartExamined",
    "ViewPosition", "PatientPosition", "QualityControlImage", "BurnedInAnnotation",
    "RecognizableVisualFeatures", "LossyImageCompression", "LossyImageCompressionRatio",
    "LossyImageCompressionMethod", "PresentationIntentType",
    # Patient (replaced), and this profile's own attributes
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientIdentityRemoved",
    "DeidentificationMethod", "DeidentificationMethodCodeSequence",
    # Code Sequence items (DX View Code, Anatomic Region, the method codes)
    "ViewCodeSequence", "AnatomicRegionSequence", "CodeValue", "CodingSchemeDesignator",
    "CodingSchemeVersion", "CodeMeaning", "LongCodeValue", "URNCodeValue",
    # CR/DX acquisition and geometry
    "KVP", "DistanceSourceToDetector", "DistanceSourceToPatient",
    "EstimatedRadiographicMagnificationFactor", "ExposureTime", "XRayTubeCurrent",
    "Exposure", "ExposureInuAs", "ImageAndFluoroscopyAreaDoseProduct", "FilterType",
    "FocalSpots", "Sensitivity", "RelativeXRayExposure", "ExposureIndex",
    "TargetExposureIndex", "DeviationIndex", "ImagerPixelSpacing", "PixelSpacing",
    "PixelSpacingCalibrationType", "DetectorType",
    # Image Pixel, Modality LUT, VOI LUT, Presentation LUT
    "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated",
    "BitsStored", "HighBit", "PixelRepresentation", "PlanarConfiguration",
    "PixelAspectRatio", "SmallestImagePixelValue", "LargestImagePixelValue",
    "NumberOfFrames", "FrameIncrementPointer", "PixelIntensityRelationship",
    "PixelIntensityRelationshipSign", "RescaleIntercept", "RescaleSlope", "RescaleType",
    "ModalityLUTSequence", "ModalityLUTType", "LUTDescriptor", "LUTData", "WindowCenter",
    "WindowWidth", "VOILUTFunction", "VOILUTSequence", "PresentationLUTShape", "PixelData"))
"""The allow-list: attributes kept in a copy (PS3.15 Table E.1-1 actions K, or D/Z/U
after dicognito's replacement); anything else, at any nesting level, is removed."""
EMPTIED = frozenset({tag_for_keyword("PatientSex")})
"""Kept as zero-length (action Z): Type 2 in the Patient Module."""
METHOD = "DICOGNITO; HEALTHFLOW PS3.15 BASIC PROFILE ALLOW-LIST"
OPTIONS = (codes.DCM.BasicApplicationConfidentialityProfile,
           codes.DCM.RetainLongitudinalTemporalInformationModifiedDatesOption)
"""CID 7050 codes of what a copy has been through."""
NOT_MADE = "not made: burned-in text possible (Burned In Annotation is not stated NO)"


def _keep_allowed(ds: Dataset) -> None:
    """Delete every element not in :data:`KEPT`, at every nesting level; empty
    :data:`EMPTIED`."""
    def callback(dataset: Dataset, element: Any) -> None:
        if element.tag not in KEPT:
            del dataset[element.tag]
        elif element.tag in EMPTIED:
            element.value = ""

    ds.walk(callback)


def _method_codes() -> list[Dataset]:
    items = []
    for code in OPTIONS:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator = code.value, code.scheme_designator
        item.CodeMeaning = code.meaning
        items.append(item)
    return items


def burned_in_excluded(ds: Dataset) -> bool:
    """True unless Burned In Annotation (0028,0301) is stated ``NO``: the pixels may
    show identity, which only the pixels' removal (PS3.15 E.3.1, Clean Pixel Data
    Option, not done here) would take away."""
    return str(ds.get("BurnedInAnnotation", "") or "").strip().upper() != "NO"


def deidentified_copy(source: Path, target: Path) -> bool:
    """Write a de-identified copy of the DICOM Part 10 file ``source`` to ``target``
    (blocking: run it in a thread; the whole dataset is read into memory) and return
    True; or write nothing and return False (:data:`NOT_MADE`) when
    :func:`burned_in_excluded`. The File Meta is new: SOP Class, the replaced SOP
    Instance UID and the transfer syntax (pydicom adds its implementation ids)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(source)
        if burned_in_excluded(ds):
            return False
        Anonymizer().anonymize(ds)
        _keep_allowed(ds)
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = METHOD
        ds.DeidentificationMethodCodeSequence = _method_codes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
        ds.file_meta = meta
        ds.save_as(target, enforce_file_format=True)
    return True
