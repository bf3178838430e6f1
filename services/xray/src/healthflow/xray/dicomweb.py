"""DICOMweb read side for viewers (OHIF and others): QIDO-RS search and WADO-RS retrieve
of stored DICOM instances (DICOM PS3.18 §10.6 Search, §10.4 Retrieve).

* QIDO-RS answers ``application/dicom+json`` (PS3.18 Annex F): a list of objects keyed
  by 8-hex-digit tags, each ``{"vr": …, "Value": […]}``; IS values are JSON numbers
  (F.2.3). Study level: Study Instance UID, Patient ID, Accession Number, Modalities In
  Study, Study Date (of storage), numbers of series and instances, Retrieve URL.
  Series level: Series Instance UID, Modality, number of instances. Instance level:
  SOP Class and Instance UIDs, Instance Number, Rows, Columns.
* WADO-RS answers ``multipart/related; type="application/dicom"`` (PS3.18 §8.7.1.1):
  each stored file, as it was received, one part each, streamed from the blob store.
* WADO-RS metadata (:mod:`.wado_metadata`) and frames' pixel data (:mod:`.wado_frames`);
  the routes are :mod:`.dicomweb_api`'s.
* WADO-RS rendered frames (PS3.18 §9.5, ``…/frames/{n}/rendered``): one frame as
  ``image/jpeg`` (the default) or ``image/png`` (by ``Accept``), windowed like the
  preview, at its own size up to 4096 px on its long side; ``window`` and
  ``viewport`` query parameters (§8.3.5.1.4, §8.3.5.1.3: :func:`voi_window`,
  :func:`viewport_size`) choose the VOI window, and crop and scale it to fit. The
  rendered instance (§9.5, ``…/instances/{sop}/rendered``) is its one frame.

Only DICOM objects take part: the stored DICOM images and the TID 1500 measurement
report the processing worker made of an image (:mod:`.measurements`: modality SR, in
its own series of the image's study, :func:`report_instance`; it has no frames to
render). Photographs of films (PNG/JPEG) are not DICOM objects.
Access is the images' (:func:`healthflow.xray.service.viewer`): the patient their own
studies, a doctor those of patients they treat (``xray.accessed``, scope ``dicomweb``);
another patient's study is answered 404, like a missing one.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header, parse_options_header

from healthflow.common.auth import Principal
from healthflow.common.blobs import BlobStore
from healthflow.common.errors import BadRequest
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document
from healthflow.common.permissions import Permission
from healthflow.common.problems import Problem
from healthflow.common.service import ServiceRuntime
from healthflow.xray import imaging, measurements, render, store
from healthflow.xray.checks import LABEL
from healthflow.xray.domain import FrameNotFound, StudyNotFound, Viewer
from healthflow.xray.service import viewer

SCOPE = "dicomweb"
Json = dict[str, Any]


def attribute(vr: str, *values: Any) -> Json:
    """One attribute in the DICOM JSON Model (PS3.18 F.2.2): no ``Value`` when empty."""
    present = [v for v in values if v is not None and v != ""]
    return {"vr": vr, "Value": present} if present else {"vr": vr}


def study_json(study: Document, instances: list[Document], accession: str | None,
               retrieve_url: str) -> Json:
    """The study-level QIDO-RS attributes of ``study`` (PS3.18 Table 10.6.3-3)."""
    return {
        "00080020": attribute("DA", study["created_at"].strftime("%Y%m%d")),
        "00080050": attribute("SH", accession),
        "00080061": attribute("CS", *sorted({i["modality"] for i in instances})),
        "00081190": attribute("UR", retrieve_url),
        "00100020": attribute("LO", study["patient_id"]),
        "0020000D": attribute("UI", study["study_uid"]),
        "00201206": attribute("IS", len({i["series_uid"] for i in instances})),
        "00201208": attribute("IS", len(instances)),
    }


def series_json(study_uid: str, series_uid: str, instances: list[Document]) -> Json:
    """The series-level attributes (PS3.18 Table 10.6.3-4)."""
    return {
        "00080060": attribute("CS", instances[0]["modality"]),
        "0020000D": attribute("UI", study_uid),
        "0020000E": attribute("UI", series_uid),
        "00201209": attribute("IS", len(instances)),
    }


def instance_json(study_uid: str, instance: Document) -> Json:
    """The instance-level attributes (PS3.18 Table 10.6.3-5)."""
    return {
        "00080016": attribute("UI", instance["sop_class_uid"]),
        "00080018": attribute("UI", instance["sop_instance_uid"]),
        "0020000D": attribute("UI", study_uid),
        "0020000E": attribute("UI", instance["series_uid"]),
        "00200013": attribute("IS", instance["number"]),
    } | ({"00280010": attribute("US", instance["image"]["rows"]),
          "00280011": attribute("US", instance["image"]["columns"])}
         if instance["image"].get("rows") else {})


@dataclass(frozen=True)
class StudyInstances:
    """A study the caller may view, its DICOM instances (by instance number) and its
    order's Accession Number."""

    study: Document
    instances: list[Document]
    accession_number: str | None = None


