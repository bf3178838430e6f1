"""Real radiographs from the ``pydicom-data`` package (loaded from the installed package,
never copied here): the chest CR ``RG1_UNCR`` (1955 × 1841, MONOCHROME1) pushed over
C-STORE, it and its JPEG 2000 form uploaded over HTTP, the preview the right way round, and
pydicom's broken files refused with nothing stored.

The radiographer enters the order's patient id and accession number at the modality;
here the same two header elements are set on the real file (and fresh UIDs where one
image is stored twice), nothing else is touched.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from .conftest import DICOM, DOCTOR, PATIENT, RADIOGRAPHER, ordered
from .test_dicom_scp import c_store


def real(name: str, order: dict[str, Any], *, new_uids: bool = False) -> Dataset:
    """The installed test file ``name`` as the modality would send it for ``order``."""
    path = get_testdata_file(name)
    assert path is not None, f"pydicom-data does not ship {name}"
    ds = dcmread(path)
    ds.PatientID, ds.AccessionNumber = PATIENT, order["accession_number"]
    if new_uids:
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


def encoded(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def broken(name: str, order: dict[str, Any], cut: int | None) -> bytes:
    """pydicom's broken file as it is, or a radiograph for ``order`` missing its last
    ``cut`` bytes."""
    path = get_testdata_file(name)
    assert path is not None
    data = Path(path).read_bytes() if cut is None else encoded(real(name, order))
    return data if cut is None else data[:-cut]


def lungs_darker_than_spine(png: bytes) -> bool:
    """A PA chest shown the right way round: the lung fields (air) are darker than the
    spine and mediastinum (bone, soft tissue) — false for an uninverted MONOCHROME1."""
    image = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    h, w = image.shape

    def mean(y: tuple[float, float], x: tuple[float, float]) -> float:
        return float(image[int(h * y[0]):int(h * y[1]), int(w * x[0]):int(w * x[1])].mean())

    band = (0.3, 0.55)
    lungs = (mean(band, (0.2, 0.4)) + mean(band, (0.6, 0.8))) / 2
    return lungs + 40 < mean(band, (0.45, 0.55))


async def test_the_real_chest_cr_over_c_store_and_http_previews_the_right_way_round(
        pacs, tokens, tmp_path: Path) -> None:
    http, app = pacs
    order = await ordered(http, app, tokens)
    statuses = await asyncio.to_thread(c_store, app.state.dicom_scp.port,
                                       [real("RG1_UNCR.dcm", order)])
    assert statuses == [0x0000]
    uncompressed = encoded(real("RG1_UNCR.dcm", order, new_uids=True))
    assert uncompressed[:4] == b"II*\x00"  # a TIFF header in the preamble (dual format)
    for data in (uncompressed, encoded(real("RG1_J2KR.dcm", order, new_uids=True))):
        up = await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                             content=data, headers=tokens.headers(
                                 RADIOGRAPHER, ("radiographer",)) | DICOM)
        assert up.status_code == 201, up.text
    studies = (await http.get("/api/v1/imaging/studies", params={"patient_id": PATIENT},
                              headers=tokens.headers(PATIENT, ("patient",)))).json()["items"]
    instances = [i for s in studies for series in s["series"] for i in series["instances"]]
    assert len(instances) == 3
    assert {(i["rows"], i["columns"], i["photometric"]) for i in instances} == {
        (1955, 1841, "MONOCHROME1")}
    for instance in instances:
        preview = await http.get(instance["preview"], headers=tokens.headers(
            DOCTOR, ("doctor",)))
        assert preview.status_code == 200
        png = tmp_path / f"RG1-{instance['id']}.png"
        png.write_bytes(preview.content)
        print(f"preview of the real chest CR: {png}")  # the PNG in the test output
        assert Image.open(png).size == (964, 1024)  # ≤ 1024 px, aspect kept
        assert lungs_darker_than_spine(preview.content)


@pytest.mark.parametrize("name, cut, problem", [
    ("bad_sequence.dcm", None, "missing-uid"),  # the first rule its broken header fails
    ("RG3_J2KR.dcm", 4096, "truncated"), ("RG1_UNCR.dcm", 100_000, "truncated")])
async def test_broken_real_files_are_refused_with_nothing_stored(xray, tokens, name, cut,
                                                                  problem) -> None:
    """pydicom's file with a broken sequence, a JPEG 2000 radiograph cut short and an
    uncompressed one cut short: 422 problem+json, no object, no instance, no event."""
    http, app = xray
    order = await ordered(http, app, tokens)
    data = broken(name, order, cut)
    answer = await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                             content=data, headers=tokens.headers(
                                 RADIOGRAPHER, ("radiographer",)) | DICOM)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["problem"] == problem, answer.text
    assert await app.state.blobs.keys() == []
    assert await app.state.runtime.db["instances"].count_documents({}) == 0
