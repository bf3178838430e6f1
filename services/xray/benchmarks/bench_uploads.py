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
* ``preview``: the windowed PNG of a stored image, p50/p99;
* ``upload to preview`` / ``upload to processed``: from the POST's first byte to the
  preview's last, and to the image's automated results being listed (the processing
  worker polls its queue every :data:`PROCESSING_INTERVAL` s here), p50/p99;
* ``throughput``: ``count`` uploads back to back until the last is processed, in
  studies per minute on this machine;
* ``100 MB upload``: the service run as its own process (``--serve``) takes a
  generated ~104 MB radiograph (7200 × 7200, 16 bits, made at bench time in a temporary
  file, never committed) streamed from disk; its peak RSS (``VmHWM`` of
  ``/proc/<pid>/status``, reset before the upload through ``clear_refs``, and ``VmRSS``
  sampled every 10 ms) against the upload's size.

``count`` is ``--count`` or ``XRAY_BENCH_COUNT`` (default 5).
Figures, not tests: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE

from healthflow.common.auth import TokenVerifier
from healthflow.common.http import serve
from healthflow.contracts.records import EncounterStarted
from healthflow.devkit.benchmarking import EmbeddedMongo, percentile, report
from healthflow.devkit.embedded import EmbeddedS3
from healthflow.devkit.testing import TokenFactory, running_app
from healthflow.xray import imaging, service
from healthflow.xray.app import create_app
from healthflow.xray.settings import Settings

PATIENT, DOCTOR, MODALITY = "p-bench", "dr-bench", "BENCH_CR"
FORMS = {"uncompressed": "RG1_UNCR.dcm", "JPEG 2000": "RG1_J2KR.dcm"}
PROCESSING_INTERVAL = 0.1
LARGE_SIDE = 7200
"""The 100 MB radiograph: 7200 × 7200 16-bit pixels (51.8 M, under ``MAX_PIXELS``)."""


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


async def processed(http: Any, study_id: str, headers: dict[str, str]) -> None:
    """Wait until the study's image is listed among its automated results."""
    while True:
        answer = await http.get(f"/api/v1/imaging/studies/{study_id}/results",
                                headers=headers)
        if answer.is_success and answer.json()["instances"]:
            return
        await asyncio.sleep(0.02)


async def all_processed(db: Any) -> None:
    """Wait until every stored image has its results (the C-STORE ones too), so the next
    form is not measured against this one's processing."""
    while True:
        if await db["results"].count_documents({}) >= \
                await db["instances"].count_documents({}):
            return
        await asyncio.sleep(0.1)


async def upload(http: Any, headers: dict[str, str], order_id: str, body: bytes
                 ) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    answer = await http.post("/api/v1/imaging/studies", params={"order_id": order_id},
                             content=body, headers=headers)
    assert answer.status_code == 201, answer.text
    return started, dict(answer.json())


async def bench_form(http: Any, app: Any, tokens: TokenFactory, form: str, count: int
                     ) -> None:
    name = FORMS[form]
    size = len(encoded(radiograph(name, "x"))) / 1e6
    checked = await asyncio.to_thread(validate, name, count)
    placed = await order(http, app, tokens)
    radiographer = tokens.headers("rad-bench", ("radiographer",)) | {
        "Content-Type": imaging.DICOM}
    doctor = tokens.headers(DOCTOR, ("doctor",))
    uploads, previews, to_preview, to_processed = [], [], [], []
    for _ in range(count):
        body = encoded(radiograph(name, placed["accession_number"]))
        started, study = await upload(http, radiographer, placed["id"], body)
        uploads.append(time.perf_counter() - started)
        url = study["series"][0]["instances"][0]["preview"]
        shown = time.perf_counter()
        assert (await http.get(url, headers=doctor)).is_success
        previews.append(time.perf_counter() - shown)
        to_preview.append(time.perf_counter() - started)
        await processed(http, study["id"], doctor)
        to_processed.append(time.perf_counter() - started)
    bodies = [encoded(radiograph(name, placed["accession_number"])) for _ in range(count)]
    first = time.perf_counter()
    ids = [(await upload(http, radiographer, placed["id"], b))[1]["id"] for b in bodies]
    for study_id in ids:
        await processed(http, study_id, doctor)
    per_minute = count * 60 / (time.perf_counter() - first)
    sent = [radiograph(name, placed["accession_number"]) for _ in range(count)]
    stored = await asyncio.to_thread(c_store, app.state.dicom_scp.port, sent)
    await all_processed(app.state.runtime.db)
    report(f"{form} chest CR (1955 x 1841, {size:.1f} MB), {count} each", [
        ("validate (inspect)", f"{ms(checked)}   {size * count / sum(checked):6.1f} MB/s"),
        ("HTTP upload", f"{ms(uploads)}   {size * count / sum(uploads):6.1f} MB/s"),
        ("C-STORE", f"{ms(stored)}   {size * count / sum(stored):6.1f} MB/s"),
        ("preview (PNG)", ms(previews)),
        ("upload to preview", ms(to_preview)),
        (f"upload to processed (poll {PROCESSING_INTERVAL} s)", ms(to_processed)),
        ("throughput (upload+process)", f"{per_minute:6.1f} studies/min")])