def report_instance(result: Document) -> Document:
    """The TID 1500 SR of a processed image (its ``results`` document with ``sr``) as
    an instance document like the stored ones: modality SR, the UIDs of
    :func:`measurements.report_uids`, the SR's blob, stored when processed, titled
    with the machine-generated label, no rows or columns."""
    series_uid, sop_uid = measurements.report_uids(result["_id"])
    return {"_id": f"{result['_id']}:sr", "study_id": result["study_id"],
            "series_uid": series_uid, "sop_instance_uid": sop_uid,
            "sop_class_uid": measurements.SOP_CLASS_UID, "modality": "SR",
            "number": measurements.INSTANCE_NUMBER, "content_type": imaging.DICOM,
            "blob": result["sr"], "uploaded_at": result["processed_at"],
            "title": f"Measurement report (TID 1500): {LABEL}", "image": {
                "rows": None, "columns": None,
                "transfer_syntax": measurements.TRANSFER_SYNTAX_UID}}


async def visible_reports(uow: UnitOfWork, study_ids: list[str], role: Viewer
                          ) -> list[Document]:
    """The TID 1500 SRs of the studies as instance documents (:func:`report_instance`):
    for the patient only those of studies whose report is signed, as for the SR's own
    route (:func:`.service.results_viewer`): a machine's suggestion never reaches them
    before their doctor's reading; doctors see them all along."""
    reports = await store.measurement_reports_of(uow, study_ids)
    if role is Viewer.PATIENT:
        signed = await store.signed_studies(uow, study_ids)
        reports = [r for r in reports if r["study_id"] in signed]
    return [report_instance(r) for r in reports]


async def _dicom(uow: UnitOfWork, study_ids: list[str], instances: list[Document],
                 role: Viewer) -> list[Document]:
    """The DICOM ones of the studies' stored ``instances``, then their SRs
    (:func:`visible_reports`)."""
    return [i for i in instances if i["content_type"] == imaging.DICOM] + \
        await visible_reports(uow, study_ids, role)


async def search_studies(runtime: ServiceRuntime, principal: Principal,
                         patient_id: str | None, study_uid: str | None
                         ) -> list[StudyInstances]:
    """QIDO-RS ``/studies``: the studies of one patient (the ``PatientID`` match key;
    a patient may leave it out for their own), newest first, optionally the one of
    ``study_uid``. Studies without DICOM instances are left out. A patient's search is
    always restricted to their own studies: another patient's ``PatientID`` matches
    nothing (an empty list, answered 200 ``[]``: PS3.18 §8.3.4.4.1 as corrected by
    CP-2473), never a 404 that would tell whether that patient has studies.

    Raises:
        BadRequest (400): a doctor without ``PatientID``; NotTreating (403) for a doctor
        who does not treat the patient, as for any view.
    """
    if patient_id is None:
        if not principal.has(Permission.IMAGING_READ_OWN):
            raise BadRequest("give the PatientID match key: a doctor searches the studies "
                             "of one patient they treat")
        patient_id = principal.subject
    if patient_id != principal.subject and not principal.has(Permission.IMAGING_READ_TREATED):
        return []  # a patient's own studies only: nothing else matches

    async def read(uow: UnitOfWork) -> list[StudyInstances]:
        role = await viewer(uow, principal, patient_id, SCOPE)
        studies = [s for s in await store.studies_of_patient(uow, patient_id)
                   if study_uid is None or s["study_uid"] == study_uid]
        ids = [s["_id"] for s in studies]
        instances = await _dicom(uow, ids, await store.instances_of(uow, ids), role)
        orders = await store.orders_by_id(uow, [s["order_id"] for s in studies])
        found = [StudyInstances(s, [i for i in instances if i["study_id"] == s["_id"]],
                                orders.get(s["order_id"], {}).get("accession_number"))
                 for s in studies]
        return [f for f in found if f.instances]

    return await runtime.transact(read, actor=principal.actor)


