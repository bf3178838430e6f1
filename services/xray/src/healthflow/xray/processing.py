"""The processing worker: after an image is stored (upload, C-STORE, STOW-RS), a job on
the service's queue (:mod:`healthflow.common.jobs`, queue :data:`QUEUE`, enqueued in the
storing transaction with the instance id as its key) renders a thumbnail, runs the
automated checks (:mod:`.checks`), draws the lung boxes of a chest image on a copy of
its preview (the overlay PNG), makes a de-identified copy of a DICOM file
(:mod:`.deidentify`), stores the results labelled
"machine-generated suggestion, not a diagnosis" and publishes ``xray.processed``
(codes only). The long part — download, decoding, lung finder, de-identification,
the derived blobs' puts — runs outside any transaction (:func:`prepare`, the worker's
``prepare`` step); the job's transaction (:func:`process`) only stores the results and
marks the job done while it still holds its lease, so a job that dies commits nothing
and is run again. Each optional output (overlay, SR, de-identified copy) is made on its
own: one that fails is recorded in the result's ``not_made`` (``{kind: "error"}``) and
the rest of the job goes on.

A DICOM image whose lung fields were found also gets a TID 1500 measurement report
(:mod:`.measurements`, a Comprehensive 3D SR in the image's study, in its own series).

The overlay, the de-identified copy and the SR are blob-store objects in the bucket of the
originals, under their own prefix (:data:`DERIVED`: keys ``xray-derived/<hex>``),
referenced from the result (``overlay``, ``deidentified``, ``sr``:
``{key, sha256, size}``); an object whose job did not commit, or that a job run again
replaced, is referenced by nothing and the orphan sweeper deletes it.

Results are read at ``GET /api/v1/imaging/studies/{id}/results`` by whoever may view
the study's previews (:func:`results`), each read audited like a preview.
"""

from __future__ import annotations

import asyncio
import io
import logging
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from pydicom import dcmread

from healthflow.common import careteam, jobs
from healthflow.common.auth import Principal
from healthflow.common.blobs import XRAY, BlobStore, BlobUse, StoredBlob
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.service import ServiceRuntime
from healthflow.xray import checks, deidentify, events, lungs, measurements, render, store
from healthflow.xray.domain import InstanceNotFound, NotTreating, StudyNotFound
from healthflow.xray.imaging import DEFER_SIZE, DICOM
from healthflow.xray.service import record_access, results_viewer, viewer

_log = logging.getLogger(__name__)
T = TypeVar("T")

QUEUE = "xray-process"
DERIVED = BlobUse("xray-derived", frozenset({"application/dicom", "image/png"}),
                  XRAY.max_bytes)
"""What the worker makes from a stored image: overlays and de-identified copies."""
VIEWED = frozenset({"overlay", "sr"})
"""Derived blobs read by whoever may view the study's previews."""
NAMES = {"overlay": "lung-field overlay", "deidentified": "de-identified copy",
         "sr": "measurement report SR (TID 1500)"}
MADE_WHEN = {"overlay": "only when lung fields were found in a chest image",
             "deidentified": "only for a DICOM file whose header states Burned In "
             "Annotation NO; " + deidentify.NOT_MADE,
             "sr": "only when lung fields were found in a DICOM chest image"}
BURNED_IN = "burned-in-annotation"
NOT_MADE_REASONS = {
    "error": "making it failed (an odd file); the checks and the other outputs stand",
    BURNED_IN: deidentify.NOT_MADE}
"""Why an optional output was not made (a result's ``not_made`` values), shown with it on
the results route so the doctor knows what did not run."""
EXPORT = "export"
"""``accessor_role`` of a de-identified copy's download (``imaging:export_deidentified``)."""


async def enqueue(uow: UnitOfWork, instance_id: str) -> None:
    """Queue the processing of a stored instance, in the storing transaction."""
    await jobs.enqueue(uow.db, QUEUE, {"instance_id": instance_id},
                       key=f"process:{instance_id}", session=uow.session)


