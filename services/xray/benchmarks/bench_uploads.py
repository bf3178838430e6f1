"""Measure how fast the xray service takes in the real chest CR (pydicom-data ``RG1``).

    uv run python services/xray/benchmarks/bench_uploads.py [--count 8]

Starts an in-memory SecantusDB and a local S3 (s3rver), runs the service in-process
(its DICOM SCP on a free port) and prints, for the uncompressed (7.2 MB) and the
JPEG 2000 lossless form of the radiograph:

* ``validate``: :func:`healthflow.xray.imaging.inspect` alone (parse, checks, pixel
  decode) on a local file — the CPU part of every upload;
* ``HTTP upload``: POST of the file until the 201 (stream into S3 and a spool file,
  validate, one transaction), latency p50/p99 and MB/s;
* ``C-STORE``: one association sending ``count`` instances (pynetdicom SCU), per
  instance latency and MB/s;
* ``preview``: the windowed PNG of a stored image, p50/p99.

Figures, not tests: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE

from healthflow.contracts.records import EncounterStarted
from healthflow.devkit.benchmarking import EmbeddedMongo, percentile, report
from healthflow.devkit.embedded import EmbeddedS3
from healthflow.devkit.testing import TokenFactory, running_app
from healthflow.xray import imaging, service
from healthflow.xray.app import create_app
from healthflow.xray.settings import Settings

PATIENT, DOCTOR, MODALITY = "p-bench", "dr-bench", "BENCH_CR"
FORMS = {"uncompressed": "RG1_UNCR.dcm", "JPEG 2000": "RG1_J2KR.dcm"}


def radiograph(name: str, accession: str) -> Dataset:
    """The real radiograph for the bench order, with fresh UIDs (each one a new image)."""
    ds = dcmread(str(get_testdata_file(name)))
    ds.PatientID, ds.AccessionNumber = PATIENT, accession
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


def encoded(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def ms(values: list[float]) -> str:
    p50, p99 = percentile(values, 50) * 1000, percentile(values, 99) * 1000
    return f"p50 {p50:7.0f} ms   p99 {p99:7.0f} ms"


def validate(name: str, count: int) -> list[float]:
    path = Path(str(get_testdata_file(name)))
    times = []
    for _ in range(count):
        started = time.perf_counter()
        imaging.inspect(path, imaging.DICOM)
        times.append(time.perf_counter() - started)
    return times


def c_store(port: int, datasets: list[Dataset]) -> list[float]:
    ae = AE(ae_title=MODALITY)
    ae.add_requested_context(datasets[0].SOPClassUID, datasets[0].file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="HEALTHFLOW")
    assert assoc.is_established, "the SCP refused the bench association"
    times = []
    try:
        for ds in datasets:
            started = time.perf_counter()
            status = assoc.send_c_store(ds)
            times.append(time.perf_counter() - started)
            assert status.Status == 0, hex(status.Status)
    finally:
        assoc.release()
    return times


async def order(http: Any, app: Any, tokens: TokenFactory) -> dict[str, Any]:
    started = EncounterStarted(encounter_id=str(uuid.uuid4()), patient_id=PATIENT,
                               practitioner_id=DOCTOR, appointment_id=None,
                               encounter_class="AMB", started_at=datetime.now(UTC))
    await app.state.runtime.transact(lambda uow: service.encounter_started(uow, started))
    answer = await http.post("/api/v1/imaging/orders", headers=tokens.headers(
        DOCTOR, ("doctor",)), json={"encounter_id": started.encounter_id,
                                    "body_part": "CHEST", "view": "PA", "question": "bench"})
    return dict(answer.json())


async def bench_form(http: Any, app: Any, tokens: TokenFactory, form: str, count: int
                     ) -> None:
    name = FORMS[form]
    size = len(encoded(radiograph(name, "x"))) / 1e6
    checked = await asyncio.to_thread(validate, name, count)
    placed = await order(http, app, tokens)
    radiographer = tokens.headers("rad-bench", ("radiographer",)) | {
        "Content-Type": imaging.DICOM}
    uploads, previews = [], []
    for _ in range(count):
        body = encoded(radiograph(name, placed["accession_number"]))
        started = time.perf_counter()
        answer = await http.post("/api/v1/imaging/studies", params={"order_id": placed["id"]},
                                 content=body, headers=radiographer)
        uploads.append(time.perf_counter() - started)
        assert answer.status_code == 201, answer.text
        url = answer.json()["series"][0]["instances"][0]["preview"]
        started = time.perf_counter()
        assert (await http.get(url, headers=tokens.headers(DOCTOR, ("doctor",)))).is_success
        previews.append(time.perf_counter() - started)
    sent = [radiograph(name, placed["accession_number"]) for _ in range(count)]
    stored = await asyncio.to_thread(c_store, app.state.dicom_scp.port, sent)
    report(f"{form} chest CR (1955 x 1841, {size:.1f} MB), {count} each", [
        ("validate (inspect)", f"{ms(checked)}   {size * count / sum(checked):6.1f} MB/s"),
        ("HTTP upload", f"{ms(uploads)}   {size * count / sum(uploads):6.1f} MB/s"),
        ("C-STORE", f"{ms(stored)}   {size * count / sum(stored):6.1f} MB/s"),
        ("preview (PNG)", ms(previews))])


async def main(count: int) -> None:
    mongo = EmbeddedMongo(":memory:").start()
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as s3_dir:
        s3 = EmbeddedS3(s3_dir).start()
        try:
            env = s3.env()
            settings = Settings(
                mongodb_url=mongo.url, mongodb_database="bench_xray", transport="inprocess",
                s3_endpoint_url=env["S3_ENDPOINT_URL"], s3_access_key=env["S3_ACCESS_KEY"],
                s3_secret_key=env["S3_SECRET_KEY"], s3_region=env["S3_REGION"],
                s3_bucket="bench-xray", dicom_port=0, dicom_calling_ae_titles=[MODALITY])
            tokens = TokenFactory()
            app = create_app(settings)
            app.state.verifier = tokens.verifier()
            async with running_app(app) as http:
                for form in FORMS:
                    await bench_form(http, app, tokens, form, count)
        finally:
            s3.stop()
            mongo.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=8, help="images per form and path")
    asyncio.run(main(parser.parse_args().count))
