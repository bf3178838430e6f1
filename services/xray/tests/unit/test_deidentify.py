"""De-identified copies keep no free text, device or private attribute that carries
identity (DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile)."""

from __future__ import annotations

import io

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
    ds.PatientName = NAME
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
    assert out.DeidentificationMethod == "DICOGNITO"
    assert out.pixel_array.shape == (64, 64) and out.Modality == "CR"
    assert not any(element.tag.is_private for element in out.iterall())


def test_an_image_with_burned_in_annotation_gets_no_copy(tmp_path) -> None:
    """Burned In Annotation (0028,0301) YES: the pixels show identity (a name, a date
    of birth), which no header change removes; a 'de-identified' copy of it, which any
    doctor may download, would carry them. None is made."""
    ds = dcmread(io.BytesIO(radiograph("MRN-SECRET-42")))
    ds.BurnedInAnnotation = "YES"
    source, copy = tmp_path / "in.dcm", tmp_path / "out.dcm"
    ds.save_as(source, enforce_file_format=True)
    assert deidentify.deidentified_copy(source, copy) is False
    assert not copy.exists()
    ds.BurnedInAnnotation = "NO"
    ds.save_as(source, enforce_file_format=True)
    assert deidentify.deidentified_copy(source, copy) is True
    assert dcmread(copy).PatientIdentityRemoved == "YES"