@dataclass(frozen=True)
class Analysis:
    checks: dict[str, Any]
    thumbnail: bytes
    overlay: bytes | None
    """The lung-field overlay PNG (:func:`render.lung_overlay`), when boxes were found."""
    overlay_failed: bool = False
    """Drawing the overlay raised (recorded as not made; the checks stand)."""


def _spacing(ds: Any) -> tuple[float, float] | None:
    value = ds.get("ImagerPixelSpacing") or ds.get("PixelSpacing")
    try:
        return (float(value[0]), float(value[1])) if value else None
    except (TypeError, ValueError, IndexError):
        return None


def _read_dicom(path: Path) -> tuple[np.ndarray[Any, Any], checks.Header]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(path, defer_size=DEFER_SIZE)
        pixels = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    side = ds.get("ImageLaterality") or ds.get("Laterality")
    header = checks.Header(
        rows=int(ds.Rows), columns=int(ds.Columns),
        bits_stored=int(ds.get("BitsStored") or 0) or None if pixels.ndim == 2 else None,
        view_position=str(ds.get("ViewPosition") or "") or None,
        body_part=str(ds.get("BodyPartExamined") or "") or None,
        laterality=str(side) if side else None, pixel_spacing_mm=_spacing(ds))
    return pixels, header


def analyse(path: Path, content_type: str, order: Document) -> Analysis:
    """Thumbnail and checks of the stored file at ``path`` (blocking: run in a thread),
    with lung fields (:mod:`.lungs`) and their overlay on a chest image.

    Raises:
        PreviewFailed: the file does not render (then the job is retried, then dead).
    """
    thumbnail = render.preview(path, content_type, side=render.THUMBNAIL_SIDE)
    if content_type == DICOM:
        pixels, header = _read_dicom(path)
    else:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L"))
        header = checks.Header(rows=pixels.shape[0], columns=pixels.shape[1])
    found = checks.run(pixels, header, order)
    preview = render.preview(path, content_type) if order["body_part"] == "CHEST" else None
    if preview is not None:
        with Image.open(io.BytesIO(preview)) as shown:
            grey = np.asarray(shown.convert("L"))
    else:
        grey = np.zeros((1, 1), dtype=np.uint8)
    found["lung_fields"] = lungs.lung_fields(grey, header.columns, order["body_part"])
    boxes = found["lung_fields"]["boxes"]
    if preview is None or not boxes:
        return Analysis(found, thumbnail, None)
    try:
        overlay = render.lung_overlay(preview, boxes, header.columns, checks.LABEL)
    except Exception as exc:  # an optional output: its failure is not the job's
        _not_made_log("overlay", type(exc).__name__)
        return Analysis(found, thumbnail, None, overlay_failed=True)
    return Analysis(found, thumbnail, overlay)


def _ref(blob: StoredBlob | None) -> dict[str, Any] | None:
    return {"key": blob.key, "sha256": blob.sha256, "size": blob.size} if blob else None


Made = dict[str, StoredBlob | None]
NotMade = dict[str, str]
"""Why an optional output was not made, by kind: ``error`` (making it raised; logged
with the exception's class, never an element value), ``burned-in-annotation`` (the
de-identified copy of a DICOM image whose Burned In Annotation is not stated NO):
:data:`NOT_MADE_REASONS`."""


def _not_made_log(kind: str, error: str, instance_id: str | None = None) -> None:
    _log.warning("derived output not made", extra={
        "instance_id": instance_id, "kind": kind, "error": error})


async def _built(kind: str, instance_id: str, not_made: NotMade,
                 build: Callable[..., T | None], *args: Any) -> T | None:
    """``build(*args)`` in a thread: one optional output made from the file. When it
    raises (an odd but accepted file) the failure is recorded in ``not_made`` and
    logged by class, and None returned: it is not the job's failure. Storing what was
    built is outside this, so a blob store outage still fails (and retries) the job."""
    try:
        return await asyncio.to_thread(build, *args)
    except Exception as exc:
        not_made[kind] = "error"
        _not_made_log(kind, type(exc).__name__, instance_id)
        return None