async def study_instances(runtime: ServiceRuntime, principal: Principal, study_uid: str,
                          series_uid: str | None = None, sop_uid: str | None = None
                          ) -> StudyInstances:
    """The DICOM instances of the study ``study_uid``, optionally of one series or one
    SOP instance, for QIDO-RS series/instance searches and WADO-RS.

    Raises:
        StudyNotFound (404): no such study (or another patient's, or nothing matches);
        NotTreating (403).
    """

    async def read(uow: UnitOfWork) -> StudyInstances:
        study = await store.study_by_uid(uow, study_uid)
        if study is None:
            raise StudyNotFound("no imaging study with this Study Instance UID")
        role = await viewer(uow, principal, study["patient_id"], SCOPE, study["_id"])
        stored = await store.instances_of(uow, [study["_id"]])
        instances = [i for i in await _dicom(uow, [study["_id"]], stored, role)
                     if series_uid in (None, i["series_uid"])
                     and sop_uid in (None, i["sop_instance_uid"])]
        if not instances:
            raise StudyNotFound("no DICOM instance matches in this study")
        return StudyInstances(study, instances)

    return await runtime.transact(read, actor=principal.actor)


def series_of(found: StudyInstances, modality: str | None = None) -> list[Json]:
    """Series-level QIDO-RS answer of a study, in order of their first instance; only
    those of ``modality`` (the ``Modality`` match key, single value matching, PS3.18
    §8.3.4.6.1) when given."""
    by_series: dict[str, list[Document]] = {}
    for instance in found.instances:
        if modality not in (None, instance["modality"]):
            continue
        by_series.setdefault(instance["series_uid"], []).append(instance)
    return [series_json(found.study["study_uid"], uid, docs)
            for uid, docs in by_series.items()]


@dataclass(frozen=True)
class Multipart:
    """A WADO-RS answer: its ``Content-Type`` and its body, streamed."""

    content_type: str
    body: AsyncIterator[bytes]


def multipart(blobs: BlobStore, instances: list[Document]) -> Multipart:
    """``instances``' stored files as ``multipart/related; type="application/dicom"``
    (RFC 2387; PS3.18 §8.7.1.1), each part streamed from the blob store."""
    boundary = secrets.token_hex(16)

    async def body() -> AsyncIterator[bytes]:
        for instance in instances:
            yield (f"--{boundary}\r\nContent-Type: {imaging.DICOM}\r\n"
                   f"Content-Length: {instance['blob']['size']}\r\n\r\n").encode()
            async for chunk in blobs.stream(instance["blob"]["key"]):
                yield chunk
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    return Multipart(f'multipart/related; type="{imaging.DICOM}"; boundary={boundary}',
                     body())


