"""What a stored image is, read from its bytes: DICOM Part 10 with pydicom, PNG and
JPEG photographs of films with Pillow. Sub-domain machinery, no I/O but the local
file it is handed (the upload's spooled copy).

A DICOM file is accepted when (DICOM PS3.10, PS3.3):

* it parses as Part 10 (128-byte preamble, ``DICM``, File Meta Information);
* it names a patient and its study, series and SOP instance: Patient ID (0010,0020)
  present, Study (0020,000D), Series (0020,000E) and SOP Instance (0008,0018) UIDs
  present and valid UIDs (PS3.5 §9.1: digits and dots, at most 64 characters);
* its Modality (0008,0060) is a projection radiograph: :data:`MODALITIES`;
* its Transfer Syntax is one we decode: :data:`TRANSFER_SYNTAXES` (uncompressed
  little endian, JPEG 2000 via pylibjpeg-openjpeg);
* Rows × Columns × Number of Frames is at most the pixel limit (``max_pixels``,
  ``XRAY_MAX_IMAGE_PIXELS``, :data:`MAX_PIXELS` by default; ``too-many-pixels``
  otherwise: a decompression bomb is refused by what it declares);
* it is one frame (Number of Frames absent or 1: CR and DX images are single-frame),
  one or three samples per pixel, 8 or 16 bits allocated — all checked from the
  header before any pixel is read;
* a JPEG 2000 frame's own header (ISO/IEC 15444-1 A.5.1 SIZ, or a JP2 wrapper's
  ``ihdr`` box) declares the same Rows, Columns and Samples per Pixel: the decoder
  allocates by what the codestream declares, so this too is read (openjpeg
  ``get_parameters``, no decoding) before any pixel is;
* its Pixel Data decodes to ``Rows`` × ``Columns`` samples (JPEG 2000), or holds
  exactly the bytes the header declares, all present in the file (uncompressed: its
  length is checked, its pixels are not read, so an upload's memory does not grow
  with the image).

Elements larger than :data:`DEFER_SIZE` (the pixel data, private blobs) stay on
disk until used: memory follows the image's size, never the file's.

Every refusal has a fixed ``detail``: pydicom's and the decoders' messages quote
element values (a name in a malformed element), so they are neither answered nor
logged; the log names the exception's type.

A photograph is accepted when Pillow recognises the same format as declared, its
header's width × height is within the pixel limit (``too-many-pixels``; Pillow's own
``DecompressionBombError``, raised by ``Image.open`` from the header past twice
``Image.MAX_IMAGE_PIXELS``, which :func:`guard_pillow` sets to the limit, is the
same refusal) and it decodes whole. Anything else raises
:class:`~healthflow.xray.domain.InvalidImage` (422) whose ``problem`` member says which
rule failed.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import openjpeg
from PIL import Image
from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.encaps import get_frame
from pydicom.errors import InvalidDicomError
from pydicom.pixels.decoders.base import DecodeRunner
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
)

from healthflow.common.blobs.images import ImageRefused, decode_whole
from healthflow.xray.domain import InvalidImage

log = logging.getLogger(__name__)
logging.getLogger("pydicom").setLevel(logging.CRITICAL + 1)
# pydicom logs what it finds invalid with the value ("Invalid value for VR UI: '…'"), at
# WARNING and up: none of it is logged here (refusals are logged by exception type).
# Nor is it warned (Python warnings reach stderr and so the service log): values are
# not validated when read, this module checks the UIDs and codes it relies on itself.
pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
DICOM = "application/dicom"
PHOTO_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}
MODALITIES = {
    "CR": "Computed Radiography", "DX": "Digital Radiography",
    "RG": "Radiographic imaging (conventional film/screen)",
    "PX": "Panoramic X-Ray", "IO": "Intra-Oral Radiography",
}
"""Accepted DICOM modalities: projection X-ray only (PS3.3 C.7.3.1.1.1); CT, MR, US … are
refused. Photographs of films are stored as ``XC`` (external-camera photography)."""
PHOTO_MODALITY = "XC"
JPEG2000_SYNTAXES = {JPEG2000Lossless, JPEG2000}
PIXEL_DATA = 0x7FE00010
TRANSFER_SYNTAXES = {ImplicitVRLittleEndian, ExplicitVRLittleEndian, *JPEG2000_SYNTAXES}
DEFER_SIZE = "256 KB"
"""Elements above this size are read from the file only when used (pydicom ``defer_size``)."""
MAX_PIXELS = 60_000_000
"""The default pixel limit (``XRAY_MAX_IMAGE_PIXELS``): more is refused (decompression
bombs; a 43 × 43 cm detector at 0.1 mm is 18.5 M)."""


def guard_pillow(max_pixels: int) -> None:
    """Set Pillow's process-wide decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``:
    ``Image.open`` warns past it and raises ``DecompressionBombError`` past twice it,
    from the header) to the service's pixel limit, so every image the service opens
    with Pillow is bounded, not only the uploads :func:`inspect_photo` checks."""
    Image.MAX_IMAGE_PIXELS = max_pixels


def too_many_pixels(pixels: int, max_pixels: int) -> InvalidImage:
    """The refusal of an image declaring ``pixels`` pixels (422 ``too-many-pixels``)."""
    return InvalidImage(f"the image declares {pixels} pixels, more than the {max_pixels} "
                        "accepted", problem="too-many-pixels", pixels=pixels,
                        max_pixels=max_pixels)


@dataclass(frozen=True)
class ImageFacts:
    """What the service keeps of an accepted file. UIDs are ``None`` for photographs
    (the service makes them); ``window`` is (center, width) from (0028,1050)/(0028,1051),
    the first pair when several; ``rows``/``columns`` in pixels."""

    content_type: str
    modality: str
    rows: int
    columns: int
    photometric: str
    patient_id: str | None = None
    accession_number: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None
    transfer_syntax: str | None = None
    body_part: str | None = None
    view_position: str | None = None
    window: tuple[float, float] | None = None


def inspect(path: Path, content_type: str, max_pixels: int = MAX_PIXELS) -> ImageFacts:
    """Check the file at ``path`` whose bytes were detected as ``content_type``; an
    image declaring more than ``max_pixels`` pixels is refused before it is decoded.

    Raises:
        InvalidImage (422): see the module docstring.
    """
    if content_type == DICOM:
        try:
            return inspect_dicom(path, max_pixels)
        except InvalidImage:
            raise
        except Exception as exc:  # pydicom converts values when read: a malformed element
            # raises then (NotImplementedError for an unknown VR, BytesLengthException...)
            log.info("DICOM element refused", extra={"error": type(exc).__name__})
            raise InvalidImage("an element of the file does not parse as its VR says",
                               problem="unreadable") from None
    if content_type in PHOTO_TYPES:
        return inspect_photo(path, content_type, max_pixels)
    raise InvalidImage(f"{content_type} is not an X-ray image", problem="not-an-image")


def read_dicom(path: Path) -> FileDataset:
    """The parsed Part 10 file (pixel data not decoded yet).

    Raises:
        InvalidImage: ``unreadable`` (not Part 10, its elements do not parse, or its
            sequences nest deeper than the parser recurses) or
            ``truncated`` (the file ends inside an element or sequence).
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = dcmread(path, defer_size=DEFER_SIZE)
    except (InvalidDicomError, EOFError, ValueError, OSError, KeyError, TypeError,
            RecursionError) as exc:  # RecursionError: sequences nested thousands deep
        log.info("DICOM file refused", extra={"error": type(exc).__name__})
        raise InvalidImage("the file does not parse as DICOM Part 10",
                           problem="unreadable") from None
    if any("end of file" in str(w.message).lower() for w in caught):
        # pydicom stops at the cut and returns what it read before, with a warning
        raise InvalidImage("the file is truncated", problem="truncated")
    if len(ds) == 0:
        raise InvalidImage("the file ends before its data set", problem="truncated")
    return ds