async def _derived(blobs: BlobStore, path: Path, content_type: str, found: Analysis,
                   instance_id: str) -> tuple[Made, NotMade]:
    """Store the overlay and, for a DICOM file, when lung boxes were found, the TID 1500
    measurement report (:mod:`.measurements`) and, without burned-in annotation, a
    de-identified copy (made next to ``path`` on local disk, streamed from there):
    ``{overlay, deidentified, sr}``, and each one whose making failed with its reason
    (:data:`NotMade`). Each is made on its own: one failing leaves the others."""
    made: Made = {"overlay": None, "deidentified": None, "sr": None}
    not_made: NotMade = {"overlay": "error"} if found.overlay_failed else {}
    if found.overlay:
        made["overlay"] = await blobs.put(DERIVED, found.overlay, declared_type="image/png")
    if content_type != DICOM:
        return made, not_made
    sr = await _built("sr", instance_id, not_made, measurements.measurement_report, path,
                      found.checks, instance_id)
    if sr is not None:
        made["sr"] = await blobs.put(DERIVED, sr, declared_type=DICOM)
    copy = path.with_name("deidentified")
    copied = await _built("deidentified", instance_id, not_made,
                          deidentify.deidentified_copy, path, copy)
    if copied:
        with copy.open("rb") as file:
            made["deidentified"] = await blobs.put(DERIVED, file, declared_type=DICOM)
    elif copied is False:  # burned-in annotation possible: no copy is made
        not_made["deidentified"] = BURNED_IN
    return made, not_made


@dataclass(frozen=True)
class Processed:
    """What :func:`prepare` found and made for one instance, for :func:`process` to store."""

    instance: Document
    study: Document
    order: Document
    found: Analysis
    made: Made
    not_made: NotMade


async def prepare(runtime: ServiceRuntime, blobs: BlobStore, job: jobs.Job
                  ) -> Processed | None:
    """The job's long part, outside any transaction (the worker's ``prepare``): read
    the instance, its study and order in a short transaction, download the file,
    analyse it and store what is derived from it. None when the instance or order is
    gone (none is deleted today: the job then ends quietly).

    Raises:
        PreviewFailed: the file does not render (the job is retried, then dead).
    """

    async def read(uow: UnitOfWork) -> tuple[Document, Document, Document] | None:
        instance = await store.get_instance_by_id(uow, job.payload["instance_id"])
        study = instance and await store.get_study(uow, instance["study_id"])
        order = study and await store.get_order(uow, study["order_id"])
        return (instance, study, order) if instance and study and order else None

    got = await runtime.transact(read, actor=f"system:{runtime.name}")
    if got is None:
        return None
    instance, study, order = got
    with tempfile.TemporaryDirectory(prefix="xray-") as tmp:
        path = Path(tmp) / "image"
        with path.open("wb") as file:
            async for chunk in blobs.stream(instance["blob"]["key"]):
                await asyncio.to_thread(file.write, chunk)
        found = await asyncio.to_thread(analyse, path, instance["content_type"], order)
        made, not_made = await _derived(blobs, path, instance["content_type"], found,
                                        instance["_id"])
    return Processed(instance, study, order, found, made, not_made)


async def process(uow: UnitOfWork, job: jobs.Job) -> None:
    """The job's transaction (the worker's handler, after :func:`prepare`): store the
    results ``job.prepared`` carries and publish ``xray.processed``. Run again (a retry
    after a lost lease), it replaces the results but publishes nothing:
    ``xray.processed`` goes out once per instance, in the transaction that first
    stores its results."""
    done: Processed | None = job.prepared
    if done is None:
        return
    instance, study, order, found = done.instance, done.study, done.order, done.found
    now = utcnow()
    first = await store.put_result(uow, {
        "_id": instance["_id"], "study_id": study["_id"], "patient_id": order["patient_id"],
        "order_id": order["_id"], "label": checks.LABEL, "checks": found.checks,
        "thumbnail": found.thumbnail, **{kind: _ref(blob) for kind, blob in done.made.items()},
        "not_made": done.not_made, "processed_at": now})
    if not first:
        return
    uow.publish(events.XrayProcessed(
        study_id=study["_id"], instance_id=instance["_id"], order_id=order["_id"],
        patient_id=order["patient_id"],
        **{name: found.checks[name]["code"] for name in
           ("exposure", "view", "body_part", "laterality", "resolution")},
        processed_at=now), subject=f"imaging-study/{study['_id']}",
        patientid=order["patient_id"])


