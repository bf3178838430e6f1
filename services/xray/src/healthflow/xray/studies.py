"""Use cases of imaging studies (FHIR ``ImagingStudy``): storing an uploaded image of an
order, listing a patient's studies, previews and downloads.

An upload streams from the request into the blob store (``BlobStore.staged``: memory
bounded by the S3 part size) and, on the way, into a temporary file on local disk
that pydicom or Pillow then checks (:mod:`.imaging`, in a worker thread). Only a
file that passes every check and whose document commits stays stored: any refusal
inside the ``staged`` block deletes the object again.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from pydicom.uid import generate_uid
from pymongo.errors import DuplicateKeyError

from healthflow.common.auth import Principal
from healthflow.common.blobs import XRAY, BlobStore, BlobTypeRefused, StoredBlob
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.service import ServiceRuntime
from healthflow.xray import (
    dicomweb,
    events,
    fhir,
    imaging,
    processing,
    render,
    store,
    wado_metadata,
)
from healthflow.xray.domain import (
    InstanceNotFound,
    InvalidImage,
    OrderNotFound,
    StudyNotFound,
    UidNotAccepted,
    check_identity,
    check_new_instance,
    check_open,
    check_study_order,
)
from healthflow.xray.service import viewer
from healthflow.xray.settings import Settings


@dataclass(frozen=True)
class Upload:
    """A stored image: its study, the new instance and every instance of the study;
    ``resent`` when the instance was stored already, the same file (nothing new stored)."""

    study: Document
    instance: Document
    instances: list[Document]
    resent: bool = False


class _Resent(Exception):
    """Leaves the staging block so that the copy just staged is deleted."""

    def __init__(self, upload: Upload) -> None:
        super().__init__("resent")
        self.upload = upload


async def _tee(body: AsyncIterable[bytes], spool: IO[bytes]) -> AsyncIterator[bytes]:
    """``body``'s chunks, each also written to ``spool`` (local disk, in a worker thread)."""
    async for chunk in body:
        await asyncio.to_thread(spool.write, chunk)
        yield chunk


def _uids(order_id: str, facts: imaging.ImageFacts) -> tuple[str, str, str]:
    """(study, series, SOP instance) UIDs: the DICOM file's own, or for a photograph
    one study and series per order (derived from its id) and a fresh instance UID
    (pydicom's UID root, PS3.5 §B.2)."""
    if facts.study_uid and facts.series_uid and facts.sop_instance_uid:
        return facts.study_uid, facts.series_uid, facts.sop_instance_uid
    return (generate_uid(entropy_srcs=[order_id, "study"]),
            generate_uid(entropy_srcs=[order_id, "photo-series"]), generate_uid())


async def upload(runtime: ServiceRuntime, blobs: BlobStore, principal: Principal,
                 order_id: str, body: AsyncIterable[bytes], declared_type: str | None
                 ) -> Upload:
    """Store one image of ``order_id``: DICOM Part 10, or a PNG/JPEG photograph of a film.

    ``declared_type`` is the request's ``Content-Type``; it must name the type the
    bytes are. The order stays ``active`` until its report is signed; ``xray.uploaded``.

    Raises:
        OrderNotFound (404); OrderClosed (409: completed or revoked); InvalidImage
        (422: unreadable, missing-uid, unsupported-modality, transfer-syntax,
        pixel-data, type-mismatch, not-an-image);
        PatientMismatch / AccessionMismatch (422); StudyOfAnotherOrder /
        DuplicateInstance (409: another file under a SOP Instance UID stored for this
        patient; the same file again is stored once and answered ``resent``);
        UidNotAccepted (422: stored for another patient, not confirmed as such);
        BlobTooLarge (413). Nothing stays stored on any of them.
    """
    order = await runtime.transact(lambda uow: store.get_order(uow, order_id))
    if order is None:
        raise OrderNotFound(f"no X-ray order {order_id}")
    return await _ingest(runtime, blobs, order, body, declared_type, principal.subject)


async def receive(runtime: ServiceRuntime, blobs: BlobStore, body: AsyncIterable[bytes],
                  accession_number: str, uploaded_by: str) -> Upload:
    """Store one DICOM Part 10 instance a modality or viewer sent without naming an order
    (C-STORE, :mod:`.dicom_scp`; STOW-RS, :mod:`.stow`), checked exactly as an upload.
    Its order is the one of ``accession_number`` (0008,0050), the only link such a
    sender gives; ``uploaded_by`` is ``dicom:<calling AE title>`` or the user id.

    Raises:
        OrderNotFound: no order has this accession number (or it is empty); then
        everything :func:`upload` raises.
    """
    order = await runtime.transact(
        lambda uow: store.order_by_accession(uow, accession_number)) \
        if accession_number else None
    if order is None:
        raise OrderNotFound("no X-ray order has the dataset's Accession Number")
    return await _ingest(runtime, blobs, order, body, imaging.DICOM, uploaded_by)


def max_pixels(runtime: ServiceRuntime) -> int:
    """The configured pixel limit (``XRAY_MAX_IMAGE_PIXELS``) of the runtime's settings."""
    settings = runtime.settings
    return settings.max_image_pixels if isinstance(settings, Settings) else imaging.MAX_PIXELS


