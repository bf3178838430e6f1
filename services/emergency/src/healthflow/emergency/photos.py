"""Photos of an emergency (issue 14: a patient's raise has an optional photo).

The raiser adds a photo after the raise (``POST /{id}/photos``; the raise itself stays
one small JSON request that never waits for a file): the raw file is the body, its
type the ``Content-Type``, as the platform's other uploads. It streams into the
service's bucket (``BlobStore.staged``: memory bounded by the S3 part size) and, on
the way, into a temporary local file that is checked **by content** once the last byte
is in: the magic number must be PNG or JPEG and match ``Content-Type`` (the blob
store), then Pillow opens it as that format only, refuses more than
``photo_max_pixels`` pixels from the header before decoding (a decompression bomb is
refused unread), and decodes it whole (a truncated file fails). Any refusal deletes
the stored object again: nothing of a refused photo is kept.

Who: the raiser of the emergency adds photos while it is open (at most
``max_photos``); its readers (:func:`healthflow.emergency.service.visible`: the
dispatchers, its current crews, the raiser) read them, each read checked the same way.
No event is published: a photo is personal data that stays in this service.

The bucket is made on the first upload, not at start-up: raising an emergency must
not wait for, or fail on, object storage.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import IO

from healthflow.common.auth import Principal
from healthflow.common.blobs import BlobStore, BlobTypeRefused, BlobUse, StoredBlob
from healthflow.common.blobs.images import PIL_FORMATS, ImageRefused, decode_whole
from healthflow.common.blobs.kinds import MiB
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.problems import Conflict, Forbidden, NotFound, UnprocessableContent
from healthflow.common.problems import UnsupportedMediaType as NoContentType
from healthflow.common.service import ServiceRuntime
from healthflow.emergency import store
from healthflow.emergency.domain import FINAL, EmergencyNotFound
from healthflow.emergency.service import get, visible
from healthflow.emergency.settings import Settings

log = logging.getLogger(__name__)

PHOTO = BlobUse("photo", frozenset({"image/png", "image/jpeg"}), 20 * MiB)
"""PNG or JPEG; the settings' ``photo_max_bytes`` lowers the size limit."""


class InvalidPhoto(UnprocessableContent):
    """Not a usable PNG or JPEG; ``problem`` names the rule: ``not-accepted`` (not PNG
    or JPEG, or not the declared type), ``unreadable-image`` (does not decode whole),
    ``too-many-pixels``."""

    title, slug = "Invalid Photo", "invalid-photo"


class NotRaiser(Forbidden):
    title, slug = "Not The Raiser", "not-raiser"


class CannotAddPhoto(Conflict):
    """The emergency is closed or cancelled, or has ``max_photos`` already."""

    title, slug = "Cannot Add Photo", "cannot-add-photo"


class PhotoNotFound(NotFound):
    title, slug = "Photo Not Found", "photo-not-found"


def inspect(path: Path, content_type: str, max_pixels: int) -> tuple[int, int]:
    """(width, height) in pixels of the image at ``path``, decoded whole as
    ``content_type`` (``image/png`` or ``image/jpeg``).

    Raises:
        InvalidPhoto (422): ``too-many-pixels`` (from the header, before decoding) or
        ``unreadable-image`` (any failure of Pillow: its messages may quote the file,
        so they are neither answered nor logged).
    """
    try:
        image = decode_whole(path, max_pixels, pil_format=PIL_FORMATS[content_type])
    except ImageRefused as refused:
        if refused.problem == "too-many-pixels":
            raise InvalidPhoto(str(refused), problem="too-many-pixels") from None
        log.info("refused a photo that does not decode (%s)", refused.error)
        raise InvalidPhoto(str(refused), problem="unreadable-image") from None
    return image.width, image.height


class PhotoStore:
    """The blob store of photos and the slots of their checks; the bucket is made on
    first use (:meth:`ready`), so the service starts without object storage."""

    def __init__(self, blobs: BlobStore, inspections: int) -> None:
        self.blobs = blobs
        self.inspections = asyncio.Semaphore(inspections)
        self.started = False
        self._lock = asyncio.Lock()

    async def ready(self) -> BlobStore:
        async with self._lock:
            if not self.started:
                await self.blobs.start()
                self.started = True
        return self.blobs

    async def sweep(self, db: store.Db, older_than: float) -> None:
        """Delete stored photos no emergency references (a process died between the
        upload and its commit); only once this process has used the bucket."""
        if self.started:
            await self.blobs.sweep(lambda keys: store.photo_keys(db, keys),
                                   older_than=older_than)