def _uid(ds: FileDataset, keyword: str) -> str:
    value = str(ds.get(keyword, "") or "").strip()
    if not value:
        raise InvalidImage(f"the DICOM file has no {keyword}", problem="missing-uid",
                           element=keyword)
    if not UID(value).is_valid:
        raise InvalidImage(f"the {keyword} is not a valid UID", problem="missing-uid",
                           element=keyword)
    return value


def stored_window(ds: Dataset) -> tuple[float, float] | None:
    """The first Window Center/Width pair of ``ds``, or None (absent, or width < 1)."""
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None
    first = [v[0] if hasattr(v, "__len__") and not isinstance(v, str) else v
             for v in (center, width)]
    try:
        c, w = float(first[0]), float(first[1])
    except (TypeError, ValueError):
        return None
    return (c, w) if w >= 1 else None


def _check_encoding(ds: FileDataset, max_pixels: int) -> str:
    modality = str(ds.get("Modality", "") or "")
    if modality not in MODALITIES:
        raise InvalidImage(f"modality {modality or 'none'} is not accepted; X-ray images are "
                           f"{', '.join(MODALITIES)}", problem="unsupported-modality",
                           modality=modality or None)
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax not in TRANSFER_SYNTAXES:
        raise InvalidImage(f"transfer syntax {syntax!s} is not accepted; send uncompressed or "
                           "JPEG 2000", problem="transfer-syntax", transfer_syntax=str(syntax))
    if "PixelData" not in ds:
        raise InvalidImage("the DICOM file has no pixel data", problem="pixel-data")
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if rows <= 0 or columns <= 0 or frames <= 0:
        raise InvalidImage(f"{rows} × {columns} pixels is not an image we accept",
                           problem="pixel-data")
    if rows * columns * frames > max_pixels:
        raise too_many_pixels(rows * columns * frames, max_pixels)
    samples, bits = int(ds.get("SamplesPerPixel", 1) or 1), int(ds.get("BitsAllocated", 0) or 0)
    if frames != 1 or samples not in (1, 3) or bits not in (8, 16):
        raise InvalidImage(f"{frames} frame(s) of {samples} sample(s) at {bits} bits is not "
                           "a radiograph we accept (one frame, 1 or 3 samples, 8 or 16 bits)",
                           problem="pixel-data")
    return modality


