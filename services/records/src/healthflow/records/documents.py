"""Use cases of clinical documents and patient images (FHIR ``DocumentReference``).

An upload is the raw file as the request body with its type as ``Content-Type``
(as X-ray images are: nothing for Starlette to parse or spool). It streams into
the blob store (``BlobStore.staged``: memory bounded by the S3 part size) and, on
the way, into a temporary local file that :mod:`.files` checks once the last byte
is in (pypdf for PDFs, Pillow for images, in a worker thread). Only a file that
passes and whose document commits stays stored: any refusal inside the ``staged``
block deletes the object again.

A document filed by mistake is withdrawn as ``entered-in-error`` (FHIR
``DocumentReference.status``; :func:`withdraw`): marked, never deleted, like the
record's entries. From then on its file (download and link) is served only to its
uploader and the patient's treating doctors (410 ``document-withdrawn`` for anyone
else: the patient, staff), and the withdrawal's ``reason`` is shown to clinicians
only (treating doctors, clinical staff), never to the patient.

Who: a treating doctor uploads into an encounter that has started (and withdraws
from it); reads follow
:func:`healthflow.records.service.accessor`, and every read by someone other than
the patient (listing, metadata, the file) publishes ``record.accessed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from healthflow.common.auth import Principal
from healthflow.common.blobs import (
    CLINICAL_DOCUMENT,
    PATIENT_IMAGE,
    BlobStore,
    BlobTypeRefused,
    BlobUse,
    StoredBlob,
)
from healthflow.common.blobs.kinds import normalize_type
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.problems import UnsupportedMediaType
from healthflow.common.service import ServiceRuntime
from healthflow.records import events, files, store
from healthflow.records.domain import (
    Access,
    AccessorRole,
    DocumentCategory,
    DocumentGone,
    DocumentNotFound,
    DocumentWithdrawn,
    accepts_entries,
)
from healthflow.records.service import (
    accessor,
    another_patients,
    hidden,
    load_encounter,
    record_access,
)

FILE_SCOPE = "document-file"
"""The ``record.accessed`` scope of a file read (download or link)."""


def use_of(category: DocumentCategory) -> BlobUse:
    """Photos are patient images (PNG, JPEG, WebP; 20 MiB), the rest clinical documents
    (PDF, PNG, JPEG; 50 MiB): the platform's blob uses."""
    return PATIENT_IMAGE if category is DocumentCategory.PHOTO else CLINICAL_DOCUMENT


async def _tee(body: AsyncIterable[bytes], spool: IO[bytes]) -> AsyncIterator[bytes]:
    """``body``'s chunks, each also written to ``spool`` (local disk, in a worker thread)."""
    async for chunk in body:
        await asyncio.to_thread(spool.write, chunk)
        yield chunk


async def _writable_encounter(uow: UnitOfWork, principal: Principal, encounter_id: str
                              ) -> Document:
    encounter = await load_encounter(uow, encounter_id)
    await accessor(uow, principal, encounter["patient_id"], write=True)
    accepts_entries(encounter)
    return encounter


async def upload(runtime: ServiceRuntime, blobs: BlobStore, principal: Principal,
                 encounter_id: str, category: DocumentCategory, body: AsyncIterable[bytes],
                 declared_type: str | None, *, inspections: asyncio.Semaphore) -> Document:
    """Store one file of ``category`` in the encounter; ``document.uploaded``.

    ``declared_type`` is the request's ``Content-Type``; the bytes must be that type.
    Access is checked before a byte is read, and again when the document commits. The
    file's check (:func:`.files.inspect`) waits for one of the ``inspections`` slots.

    Raises:
        UnsupportedMediaType (415): no ``Content-Type`` (RFC 9110 §15.5.16);
        EncounterNotFound (404), NotTreating / Forbidden (403), EncounterStateConflict
        (409), InvalidDocument (422: type-mismatch, not-accepted, unreadable-pdf, …),
        BlobTooLarge (413). Nothing stays stored on any of them.
    """
    if not declared_type:
        raise UnsupportedMediaType("the upload has no Content-Type; send the file's type "
                                   "(application/pdf, image/png, image/jpeg, image/webp)")
    await runtime.transact(lambda uow: _writable_encounter(uow, principal, encounter_id))
    with tempfile.TemporaryDirectory(prefix="records-") as tmp:
        path = Path(tmp) / "upload"
        with path.open("wb") as spool:
            try:
                async with blobs.staged(use_of(category), _tee(body, spool),
                                        declared_type=declared_type) as blob:
                    spool.close()
                    async with inspections:
                        facts = await asyncio.to_thread(files.inspect, path,
                                                        blob.content_type)
                    return await runtime.transact(
                        lambda uow: _store(uow, principal, encounter_id, category, blob, facts),
                        actor=principal.actor)
            except BlobTypeRefused as exc:
                raise files.InvalidDocument(exc.detail, problem=_refusal(exc),
                                            **exc.extensions) from exc


def _refusal(exc: BlobTypeRefused) -> str:
    """``type-mismatch`` when the bytes are a known type other than the declared one
    (a PNG sent as a PDF), else ``not-accepted`` (unknown, or not allowed here)."""
    declared, detected = exc.extensions.get("declared_type"), exc.extensions.get("detected_type")
    if declared is None or detected is None or normalize_type(declared) == detected:
        return "not-accepted"
    return "type-mismatch"


