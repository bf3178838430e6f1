"""The processing worker on the real chest CR (``RG1_UNCR`` from pydicom-data): stored over
HTTP, a job on the service's queue renders a thumbnail and runs the automated checks;
the results (labelled suggestions) are read like previews, and ``xray.processed``
carries codes only."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from PIL import Image

from healthflow.common import jobs
from healthflow.common.events.outbox import recorded_events
from healthflow.devkit.dicom import radiograph
from healthflow.devkit.testing import TokenFactory, running_app
from healthflow.xray import processing
from healthflow.xray.app import create_app
from healthflow.xray.checks import LABEL

from .conftest import DICOM, DOCTOR, PATIENT, RADIOGRAPHER, ordered, settings_for
from .test_real_radiographs import encoded, real


@pytest.fixture
async def worker(mongodb_url: str, s3_env: dict[str, str], unique_name: str,
                 tokens: TokenFactory) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_app(settings_for(mongodb_url, s3_env, unique_name,
                                  processing_interval=0.1))
    app.state.verifier = tokens.verifier()
    async with running_app(app) as http:
        yield http, app


async def results_when_ready(http: httpx.AsyncClient, study_id: str,
                             headers: dict[str, str]) -> dict[str, Any]:
    for _ in range(300):
        answer = await http.get(f"/api/v1/imaging/studies/{study_id}/results",
                                headers=headers)
        assert answer.status_code == 200, answer.text
        if answer.json()["instances"]:
            return dict(answer.json())
        await asyncio.sleep(0.1)
    raise AssertionError("the image was not processed within 30 s")


async def test_the_chest_cr_is_processed_and_its_results_read_like_previews(
        worker, tokens) -> None:
    http, app = worker
    order = await ordered(http, app, tokens)  # CHEST, PA: what RG1_UNCR's header says
    up = await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                         content=encoded(real("RG1_UNCR.dcm", order)),
                         headers=tokens.headers(RADIOGRAPHER, ("radiographer",)) | DICOM)
    assert up.status_code == 201, up.text
    study_id = up.json()["id"]
    found = await results_when_ready(http, study_id, tokens.headers(DOCTOR, ("doctor",)))
    assert found["label"] == LABEL == "machine-generated suggestion, not a diagnosis"
    [one] = found["instances"]
    checks = one["checks"]
    assert checks["view"] == {"code": "ok", "ordered": "PA", "found": "PA"}
    assert checks["body_part"]["code"] == "ok"
    assert checks["laterality"] == {"code": "ok", "paired": False, "found": None}
    # Pixel Spacing is 0\0 in this file: judged by its matrix, 1955 × 1841
    assert checks["resolution"] == {"code": "ok", "rows": 1955, "columns": 1841,
                                    "pixel_spacing_mm": None}
    exposure = checks["exposure"]
    assert exposure["bits_stored"] == 15 and 0 < exposure["range_used"] <= 1
    assert exposure["code"] in {"ok", "warning"}
    lungs = checks["lung_fields"]  # lungs-finder's cascades on the windowed preview
    assert lungs["code"] == "ok", lungs
    boxes = {b["side"]: b for b in lungs["boxes"]}
    # the patient's right lung is on the image's left of a PA chest, each in its half
    assert boxes["right"]["x"] + boxes["right"]["width"] / 2 < 1841 / 2
    assert boxes["left"]["x"] + boxes["left"]["width"] / 2 > 1841 / 2
    assert all(b["height"] > 1955 / 3 for b in boxes.values())

    thumb = await http.get(one["thumbnail"], headers=tokens.headers(DOCTOR, ("doctor",)))
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 256

    db = app.state.runtime.db
    [event] = await recorded_events(db, {"type": "xray.processed"})
    data = event.data or {}
    assert data["instance_id"] == one["instance_id"] and data["view"] == "ok"
    assert set(data) == {"study_id", "instance_id", "order_id", "patient_id", "exposure",
                         "view", "body_part", "laterality", "resolution", "processed_at"}
    accessed = await recorded_events(db, {"type": "xray.accessed"})
    assert "thumbnail" in {(e.data or {})["scope"] for e in accessed}


async def test_results_follow_the_preview_access_rules(worker, tokens) -> None:
    """Another patient gets 404 (existence hidden); a doctor without care 403; the upload
    role alone cannot read results."""
    http, app = worker
    order = await ordered(http, app, tokens)
    up = await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                         content=encoded(real("RG1_UNCR.dcm", order)),
                         headers=tokens.headers(RADIOGRAPHER, ("radiographer",)) | DICOM)
    path = f"/api/v1/imaging/studies/{up.json()['id']}/results"
    other = await http.get(path, headers=tokens.headers("p-2", ("patient",)))
    stranger = await http.get(path, headers=tokens.headers("dr-2", ("doctor",)))
    radiographer = await http.get(path, headers=tokens.headers(RADIOGRAPHER,
                                                               ("radiographer",)))
    assert (other.status_code, stranger.status_code, radiographer.status_code) == (
        404, 403, 403)
    assert other.headers["content-type"].startswith("application/problem+json")


async def test_a_processing_job_run_again_publishes_xray_processed_once(
        worker, tokens) -> None:
    """A job run again (a retry after a lost lease) replaces the results but publishes
    no second ``xray.processed``."""
    http, app = worker
    order = await ordered(http, app, tokens)
    up = await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                         content=radiograph(PATIENT),
                         headers=tokens.headers(RADIOGRAPHER, ("radiographer",)) | DICOM)
    assert up.status_code == 201, up.text
    found = await results_when_ready(http, up.json()["id"],
                                     tokens.headers(DOCTOR, ("doctor",)))
    [one] = found["instances"]
    job = jobs.Job("again", processing.QUEUE, {"instance_id": one["instance_id"]}, 1,
                   datetime.now(UTC), "test")
    for _ in range(2):
        prepared = replace(job, prepared=await processing.prepare(
            app.state.runtime, app.state.blobs, job))
        await app.state.runtime.transact(lambda uow, run=prepared: processing.process(uow, run))
    db = app.state.runtime.db
    [event] = await recorded_events(db, {"type": "xray.processed"})
    assert (event.data or {})["instance_id"] == one["instance_id"]
    assert await db["results"].count_documents({}) == 1