async def rendered_frame(runtime: ServiceRuntime, blobs: BlobStore, principal: Principal,
                         study_uid: str, series_uid: str, sop_uid: str, frame: int,
                         media_type: str, chosen: tuple[float, float, str] | None = None,
                         viewport: render.Viewport | None = None) -> bytes:
    """Frame ``frame`` (1-based) of one instance, rendered (:func:`render.rendered_frame`)
    as ``media_type``, in the ``chosen`` window (:func:`voi_window`) and, when a
    ``viewport`` is given (:func:`viewport_size`), its source region fitted to its box;
    the file is copied to local disk in chunks and decoded in a thread.

    Raises:
        StudyNotFound (404): no such instance (or another patient's); FrameNotFound (404):
        the instance has fewer frames (an SR has none); BadRequest (400): the viewport's
        region is not inside the image; NotTreating (403); PreviewFailed (500).
    """
    found = await study_instances(runtime, principal, study_uid, series_uid, sop_uid)
    [instance] = found.instances
    if instance["modality"] == "SR":
        raise FrameNotFound("a structured report (modality SR) has no frames to render")
    with tempfile.TemporaryDirectory(prefix="xray-") as tmp:
        path = Path(tmp) / "image"
        with path.open("wb") as file:
            async for chunk in blobs.stream(instance["blob"]["key"]):
                await asyncio.to_thread(file.write, chunk)
        shape = await asyncio.to_thread(render.geometry, path)
        if frame > shape.frames:
            raise FrameNotFound(f"the instance has {shape.frames} frame(s); there is no "
                                f"frame {frame}")
        if viewport is not None and viewport.region(shape.rows, shape.columns) is None:
            raise BadRequest(f"the viewport's source region is not inside the image "
                             f"({shape.columns} columns × {shape.rows} rows)",
                             parameter="viewport")
        return await asyncio.to_thread(render.rendered_frame, path, frame, media_type,
                                       chosen, viewport)


class NotAcceptable(Problem):
    """None of the media types the client accepts is served (406, RFC 9110 §15.5.7)."""

    status, title, slug = 406, "Not Acceptable", "not-acceptable"


def frame_number(frames: str) -> int:
    """The frame of a WADO-RS rendered-frame path (PS3.18 §9.5.1.1: ``{frames}``), 1-based.
    One frame is rendered at a time.

    Raises:
        BadRequest (400): not a positive integer, or a list of frames.
    """
    if not (frames.isascii() and frames.isdecimal()) or int(frames) < 1:
        raise BadRequest("render one frame at a time: its number, 1 or more "
                         f"(got {frames[:20]!r})")
    return int(frames)


def voi_window(window: str | None) -> tuple[float, float, str] | None:
    """A rendered frame's ``window`` query parameter (PS3.18 §8.3.5.1.4:
    ``center,width,function``, function one of :data:`render.VOI_FUNCTIONS`; the
    center and width in the Modality LUT's output units): (center, width, function),
    or None when absent.

    Raises:
        BadRequest (400, ``parameter`` ``window``): not three values, not finite numbers,
        an unknown function, or a width below 1 (``linear``) or not above 0 (the others).
    """
    if window is None:
        return None
    parts = [p.strip() for p in window.split(",")]
    try:
        center, width = float(parts[0]), float(parts[1])
        ok = len(parts) == 3 and math.isfinite(center) and math.isfinite(width)
    except (ValueError, IndexError):
        ok = False
    if not ok or parts[2] not in render.VOI_FUNCTIONS or \
            not (width >= 1 if parts[2] == "linear" else width > 0):
        raise BadRequest("window is center,width,function with finite numbers, function "
                         f"one of {', '.join(render.VOI_FUNCTIONS)} and a width ≥ 1 "
                         f"(linear) or > 0 (got {window[:40]!r})", parameter="window")
    return center, width, parts[2]


def _pixels(value: str, *, negative: bool = False) -> int | None:
    """An integer of a ``viewport`` (None when empty); raises ValueError otherwise."""
    if value == "":
        return None
    digits = value[1:] if negative and value.startswith("-") else value
    if not (digits.isascii() and digits.isdecimal()):
        raise ValueError(value)
    return int(value)


