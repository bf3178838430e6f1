"""De-identified copies keep no free text, device or private attribute that carries
identity (DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile)."""

from __future__ import annotations

import io

from dicognito.anonymizer import Anonymizer
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from healthflow.devkit.dicom import radiograph
from healthflow.xray import deidentify

NAME = "Doe^Jane"


def test_free_text_device_and_private_attributes_are_removed(tmp_path) -> None:
    """dicognito replaces names, ids, dates and UIDs but left the free-text comments,
    descriptions, the institution's address, the device serial number and private
    elements as they were: a copy any doctor may download for teaching carried the
    patient's name and address."""
    ds = dcmread(io.BytesIO(radiograph("MRN-SECRET-42", accession_number="HF0123")))
    ds.PatientName, ds.BurnedInAnnotation = NAME, "NO"
    ds.PatientComments = "lives at 12 Secret Road"
    ds.AdditionalPatientHistory = "Jane Doe, fall at home"
    ds.ImageComments = "Jane Doe left arm"
    ds.StudyDescription = "Jane Doe chest"
    ds.SeriesDescription = "Jane Doe PA"
    ds.InstitutionAddress = "1 Secret Hospital Road"
    ds.DeviceSerialNumber = "SN-SECRET"
    ds.ProtocolName = "Jane Doe protocol"
    ds.private_block(0x0029, "ACME 1.0", create=True).add_new(0x10, "LO", "Doe^Jane private")
    request = Dataset()
    request.RequestedProcedureDescription = "Jane Doe request"
    ds.RequestAttributesSequence = Sequence([request])
    source, copy = tmp_path / "in.dcm", tmp_path / "out.dcm"
    ds.save_as(source, enforce_file_format=True)

    deidentify.deidentified_copy(source, copy)

    raw = copy.read_bytes()
    header = raw[:raw.index(b"\xe0\x7f\x10\x00")]  # up to Pixel Data (7FE0,0010)
    for leaked in (b"MRN-SECRET", b"Doe", b"Jane", b"Secret", b"SN-SECRET", b"HF0123"):
        assert leaked not in header, leaked
    out = dcmread(copy)
    assert "DICOGNITO" in out.DeidentificationMethod
    assert out.pixel_array.shape == (64, 64) and out.Modality == "CR"
    assert not any(element.tag.is_private for element in out.iterall())


def test_only_an_image_stated_free_of_burned_in_annotation_gets_a_copy(tmp_path) -> None:
    """Burned In Annotation (0028,0301) YES: the pixels show identity (a name, a date
    of birth), which no header change removes. Absent or empty it is no better: CR
    plates routinely carry name and date in the pixels. Only a stated NO gets a copy."""
    ds = dcmread(io.BytesIO(radiograph("MRN-SECRET-42")))
    source, copy = tmp_path / "in.dcm", tmp_path / "out.dcm"
    for stated in (None, "", "YES"):
        if stated is None:
            ds.pop("BurnedInAnnotation", None)
        else:
            ds.BurnedInAnnotation = stated
        ds.save_as(source, enforce_file_format=True)
        assert deidentify.deidentified_copy(source, copy) is False, stated
        assert not copy.exists()
    ds.BurnedInAnnotation = "NO"
    ds.save_as(source, enforce_file_format=True)
    assert deidentify.deidentified_copy(source, copy) is True
    assert dcmread(copy).PatientIdentityRemoved == "YES"


def _with_every_class(ds: Dataset) -> Dataset:
    """The review's survivors: an overlay plane drawing the name (60xx), a curve (50xx),
    the icon image, the processing description, the patient characteristics and the
    file meta's source AE title."""
    ds.BurnedInAnnotation = "NO"
    ds.add_new(0x60000010, "US", 64)  # Overlay Rows
    ds.add_new(0x60000011, "US", 64)  # Overlay Columns
    ds.add_new(0x60000022, "LO", "Doe^Jane overlay")  # Overlay Description
    ds.add_new(0x60003000, "OW", b"\x01" * 512)  # Overlay Data
    ds.add_new(0x60024000, "LT", "Doe^Jane overlay comment")  # Overlay Comments
    ds.add_new(0x50000022, "LO", "Doe^Jane curve")  # Curve Description (retired)
    icon = Dataset()
    icon.Rows, icon.Columns, icon.SamplesPerPixel = 2, 2, 1
    icon.BitsAllocated, icon.BitsStored, icon.HighBit, icon.PixelRepresentation = 8, 8, 7, 0
    icon.PhotometricInterpretation, icon.PixelData = "MONOCHROME2", b"\x00\x01\x02\x03"
    icon.ImageComments = "Doe^Jane icon"
    ds.IconImageSequence = Sequence([icon])
    ds.AcquisitionDeviceProcessingDescription = "Doe^Jane chest processing"
    ds.PatientAge, ds.PatientSize, ds.PatientWeight = "047Y", "1.68", "61"
    ds.PatientSex = "F"
    ds.file_meta.SourceApplicationEntityTitle = "JANEDOE_WS"
    ds.file_meta.SendingApplicationEntityTitle = "JANEDOE_WS"
    return ds


SURVIVORS = {0x60000022: "OverlayDescription", 0x60003000: "OverlayData",
             0x60024000: "OverlayComments", 0x50000022: "CurveDescription",
             0x00880200: "IconImageSequence",
             0x00181400: "AcquisitionDeviceProcessingDescription",
             0x00101010: "PatientAge", 0x00101020: "PatientSize",
             0x00101030: "PatientWeight"}


def _survivors(ds: Dataset) -> set[str]:
    found = {SURVIVORS[e.tag] for e in ds.iterall() if e.tag in SURVIVORS}
    for name in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle"):
        if name in ds.file_meta:
            found.add(name)
    return found


def test_overlays_icons_characteristics_and_file_meta_do_not_survive(tmp_path) -> None:
    """dicognito alone leaves every one of these in place (the review reproduced them in
    the copy of RG1_UNCR); the allow-list removes them and states what was applied."""
    ds = _with_every_class(dcmread(io.BytesIO(radiograph("MRN-SECRET-42"))))
    source, copy = tmp_path / "in.dcm", tmp_path / "out.dcm"
    ds.save_as(source, enforce_file_format=True)
    every = {*SURVIVORS.values(), "SourceApplicationEntityTitle",
             "SendingApplicationEntityTitle"}

    before = dcmread(source)
    Anonymizer().anonymize(before)
    assert _survivors(before) == every  # dicognito alone keeps them all

    assert deidentify.deidentified_copy(source, copy) is True
    out = dcmread(copy)
    assert _survivors(out) == set()
    assert not any(e.tag.group & 0xFF00 in (0x5000, 0x6000) for e in out.iterall())
    raw = copy.read_bytes()
    assert b"JANEDOE" not in raw and b"Doe^Jane" not in raw and b"047Y" not in raw
    assert out.PatientSex == ""  # Z: Type 2, kept empty
    assert out.PatientIdentityRemoved == "YES"
    assert [(i.CodeValue, i.CodingSchemeDesignator) for i in
            out.DeidentificationMethodCodeSequence] == [("113100", "DCM"),
                                                         ("113107", "DCM")]
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.pixel_array.shape == (64, 64)