async def _ingest(runtime: ServiceRuntime, blobs: BlobStore, order: Document,
                  body: AsyncIterable[bytes], declared_type: str | None, uploaded_by: str
                  ) -> Upload:
    """Stream ``body`` into the blob store and a spool file, check it, store it."""
    check_open(order)  # before reading the body; again when storing
    with tempfile.TemporaryDirectory(prefix="xray-") as tmp:
        path = Path(tmp) / "upload"
        with path.open("wb") as spool:
            try:
                async with blobs.staged(XRAY, _tee(body, spool),
                                        declared_type=declared_type) as blob:
                    spool.close()
                    facts = await asyncio.to_thread(imaging.inspect, path, blob.content_type,
                                                    max_pixels(runtime))
                    header = await asyncio.to_thread(wado_metadata.header_json, path) \
                        if blob.content_type == imaging.DICOM else None
                    stored = await runtime.transact(
                        lambda uow: _store(uow, uploaded_by, order["_id"], blob, facts,
                                           header), actor=uploaded_by)
                    if stored.resent:
                        raise _Resent(stored)
                    return stored
            except _Resent as again:
                return again.upload
            except BlobTypeRefused as exc:
                mismatch = exc.extensions.get("declared_type") is not None and \
                    exc.extensions.get("detected_type") is not None
                raise InvalidImage(exc.detail, problem="type-mismatch" if mismatch
                                   else "not-an-image", **exc.extensions) from exc


async def _study_for(uow: UnitOfWork, order: Document, study_uid: str, modality: str,
                     now: datetime) -> Document:
    """The study of ``study_uid`` (created for ``order`` if new) with the number of the
    instance being stored in ``last_number``. Raises StudyOfAnotherOrder (409) or
    UidNotAccepted (422; the transaction, and so the number taken, is rolled back)."""
    study = await store.number_in_study(uow, study_uid, {
        "_id": str(uuid.uuid4()), "order_id": order["_id"],
        "encounter_id": order["encounter_id"], "patient_id": order["patient_id"],
        "created_at": now}, modality, now)
    check_study_order(study, order)
    return study


async def _store(uow: UnitOfWork, uploaded_by: str, order_id: str, blob: StoredBlob,
                 facts: imaging.ImageFacts, header: str | None = None) -> Upload:
    """Store the checked file's instance (and ``header``, its WADO-RS metadata, for a
    DICOM file: :func:`.wado_metadata.header_json`), enqueue its processing,
    ``xray.uploaded``."""
    order = await store.get_order(uow, order_id)
    if order is None:
        raise OrderNotFound(f"no X-ray order {order_id}")
    check_open(order)
    if facts.patient_id is not None:
        check_identity(order, facts.patient_id, facts.accession_number)
    study_uid, series_uid, sop_uid = _uids(order_id, facts)
    earlier = await store.instance_by_sop_uid(uow, sop_uid)
    if check_new_instance(earlier, order, blob.sha256) and earlier is not None:
        study = await store.get_study(uow, earlier["study_id"])
        if study is not None:
            return Upload(study, earlier, await store.instances_of(uow, [study["_id"]]),
                          resent=True)
    now = utcnow()
    study = await _study_for(uow, order, study_uid, facts.modality, now)
    instance: Document = {
        "_id": str(uuid.uuid4()), "study_id": study["_id"], "patient_id": order["patient_id"],
        "series_uid": series_uid, "sop_instance_uid": sop_uid,
        "sop_class_uid": facts.sop_class_uid, "modality": facts.modality,
        "number": study["last_number"],
        "content_type": blob.content_type,
        "blob": {"key": blob.key, "sha256": blob.sha256, "size": blob.size},
        "image": {"rows": facts.rows, "columns": facts.columns,
                  "photometric": facts.photometric, "transfer_syntax": facts.transfer_syntax,
                  "window": list(facts.window) if facts.window else None,
                  "body_part": facts.body_part, "view_position": facts.view_position},
        "uploaded_by": uploaded_by, "uploaded_at": now}
    try:
        await store.insert_instance(uow, instance)
    except DuplicateKeyError:  # stored since the look above (a concurrent upload): whose
        raise UidNotAccepted from None  # is not known here, so nothing is confirmed
    if header is not None:
        await store.insert_header(uow, instance["_id"], header, now)
    await processing.enqueue(uow, instance["_id"])
    uow.publish(events.XrayUploaded(
        study_id=study["_id"], instance_id=instance["_id"], order_id=order_id,
        encounter_id=order["encounter_id"], patient_id=order["patient_id"],
        study_instance_uid=study_uid, sop_instance_uid=sop_uid, modality=facts.modality,
        content_type=blob.content_type, sha256=blob.sha256, size=blob.size,
        uploaded_by=uploaded_by, uploaded_at=now),
        subject=f"imaging-study/{study['_id']}", patientid=order["patient_id"])
    return Upload(study, instance, await store.instances_of(uow, [study["_id"]]))


# ----------------------------------------------------------------------------- viewing


