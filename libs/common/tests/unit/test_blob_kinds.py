"""Content types from the bytes, checked against a use's allow-list (no I/O)."""

import pytest

from healthflow.common.blobs import XRAY, BlobTypeRefused, BlobUse, check_type, detect_type
from healthflow.common.blobs.kinds import normalize_type

DICOM = bytes(128) + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00" + bytes(64)  # PS3.10 preamble
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64)


def test_dicom_and_jpeg_are_recognised_from_their_magic_numbers():
    assert detect_type(DICOM) == "application/dicom"
    assert detect_type(JPEG) == "image/jpeg"
    assert detect_type(b"just some text") is None


def test_declared_types_are_compared_without_case_parameters_or_aliases():
    assert normalize_type("Image/JPG; q=1") == "image/jpeg"
    assert check_type(XRAY, JPEG, "image/pjpeg") == "image/jpeg"
    assert check_type(XRAY, DICOM, None) == "application/dicom"


def test_a_refusal_says_what_was_seen_and_what_is_allowed():
    with pytest.raises(BlobTypeRefused) as refused:
        check_type(XRAY, JPEG, "application/dicom")
    assert refused.value.body()["allowed_types"] == ["application/dicom", "image/jpeg",
                                                      "image/png"]


def test_a_use_name_is_one_key_segment():
    with pytest.raises(ValueError):
        BlobUse("a/b", frozenset({"image/png"}))


def test_dicom_with_a_tiff_header_in_its_preamble_is_dicom():
    """Dual-format files (the pydicom-data radiographs among them) put a TIFF header in
    the free 128-byte preamble (PS3.10 §7.1); the DICM prefix decides."""
    dual = b"II*\x00" + DICOM[4:]
    assert detect_type(dual) == "application/dicom"
    assert check_type(XRAY, dual, "application/dicom") == "application/dicom"