async def results(runtime: ServiceRuntime, principal: Principal, study_id: str
                  ) -> list[Document]:
    """The automated results of a study's images (those processed so far), for whoever
    may view its previews (the patient once the report is signed:
    :func:`.service.results_viewer`); a treating doctor's read publishes
    ``xray.accessed`` (scope ``results``).

    Raises:
        StudyNotFound / ReportNotFound (404), NotTreating (403).
    """

    async def read(uow: UnitOfWork) -> list[Document]:
        study = await store.get_study(uow, study_id)
        if study is None:
            raise StudyNotFound(f"no imaging study {study_id}")
        await results_viewer(uow, principal, study["patient_id"], "results", study_id)
        return await store.results_of_study(uow, study_id)

    return await runtime.transact(read, actor=principal.actor)


async def thumbnail(runtime: ServiceRuntime, principal: Principal, study_id: str,
                    instance_id: str) -> bytes:
    """The PNG thumbnail of a processed image. Raises StudyNotFound / InstanceNotFound
    (404; also while not yet processed), NotTreating (403)."""

    async def read(uow: UnitOfWork) -> bytes:
        study = await store.get_study(uow, study_id)
        if study is None:
            raise StudyNotFound(f"no imaging study {study_id}")
        await viewer(uow, principal, study["patient_id"], "thumbnail", study_id)
        png = await store.thumbnail_of(uow, study_id, instance_id)
        if png is None:
            raise InstanceNotFound(f"no processed image {instance_id} in study {study_id}")
        return png

    return await runtime.transact(read, actor=principal.actor)


async def derived_blob(runtime: ServiceRuntime, principal: Principal, study_id: str,
                       instance_id: str, kind: str) -> dict[str, Any]:
    """``{key, sha256, size}`` of an image's ``overlay`` or ``sr`` (for whoever may view
    its preview, the patient once the report is signed; ``xray.accessed`` scope
    ``overlay`` / ``sr`` for a doctor) or ``deidentified``
    copy (the route demands ``imaging:export_deidentified``, scoped like the images: the
    doctor must be in a care relationship with the patient; every download is recorded
    as ``xray.accessed`` scope ``deidentified``, role ``export``).

    Raises:
        StudyNotFound / InstanceNotFound (404: also while not processed, or when the
        image has none: no lung boxes found, not DICOM, burned-in text possible),
        ReportNotFound (404: the patient, before the report is signed), NotTreating (403).
    """

    async def read(uow: UnitOfWork) -> dict[str, Any]:
        study = await store.get_study(uow, study_id)
        if study is None:
            raise StudyNotFound(f"no imaging study {study_id}")
        if kind in VIEWED:
            await results_viewer(uow, principal, study["patient_id"], kind, study_id)
        elif not await careteam.treats(uow, principal.subject, study["patient_id"],
                                       utcnow()):
            raise NotTreating("you may only export the images of your own patients")
        else:
            record_access(uow, principal, study["patient_id"], EXPORT, kind, study_id)
        ref = await store.derived_of(uow, study_id, instance_id, kind)
        if ref is None:
            raise InstanceNotFound(f"image {instance_id} of study {study_id} has no "
                                   f"{NAMES[kind]} (not processed yet, or none is made "
                                   f"for it: {MADE_WHEN[kind]})")
        return ref

    return await runtime.transact(read, actor=principal.actor)