def large_radiograph(path: Path, accession: str) -> int:
    """Write the ~104 MB uncompressed radiograph for the bench order at ``path``: the
    chest CR's header, a 7200 × 7200 16-bit gradient with noise. Returns its size."""
    ds = radiograph(FORMS["uncompressed"], accession)
    rng = np.random.default_rng(12)
    ramp = np.linspace(200, 3800, LARGE_SIDE, dtype=np.float32)
    pixels = (ramp[None, :] + rng.normal(0, 40, (LARGE_SIDE, LARGE_SIDE))).clip(0, 4095)
    ds.Rows = ds.Columns = LARGE_SIDE
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    del pixels
    ds.save_as(path, enforce_file_format=True)
    return path.stat().st_size


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class RssSampler:
    """The largest ``VmRSS`` of ``pid`` seen every 10 ms while running."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kb, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, status_kb(self.pid, "VmRSS"))
            self._stop.wait(0.01)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def stream_file(path: Path) -> Any:
    with path.open("rb") as file:
        while chunk := file.read(1024 * 1024):
            yield chunk


async def service_ready(base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as http:
        for _ in range(600):
            try:
                if (await http.get("/livez")).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the xray service process did not start")


def start_service(config: dict[str, Any], jwks: dict[str, Any]) -> subprocess.Popen[bytes]:
    """This script with ``--serve``: the service in its own process."""
    return subprocess.Popen([sys.executable, __file__, "--serve"], env=os.environ | {
        "XRAY_BENCH_SERVE": json.dumps({"settings": config, "jwks": jwks})})


def reset_peak(pid: int) -> None:
    """Reset ``VmHWM`` of ``pid`` (Linux: ``5`` to ``clear_refs``), so the peak read
    after is the upload's; where that is refused, the 10 ms samples still hold."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


async def bench_large(config: dict[str, Any], tokens: TokenFactory, placed: dict[str, Any],
                      tmp: Path) -> None:
    """The 100 MB upload to the service in its own process: its peak RSS."""
    path = tmp / "large.dcm"
    size = await asyncio.to_thread(large_radiograph, path, placed["accession_number"])
    port = free_port()
    config = config | {"port": port}
    child = start_service(config, tokens.jwks)
    base = f"http://127.0.0.1:{port}"
    try:
        await service_ready(base)
        await asyncio.sleep(1.0)  # let start-up settle
        reset_peak(child.pid)
        before = status_kb(child.pid, "VmRSS")
        headers = tokens.headers("rad-bench", ("radiographer",)) | {
            "Content-Type": imaging.DICOM, "Content-Length": str(size)}
        async with httpx.AsyncClient(base_url=base, timeout=600) as http:
            with RssSampler(child.pid) as sampler:
                started = time.perf_counter()
                answer = await http.post("/api/v1/imaging/studies", headers=headers,
                                         params={"order_id": placed["id"]},
                                         content=stream_file(path))
                took = time.perf_counter() - started
        assert answer.status_code == 201, answer.text
        peak = max(sampler.peak_kb, status_kb(child.pid, "VmHWM"))
    finally:
        child.terminate()
        child.wait(timeout=30)
    report(f"100 MB upload to the service process ({LARGE_SIDE} x {LARGE_SIDE}, 16 bits)", [
        ("upload size", f"{size / 1e6:7.1f} MB in {took:5.1f} s"),
        ("service RSS before", f"{before / 1024:7.1f} MiB"),
        ("service peak RSS", f"{peak / 1024:7.1f} MiB"),
        ("peak growth", f"{(peak - before) / 1024:7.1f} MiB "
                        f"({(peak - before) * 1024 / size:.0%} of the upload)")])


def run_service() -> None:
    """``--serve``: the xray service for :func:`bench_large`, its settings and the
    bench's JWKS from ``XRAY_BENCH_SERVE``."""
    given = json.loads(os.environ["XRAY_BENCH_SERVE"])
    settings = Settings(**given["settings"])
    app = create_app(settings)
    app.state.verifier = TokenVerifier(issuer=TokenFactory.issuer,
                                       audience=TokenFactory.audience, jwks=given["jwks"])
    serve(app, settings)


async def main(count: int) -> None:
    mongo = EmbeddedMongo(":memory:").start()
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as s3_dir:
        s3 = EmbeddedS3(s3_dir).start()
        try:
            env = s3.env()
            config = dict(
                mongodb_url=mongo.url, mongodb_database="bench_xray", transport="inprocess",
                s3_endpoint_url=env["S3_ENDPOINT_URL"], s3_access_key=env["S3_ACCESS_KEY"],
                s3_secret_key=env["S3_SECRET_KEY"], s3_region=env["S3_REGION"],
                s3_bucket="bench-xray", processing_interval=PROCESSING_INTERVAL)
            tokens = TokenFactory()
            app = create_app(Settings(**config, dicom_port=0,
                                      dicom_calling_ae_titles=[MODALITY]))
            app.state.verifier = tokens.verifier()
            async with running_app(app) as http:
                for form in FORMS:
                    await bench_form(http, app, tokens, form, count)
                placed = await order(http, app, tokens)
            await bench_large(config | {"processing_interval": 3600.0}, tokens, placed,
                              Path(s3_dir))
        finally:
            s3.stop()
            mongo.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int,
                        default=int(os.environ.get("XRAY_BENCH_COUNT", "5")),
                        help="images per form and path (XRAY_BENCH_COUNT)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        run_service()
    else:
        asyncio.run(main(arguments.count))