def _ensure_may_add(principal: Principal, doc: Document | None, emergency_id: str,
                    max_photos: int, visible: bool) -> Document:
    if doc is None or not visible:
        raise EmergencyNotFound(f"no emergency {emergency_id}")
    if doc["raised_by"] != principal.subject:
        raise NotRaiser("only whoever raised the emergency adds photos to it")
    if doc["status"] in FINAL:
        raise CannotAddPhoto(f"the emergency is {doc['status']}")
    if len(doc.get("photos") or []) >= max_photos:
        raise CannotAddPhoto(f"the emergency has {max_photos} photos already",
                             max_photos=max_photos)
    return doc


async def _tee(body: AsyncIterable[bytes], spool: IO[bytes]) -> AsyncIterator[bytes]:
    async for chunk in body:
        await asyncio.to_thread(spool.write, chunk)
        yield chunk


async def add(runtime: ServiceRuntime, photos: PhotoStore, principal: Principal,
              emergency_id: str, body: AsyncIterable[bytes], declared_type: str | None,
              ) -> Document:
    """Store a photo of the emergency by its raiser; returns the photo
    ``{id, content_type, width, height, size, sha256, uploaded_at}``. Access is checked
    before a byte is read and again when the photo commits.

    Raises:
        UnsupportedMediaType (415): no ``Content-Type``; EmergencyNotFound (404), also
        for one the caller may not read; NotRaiser (403); CannotAddPhoto (409);
        InvalidPhoto (422); BlobTooLarge (413). Nothing stays stored on any of them.
    """
    settings = runtime.settings
    assert isinstance(settings, Settings)
    if not declared_type:
        raise NoContentType("the upload has no Content-Type; send image/jpeg or image/png")

    async def check(uow: UnitOfWork) -> Document:
        doc = await store.get(uow.db, emergency_id, session=uow.session)
        return _ensure_may_add(principal, doc, emergency_id, settings.max_photos,
                               doc is not None and visible(principal, doc))

    await runtime.transact(check)
    blobs = await photos.ready()
    with tempfile.TemporaryDirectory(prefix="emergency-") as tmp:
        path = Path(tmp) / "photo"
        with path.open("wb") as spool:
            try:
                async with blobs.staged(PHOTO, _tee(body, spool), declared_type=declared_type,
                                        max_bytes=settings.photo_max_bytes) as blob:
                    spool.close()
                    async with photos.inspections:
                        width, height = await asyncio.to_thread(
                            inspect, path, blob.content_type, settings.photo_max_pixels)
                    return await runtime.transact(
                        lambda uow: _commit(uow, check, principal, blob, width, height),
                        actor=principal.actor)
            except BlobTypeRefused as exc:
                raise InvalidPhoto(exc.detail, problem="not-accepted",
                                   **exc.extensions) from exc


async def _commit(uow: UnitOfWork, check: Callable[[UnitOfWork], Awaitable[Document]],
                  principal: Principal, blob: StoredBlob, width: int, height: int
                  ) -> Document:
    doc = await check(uow)
    photo: Document = {
        "id": str(uuid.uuid4()), "content_type": blob.content_type, "width": width,
        "height": height, "blob": {"key": blob.key, "sha256": blob.sha256,
                                   "size": blob.size},
        "uploaded_by": principal.subject, "uploaded_at": utcnow()}
    if not await store.update(uow.db, uow.session, doc, {
            "$push": {"photos": photo}, "$set": {"updated_at": photo["uploaded_at"]}}):
        raise Conflict("the emergency changed concurrently; retry")
    return photo


async def read(runtime: ServiceRuntime, photos: PhotoStore, principal: Principal,
               emergency_id: str, photo_id: str) -> tuple[Document, AsyncIterator[bytes]]:
    """The photo's record and its bytes, for a reader of the emergency.

    Raises:
        EmergencyNotFound (404), also for one the caller may not read; PhotoNotFound
        (404); ServiceUnavailable (503): object storage does not answer.
    """
    doc = await get(runtime, principal, emergency_id)
    photo = next((p for p in doc.get("photos") or [] if p["id"] == photo_id), None)
    if photo is None:
        raise PhotoNotFound(f"no photo {photo_id} of emergency {emergency_id}")
    blobs = await photos.ready()
    chunks = blobs.stream(photo["blob"]["key"])
    first = await anext(chunks, b"")  # S3 errors here, before the response starts

    async def body() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in chunks:
            yield chunk

    return photo, body()
