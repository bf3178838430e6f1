"""The header kept for WADO-RS metadata leaves out large values, text as well as binary,
so a modality's 4 GiB UT element cannot make the stored document exceed the database's
limit."""

from __future__ import annotations

import io
import json
from pathlib import Path

from pydicom import dcmread

from healthflow.devkit.dicom import radiograph
from healthflow.xray.wado_metadata import BULK_LIMIT, header_json

TEXT_VALUE = "0040A160"  # Text Value (UT: up to 4 GiB)


def test_large_text_values_are_left_out_and_small_ones_kept(tmp_path: Path) -> None:
    ds = dcmread(io.BytesIO(radiograph("pat-1", accession_number="ACC-1")))
    ds.TextValue = "x" * (BULK_LIMIT + 1)
    ds.StudyDescription = "Chest PA"  # LO, small
    path = tmp_path / "image.dcm"
    ds.save_as(path)
    header = json.loads(header_json(path))
    assert TEXT_VALUE not in header
    assert header["00081030"]["Value"] == ["Chest PA"]