def _check_codestream(ds: FileDataset) -> None:
    """A JPEG 2000 frame is as large as the DICOM header says: the codestream's own
    header (SIZ: Xsiz − XOsiz columns, Ysiz − YOsiz rows, Csiz components; or the JP2
    ``ihdr`` box), read by openjpeg without decoding, against Rows, Columns and Samples
    per Pixel. Other transfer syntaxes pass (their size is the header's by definition).

    Raises:
        InvalidImage: ``pixel-data`` (unreadable codestream header, or another size).
    """
    if ds.file_meta.get("TransferSyntaxUID") not in JPEG2000_SYNTAXES:
        return
    try:
        params = openjpeg.get_parameters(get_frame(ds.PixelData, 0, number_of_frames=1))
    except Exception as exc:  # pydicom's fragments or openjpeg's header: all mean unreadable
        log.info("JPEG 2000 header refused", extra={"error": type(exc).__name__})
        raise InvalidImage("the JPEG 2000 pixel data has no readable codestream header",
                           problem="pixel-data") from None
    declared = (params["rows"], params["columns"], params["samples_per_pixel"])
    if declared != (int(ds.Rows), int(ds.Columns), int(ds.get("SamplesPerPixel", 1) or 1)):
        raise InvalidImage("the JPEG 2000 codestream declares another image size than the "
                           "DICOM Rows, Columns and Samples per Pixel", problem="pixel-data")


def _check_decodes(ds: FileDataset) -> None:
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # every decoder has its own errors; all mean "does not decode"
        log.info("pixel data refused", extra={"error": type(exc).__name__})
        raise InvalidImage("the pixel data does not decode", problem="pixel-data") from None
    if pixels.shape[:2] != (ds.Rows, ds.Columns):
        raise InvalidImage("the pixel data is not Rows × Columns", problem="pixel-data")