@dataclass(frozen=True)
class StudyView:
    study: Document
    instances: list[Document]


async def list_studies(runtime: ServiceRuntime, principal: Principal, patient_id: str
                       ) -> list[StudyView]:
    """The patient's studies with their instances, newest first.

    Raises:
        StudyNotFound (404: a patient asking for another's), NotTreating (403).
    """

    async def read(uow: UnitOfWork) -> list[StudyView]:
        await viewer(uow, principal, patient_id, "studies")
        studies = await store.studies_of_patient(uow, patient_id)
        instances = await store.instances_of(uow, [s["_id"] for s in studies])
        return [StudyView(s, [i for i in instances if i["study_id"] == s["_id"]])
                for s in studies]

    return await runtime.transact(read, actor=principal.actor)


async def read_study(runtime: ServiceRuntime, principal: Principal, study_id: str
                     ) -> StudyView:
    """One study with its instances. Raises StudyNotFound (404), NotTreating (403)."""

    async def read(uow: UnitOfWork) -> StudyView:
        study = await store.get_study(uow, study_id)
        if study is None:
            raise StudyNotFound(f"no imaging study {study_id}")
        await viewer(uow, principal, study["patient_id"], "study", study_id)
        return StudyView(study, await store.instances_of(uow, [study_id]))

    return await runtime.transact(read, actor=principal.actor)


async def study_fhir(runtime: ServiceRuntime, principal: Principal, study_id: str,
                     dicomweb_url: str) -> dict[str, Any]:
    """The study as a FHIR R4 ``ImagingStudy`` (:func:`.fhir.imaging_study`, with the
    TID 1500 SRs DICOMweb lists: to the patient only once the study's report is signed,
    :func:`.dicomweb.visible_reports`; ``dicomweb_url`` the public DICOMweb base), for
    its viewers (``xray.accessed`` scope ``fhir`` for a doctor). Raises StudyNotFound
    (404), NotTreating (403)."""

    async def read(uow: UnitOfWork) -> dict[str, Any]:
        study = await store.get_study(uow, study_id)
        if study is None:
            raise StudyNotFound(f"no imaging study {study_id}")
        role = await viewer(uow, principal, study["patient_id"], "fhir", study_id)
        order = await store.get_order(uow, study["order_id"])
        if order is None:  # a study is made for an order, and orders are never deleted
            raise StudyNotFound(f"no imaging study {study_id}")
        return fhir.imaging_study(
            study, [*await store.instances_of(uow, [study_id]),
                    *await dicomweb.visible_reports(uow, [study_id], role)], order,
            dicomweb_url=dicomweb_url)

    return await runtime.transact(read, actor=principal.actor)


async def instance(runtime: ServiceRuntime, principal: Principal, study_id: str,
                   instance_id: str, scope: str) -> Document:
    """One instance of a study the caller may view. Raises StudyNotFound /
    InstanceNotFound (404), NotTreating (403)."""

    async def read(uow: UnitOfWork) -> Document:
        study = await store.get_study(uow, study_id)
        if study is None:
            raise StudyNotFound(f"no imaging study {study_id}")
        await viewer(uow, principal, study["patient_id"], scope, study_id)
        found = await store.get_instance(uow, study_id, instance_id)
        if found is None:
            raise InstanceNotFound(f"no image {instance_id} in study {study_id}")
        return found

    return await runtime.transact(read, actor=principal.actor)


async def preview(runtime: ServiceRuntime, blobs: BlobStore, principal: Principal,
                  study_id: str, instance_id: str) -> bytes:
    """A PNG of the image (:mod:`.render`: windowed, at most 1024 px on its long side).
    Raises PreviewFailed (500) besides :func:`instance`'s.

    The stored file is copied to local disk in chunks, then decoded in a worker thread.
    """
    doc = await instance(runtime, principal, study_id, instance_id, "preview")
    with tempfile.TemporaryDirectory(prefix="xray-") as tmp:
        path = Path(tmp) / "image"
        with path.open("wb") as file:
            async for chunk in blobs.stream(doc["blob"]["key"]):
                await asyncio.to_thread(file.write, chunk)
        return await asyncio.to_thread(render.preview, path, doc["content_type"])


@dataclass(frozen=True)
class Download:
    """The stored file: its instance document and its bytes as chunks."""

    instance: Document
    chunks: AsyncIterator[bytes]


async def download(runtime: ServiceRuntime, blobs: BlobStore, principal: Principal,
                   study_id: str, instance_id: str) -> Download:
    """The stored file, streamed from S3 through the service (never whole in memory)."""
    doc = await instance(runtime, principal, study_id, instance_id, "file")
    return Download(doc, blobs.stream(doc["blob"]["key"]))


def presigned(blobs: BlobStore, instance: Document, ttl: int) -> str | None:
    """A presigned GET of the file, only when S3 has an address clients reach
    (``S3_PUBLIC_ENDPOINT_URL``); else None and clients use the download route."""
    if not blobs.settings.s3_public_endpoint_url:
        return None
    with contextlib.suppress(ValueError):
        return blobs.presigned_get(instance["blob"]["key"], ttl=ttl)
    return None