async def _store(uow: UnitOfWork, principal: Principal, encounter_id: str,
                 category: DocumentCategory, blob: StoredBlob, facts: files.FileFacts
                 ) -> Document:
    encounter = await _writable_encounter(uow, principal, encounter_id)
    now = utcnow()
    doc: Document = {
        "_id": str(uuid.uuid4()), "encounter_id": encounter_id,
        "patient_id": encounter["patient_id"], "category": category.value,
        "content_type": blob.content_type,
        "blob": {"key": blob.key, "sha256": blob.sha256, "size": blob.size},
        "pages": facts.pages, "width": facts.width, "height": facts.height,
        "uploaded_by": principal.subject, "uploaded_at": now}
    await store.insert_document(uow, doc)
    uow.publish(events.DocumentUploaded(
        document_id=doc["_id"], encounter_id=encounter_id, patient_id=doc["patient_id"],
        category=category.value, content_type=blob.content_type, sha256=blob.sha256,
        size=blob.size, uploaded_by=principal.subject, uploaded_at=now),
        subject=f"document/{doc['_id']}", patientid=doc["patient_id"])
    return doc


async def withdraw(runtime: ServiceRuntime, principal: Principal, document_id: str,
                   reason: str) -> Document:
    """Mark the document ``entered-in-error`` (``withdrawal: {by, at, reason}``); the file
    stays stored and readable; ``document.entered_in_error`` (without the reason).

    Raises:
        DocumentNotFound (404), NotTreating / Forbidden (403): not a treating doctor of
        the patient; DocumentWithdrawn (409): already withdrawn.
    """

    async def write(uow: UnitOfWork) -> Document:
        doc = await store.get_document(uow.db, document_id, session=uow.session)
        if doc is None or another_patients(principal, doc["patient_id"]):
            raise DocumentNotFound(f"no document {document_id}")
        await accessor(uow, principal, doc["patient_id"], write=True)
        now = utcnow()
        withdrawal = {"by": principal.subject, "at": now, "reason": reason}
        if not await store.withdraw_document(uow, document_id, withdrawal):
            raise DocumentWithdrawn(f"document {document_id} was already entered in error")
        uow.publish(events.DocumentEnteredInError(
            document_id=document_id, encounter_id=doc["encounter_id"],
            patient_id=doc["patient_id"], withdrawn_by=principal.subject, withdrawn_at=now),
            subject=f"document/{document_id}", patientid=doc["patient_id"])
        return {**doc, "withdrawal": withdrawal}

    return await runtime.transact(write, actor=principal.actor)


# ----------------------------------------------------------------------------- reading


def _as_seen(doc: Document, role: Access | None) -> Document:
    """``doc`` as ``role`` sees it: the patient (``None``) gets no withdrawal ``reason``."""
    if role is not None or not doc.get("withdrawal"):
        return doc
    return {**doc, "withdrawal": {**doc["withdrawal"], "reason": None}}


def _ensure_served(principal: Principal, doc: Document, role: Access | None) -> None:
    """A withdrawn document's file only for its uploader and treating doctors.

    Raises:
        DocumentGone (410).
    """
    if doc.get("withdrawal") and principal.subject != doc["uploaded_by"] \
            and (role is None or role.role is not AccessorRole.TREATING_DOCTOR):
        raise DocumentGone(f"document {doc['_id']} was entered in error; its file is no "
                           "longer served")


async def read_document(runtime: ServiceRuntime, principal: Principal, document_id: str,
                        scope: str = "document") -> Document:
    """One document's metadata (404 also for a patient asking for another's), as the
    caller may see it; with ``scope`` ``document-file`` (its file or link), only what may
    still be served.

    Raises:
        DocumentNotFound (404), NotTreating / Forbidden (403), DocumentGone (410): the
        file of a withdrawn document, asked by other than its uploader or a treating doctor.
    """

    async def read(uow: UnitOfWork) -> Document:
        doc = await store.get_document(uow.db, document_id, session=uow.session)
        if doc is None or await hidden(uow, principal, doc["patient_id"]):
            raise DocumentNotFound(f"no document {document_id}")
        role = await accessor(uow, principal, doc["patient_id"])
        if scope == FILE_SCOPE:
            _ensure_served(principal, doc, role)
        record_access(uow, principal, doc["patient_id"], role, scope)
        return _as_seen(doc, role)

    return await runtime.transact(read, actor=principal.actor)


async def list_documents(runtime: ServiceRuntime, principal: Principal, patient_id: str, *,
                         cursor: str | None, limit: int) -> tuple[list[Document], str | None]:
    """One page of the patient's documents, oldest first, and the next cursor.

    Raises:
        NotTreating / Forbidden (403); BadRequest (400): a foreign cursor.
    """

    async def read(uow: UnitOfWork) -> tuple[list[Document], str | None]:
        role = await accessor(uow, principal, patient_id)
        record_access(uow, principal, patient_id, role, "documents")
        docs, rest = await store.documents_page(uow.db, patient_id, cursor=cursor,
                                                limit=limit, session=uow.session)
        return [_as_seen(doc, role) for doc in docs], rest

    return await runtime.transact(read, actor=principal.actor)


@dataclass(frozen=True)
class Download:
    """The stored file: its document and its bytes as chunks."""

    document: Document
    chunks: AsyncIterator[bytes]


async def download(runtime: ServiceRuntime, blobs: BlobStore, principal: Principal,
                   document_id: str) -> Download:
    """The stored file, streamed from S3 through the service (never whole in memory);
    the read is recorded (scope ``document-file``) before the first byte goes out."""
    doc = await read_document(runtime, principal, document_id, FILE_SCOPE)
    return Download(doc, blobs.stream(doc["blob"]["key"]))


def presigned(blobs: BlobStore, doc: Document, ttl: int) -> str | None:
    """A presigned GET of the file, only when S3 has an address clients reach
    (``S3_PUBLIC_ENDPOINT_URL``); else None and clients use the download route."""
    if not blobs.settings.s3_public_endpoint_url:
        return None
    with contextlib.suppress(ValueError):
        return blobs.presigned_get(doc["blob"]["key"], ttl=ttl)
    return None