def _check_native_length(ds: FileDataset, path: Path) -> None:
    """Uncompressed Pixel Data holds Rows × Columns × Samples per Pixel × Bits
    Allocated / 8 bytes (PS3.5 8.1.1; one more when that is odd, padded to even) and
    the file holds all of them — checked from the element's declared length and the
    file's size, without reading the pixels (memory stays that of the header however
    large the image: a decode would hold the whole image, twice).

    Raises:
        InvalidImage: ``pixel-data`` (another length, undefined length, or cut short).
    """
    try:  # the header checks a decode makes first (photometric, bits, representation)
        runner = DecodeRunner(ds.file_meta.TransferSyntaxUID)
        runner.set_options(**as_pixel_options(ds))
        runner.set_option("pixel_keyword", "PixelData")
        runner.set_option("pixel_vr", ds.get_item(PIXEL_DATA, keep_deferred=True).VR)
        with path.open("rb") as file:
            runner.set_source(file)
            runner.validate()  # a file source: the options only, no pixel is read
    except Exception as exc:  # pydicom's messages quote values: only the type is logged
        log.info("pixel header refused", extra={"error": type(exc).__name__})
        raise InvalidImage("the pixel data's header elements (group 0028) are not "
                           "consistent", problem="pixel-data") from None
    raw = ds.get_item(PIXEL_DATA, keep_deferred=True)
    expected = (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
                * int(ds.BitsAllocated) // 8)
    if raw is None:
        raise InvalidImage("the DICOM file has no pixel data", problem="pixel-data")
    if isinstance(raw, RawDataElement) and raw.value is None:  # deferred: still on disk
        length, end = int(raw.length), int(raw.value_tell or 0) + int(raw.length)
    else:
        length, end = len(raw.value), 0
    if length not in (expected, expected + expected % 2) or end > path.stat().st_size:
        raise InvalidImage("the pixel data is not Rows × Columns × Samples per Pixel "
                           "samples of Bits Allocated", problem="pixel-data")


SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
"""(FFFE,E0DD) with length 0: how encapsulated Pixel Data ends (PS3.5 A.4)."""


def check_complete(ds: FileDataset, path: Path) -> None:
    """The file does not end inside its Pixel Data (7FE0,0010), read from the element's
    position without reading its value: a native one's declared length (or, deferred,
    Rows × Columns × Samples × Bits Allocated / 8 bytes) lies within the file; an
    encapsulated one that is the last element ends with the sequence delimiter.

    Raises:
        InvalidImage: ``truncated``.
    """
    element = ds.get_item(0x7FE00010, keep_deferred=True)  # not read from the file
    start = getattr(element, "value_tell", None) or getattr(element, "file_tell", None)
    if element is None or start is None:
        return
    size = path.stat().st_size
    length = getattr(element, "length", None)
    if getattr(element, "is_undefined_length", False) or length == 0xFFFFFFFF:
        if list(ds.keys())[-1] != 0x7FE00010 or size < start + len(SEQUENCE_DELIMITER):
            return  # followed by other elements: pydicom's own end-of-file check holds
        with path.open("rb") as file:
            file.seek(size - len(SEQUENCE_DELIMITER))
            ends = file.read() == SEQUENCE_DELIMITER
    else:
        if length is None:  # deferred: the length a native frame has
            length = (int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0)
                      * int(ds.get("SamplesPerPixel", 1) or 1)
                      * int(ds.get("BitsAllocated", 0) or 0) // 8)
        ends = start + length <= size
    if not ends:
        raise InvalidImage("the file is truncated: it ends inside its pixel data",
                           problem="truncated")


def inspect_dicom(path: Path, max_pixels: int = MAX_PIXELS) -> ImageFacts:
    """Parse, check and decode a DICOM Part 10 file (see the module docstring)."""
    ds = read_dicom(path)
    check_complete(ds, path)
    uids = [_uid(ds, k) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
    patient_id = str(ds.get("PatientID", "") or "").strip()
    if not patient_id:
        raise InvalidImage("the DICOM file has no Patient ID", problem="missing-uid",
                           element="PatientID")
    modality = _check_encoding(ds, max_pixels)
    if ds.file_meta.get("TransferSyntaxUID") in JPEG2000_SYNTAXES:
        _check_codestream(ds)
        _check_decodes(ds)
    else:
        _check_native_length(ds, path)
    return ImageFacts(
        content_type=DICOM, modality=modality, rows=int(ds.Rows), columns=int(ds.Columns),
        photometric=str(ds.get("PhotometricInterpretation", "")), patient_id=patient_id,
        accession_number=str(ds.get("AccessionNumber", "") or "").strip() or None,
        study_uid=uids[0], series_uid=uids[1], sop_instance_uid=uids[2],
        sop_class_uid=str(ds.get("SOPClassUID", "") or "") or None,
        transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
        body_part=str(ds.get("BodyPartExamined", "") or "") or None,
        view_position=str(ds.get("ViewPosition", "") or "") or None, window=stored_window(ds))


def inspect_photo(path: Path, content_type: str, max_pixels: int = MAX_PIXELS
                  ) -> ImageFacts:
    """Decode a PNG or JPEG photograph of a film whole (Pillow), in the declared format,
    after checking its header's width × height against ``max_pixels``.

    Raises:
        InvalidImage (422): ``too-many-pixels`` (from the header, before decoding; also
            Pillow's ``DecompressionBombError``), ``pixel-data`` (does not decode),
            ``type-mismatch`` (another format than ``content_type``).
    """
    try:
        image = decode_whole(path, max_pixels)
    except ImageRefused as refused:
        if refused.problem == "too-many-pixels":
            raise (too_many_pixels(refused.pixels, max_pixels) if refused.pixels else
                   InvalidImage("the photograph declares more pixels than accepted",
                                problem="too-many-pixels", max_pixels=max_pixels)) from None
        log.info("photograph refused", extra={"error": refused.error})
        raise InvalidImage("the photograph does not decode", problem="pixel-data") from None
    fmt, size, mode = image.format, (image.width, image.height), image.mode
    if fmt != PHOTO_TYPES[content_type]:
        raise InvalidImage(f"the bytes are {fmt}, not {content_type}", problem="type-mismatch")
    photometric = "MONOCHROME2" if mode in ("L", "I", "I;16") else "RGB"
    return ImageFacts(content_type=content_type, modality=PHOTO_MODALITY, rows=size[1],
                      columns=size[0], photometric=photometric)