def viewport_size(viewport: str | None) -> render.Viewport | None:
    """A rendered frame's ``viewport`` query parameter (PS3.18 §8.3.5.1.3:
    ``vw,vh[,sx,sy,sw,sh]``): the viewport's width and height in pixels (1 to
    :data:`render.RENDERED_MAX_SIDE`), then optionally the source region — its top-left
    corner (``sx``, ``sy`` ≥ 0, in image pixels, empty for 0) and size (``sw``, ``sh``
    ≥ 1, empty for "to the image's edge"); None when absent. Whether the region lies
    inside the image is checked once the image is read (:func:`rendered_frame`).

    Raises:
        BadRequest (400, ``parameter`` ``viewport``): not 2 or 6 values, a value not an
        integer, out of its range, or a negative ``sw``/``sh`` (flipping is not served).
    """
    if viewport is None:
        return None
    parts = [p.strip() for p in viewport.split(",")]
    top = render.RENDERED_MAX_SIDE
    try:
        width, height, *region = (_pixels(p, negative=i >= 2) for i, p in enumerate(parts))
        if width is None or height is None or not (1 <= width <= top and 1 <= height <= top) \
                or len(region) not in (0, 4) or any(v is not None and v < 0 for v in region[:2]) \
                or any(v is not None and v < 1 for v in region[2:]):
            raise ValueError(viewport)
    except ValueError:
        raise BadRequest(f"viewport is vw,vh[,sx,sy,sw,sh]: the viewport's width and "
                         f"height in pixels, each 1 to {top}, then optionally the source "
                         "region's top-left column and row (≥ 0) and its width and height "
                         f"(≥ 1; flipping is not served) in image pixels (got "
                         f"{viewport[:40]!r})", parameter="viewport") from None
    x, y, region_width, region_height = region or (None, None, None, None)
    return render.Viewport(width, height, x or 0, y or 0, region_width, region_height)


def rendered_type(accept: str | None, offered: tuple[str, ...]) -> str:
    """The media type of a rendered frame for the ``Accept`` header (RFC 9110 §12.5.1,
    parsed by Werkzeug's ``MIMEAccept``: quality values and wildcards): ``offered[0]``
    (the default) when there is none.

    Raises:
        NotAcceptable (406): nothing offered is acceptable.
    """
    if not accept or not accept.strip():
        return offered[0]
    best = parse_accept_header(accept, MIMEAccept).best_match(list(offered))
    if best is None:
        raise NotAcceptable(f"a rendered frame is served as {' or '.join(offered)}",
                            offered=list(offered))
    return str(best)


WADO_MEDIA_TYPE = f'multipart/related; type="{imaging.DICOM}"'


def _serves(entry: str, syntaxes: set[str]) -> bool:
    """Whether one ``Accept`` media range (parameters included) takes the stored files
    as ``multipart/related; type="application/dicom"`` in the ``syntaxes`` they have."""
    media, params = parse_options_header(entry)
    media = media.lower()
    if media in ("*/*", "multipart/*"):
        return True
    if media != "multipart/related" or params.get("type", imaging.DICOM).lower() not in (
            imaging.DICOM, "application/*", "*/*"):
        return False
    wanted = params.get("transfer-syntax", "*")
    return wanted == "*" or syntaxes <= {wanted}


def check_retrievable(accept: str | None, instances: list[Document]) -> None:
    """A WADO-RS instance retrieve (PS3.18 §8.7.3, §10.4.1.1) serves the stored files
    as they were received: ``multipart/related; type="application/dicom"`` in their
    own transfer syntax (no transcoding). ``Accept`` must take that (RFC 9110 §12.5.1;
    absent, ``*/*`` and ``multipart/*`` do; a ``transfer-syntax`` parameter must be
    ``*`` or the stored one); media ranges with ``q=0`` are refusals.

    Raises:
        NotAcceptable (406): e.g. ``application/dicom+json`` (that is the metadata
        resource), ``multipart/related; type="image/jpeg"``, or another transfer syntax.
    """
    if not accept or not accept.strip():
        return
    syntaxes = {str(i["image"].get("transfer_syntax")) for i in instances}
    ranges = parse_accept_header(accept, MIMEAccept)
    if not any(quality > 0 and _serves(entry, syntaxes) for entry, quality in ranges):
        raise NotAcceptable(f"the stored files are served as {WADO_MEDIA_TYPE} in the "
                            "transfer syntax they were stored in",
                            offered=[WADO_MEDIA_TYPE], transfer_syntaxes=sorted(syntaxes))
