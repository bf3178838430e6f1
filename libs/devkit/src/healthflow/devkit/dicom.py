"""DICOM Part 10 files made with pydicom for tests (no opaque fixture files).

:func:`radiograph` writes a small projection radiograph (CR by default): a 16-bit
MONOCHROME2 gradient with a bright disc, patient/study/series/SOP instance UIDs,
Window Center/Width, uncompressed or JPEG 2000 (lossless, via pylibjpeg-openjpeg).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    generate_uid,
)

CR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")  # Computed Radiography Image Storage


def pixels(rows: int = 64, columns: int = 64) -> np.ndarray:
    """A 12-bit test image: a left-to-right ramp 0…3000 with a disc of 4000 in the centre."""
    ramp = np.linspace(0, 3000, columns, dtype=np.float64)[None, :].repeat(rows, axis=0)
    y, x = np.ogrid[:rows, :columns]
    disc = (y - rows / 2) ** 2 + (x - columns / 2) ** 2 < (min(rows, columns) / 4) ** 2
    ramp[disc] = 4000
    return ramp.astype(np.uint16)


def radiograph(patient_id: str, *, accession_number: str | None = None, modality: str = "CR",
               rows: int = 64, columns: int = 64, with_uids: bool = True,
               transfer_syntax: UID = ExplicitVRLittleEndian,
               window: tuple[float, float] | None = (2000.0, 4000.0),
               photometric: str = "MONOCHROME2", body_part: str = "CHEST",
               view: str = "PA") -> bytes:
    """The bytes of a DICOM Part 10 radiograph of ``patient_id`` (see the module docstring)."""
    ds = Dataset()
    ds.SOPClassUID = CR_STORAGE
    ds.PatientID = patient_id
    ds.PatientName = "Test^Patient"
    ds.Modality = modality
    ds.AccessionNumber = accession_number or ""
    ds.StudyDate = datetime.now(UTC).strftime("%Y%m%d")
    ds.BodyPartExamined = body_part
    ds.ViewPosition = view
    if with_uids:
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CR_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", generate_uid())
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    image = pixels(rows, columns)
    ds.PixelData = image.tobytes()
    if transfer_syntax == JPEG2000Lossless:
        ds.compress(JPEG2000Lossless, image, encoding_plugin="pylibjpeg")
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
