"""The blob store: one S3 bucket per service, reached with the ``minio`` client.

Threads: the ``minio`` client is blocking, so every call runs in a worker thread
(:func:`asyncio.to_thread`). During :meth:`BlobStore.put` that thread reads the
caller's chunks through :class:`_ChunkReader`, which pulls them from the event
loop (:func:`asyncio.run_coroutine_threadsafe`): an async upload body streams
straight into S3 multipart parts. Memory per upload is bounded by the part size
(``S3_PART_SIZE``, 8 MiB by default), not the file: minio copies the part it is
sending a few times (measured: about five part sizes at the peak). Parts are
sent one after another, so when ``put`` returns or raises nothing is in flight.

Keys are ``<use>/<32 hex digits>`` (a random UUID): never derived from client
input. The object's SHA-256 and size are returned to the caller, who records
them in the document that references the key; S3 metadata cannot carry a hash
only known once the last byte has streamed.

Garbage collection of objects whose database commit failed: :meth:`BlobStore.staged`
deletes the object when its block raises; :meth:`BlobStore.sweep` deletes objects
older than a grace period that no committed document references (for a crash
between upload and commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import hashlib
import io
import logging
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
)
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any, BinaryIO, TypeVar, cast
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.error import S3Error

from healthflow.common.blobs.kinds import HEAD_BYTES, BlobTooLarge, BlobUse, check_type
from healthflow.common.errors import ServiceUnavailable
from healthflow.common.settings import ServiceSettings

log = logging.getLogger(__name__)
T = TypeVar("T")
READ_CHUNK = 1024 * 1024  # bytes read at a time from a file-like source
UPLOAD_THREADS = 8  # streaming uploads at once per store; more wait their turn

# What put() accepts: async or sync chunks, bytes, or a binary file opened for reading.
Source = AsyncIterable[bytes] | Iterable[bytes] | bytes | IO[bytes]


@dataclass(frozen=True)
class StoredBlob:
    """An object as stored: ``key`` in ``bucket``, ``sha256`` (64 hex digits) of its
    bytes, ``size`` in bytes, ``content_type`` as detected from the bytes."""

    bucket: str
    key: str
    sha256: str
    size: int
    content_type: str


async def _chunks(source: Source) -> AsyncGenerator[bytes, None]:
    """Any :data:`Source` as async chunks; blocking reads run in a worker thread."""
    if isinstance(source, bytes | bytearray | memoryview):
        yield bytes(source)
    elif isinstance(source, AsyncIterable):
        async for chunk in source:
            yield chunk
    elif hasattr(source, "read"):
        while chunk := await asyncio.to_thread(source.read, READ_CHUNK):
            yield chunk
    else:
        iterator = iter(source)
        while (item := await asyncio.to_thread(_next_or_none, iterator)) is not None:
            yield item


def _next_or_none(iterator: Iterator[bytes]) -> bytes | None:
    return next(iterator, None)


async def _read_head(chunks: AsyncIterator[bytes]) -> bytes:
    """At least :data:`HEAD_BYTES` leading bytes (fewer only at the end of the stream)."""
    head = bytearray()
    async for chunk in chunks:
        head += chunk
        if len(head) >= HEAD_BYTES:
            break
    return bytes(head)


class _ChunkReader:
    """A file-like ``read(size)`` over async chunks, for minio's worker thread.

    Hashes what it hands out and raises :class:`BlobTooLarge` past ``limit``
    bytes, which makes minio abort the multipart upload.
    """

    def __init__(self, head: bytes, rest: AsyncIterator[bytes],
                 loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self._buffer = bytearray(head)
        self._rest = rest
        self._loop = loop
        self._ended = False
        self.cancelled = False
        self.refused: BlobTooLarge | None = None  # why reading stopped, if it did
        self.limit = limit
        self.size = 0
        self.sha256 = hashlib.sha256()

    async def _next(self) -> bytes | None:
        return await anext(self._rest, None)

    def read(self, size: int = -1) -> bytes:
        while not self._ended and (size < 0 or len(self._buffer) < size):
            if self.cancelled:
                raise asyncio.CancelledError("upload cancelled")
            chunk = asyncio.run_coroutine_threadsafe(self._next(), self._loop).result()
            if chunk is None:
                self._ended = True
            else:
                self._buffer += chunk
                self._check_size(len(self._buffer))
        count = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        with memoryview(self._buffer) as view:
            data = bytes(view[:count])
        del self._buffer[:count]
        self.size += count
        self._check_size(0)
        self.sha256.update(data)
        return data

    def _check_size(self, pending: int) -> None:
        if self.size + pending > self.limit:
            self.refused = BlobTooLarge(self.limit)
            raise self.refused


def _client(endpoint_url: str, settings: ServiceSettings) -> Minio:
    parts = urlsplit(endpoint_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"S3_ENDPOINT_URL must be http(s)://host:port, not {endpoint_url!r}")
    timeout = urllib3.Timeout(connect=settings.s3_timeout, read=settings.s3_timeout)
    retries = urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504))
    http = urllib3.PoolManager(timeout=timeout, retries=retries, maxsize=16)
    return Minio(parts.netloc, access_key=settings.s3_access_key,
                 secret_key=settings.s3_secret_key.get_secret_value(),
                 secure=parts.scheme == "https", region=settings.s3_region, http_client=http)


def _take_old(listing: Iterator[Any], cutoff: datetime, count: int) -> tuple[list[str], bool]:
    """Up to ``count`` listed objects: the keys of those modified before ``cutoff``, and
    whether the listing is exhausted."""
    old: list[str] = []
    for _ in range(count):
        item = next(listing, None)
        if item is None:
            return old, True
        if item.last_modified is not None and item.last_modified < cutoff:
            old.append(item.object_name)
    return old, False


class BlobStore:
    """The service's bucket (``S3_BUCKET``, default ``healthflow-<service>``).

    Built from :class:`~healthflow.common.settings.ServiceSettings`; call
    :meth:`start` once (creates the bucket when missing) and :meth:`close` at the end.
    """

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.bucket = settings.bucket_name
        self._client = _client(settings.s3_endpoint_url, settings)
        public = settings.s3_public_endpoint_url
        self._signer = _client(public, settings) if public else self._client
        # Streaming uploads wait in their thread for chunks the event loop makes, and
        # making a chunk may need a thread of the loop's default executor (a source that
        # spools to disk): so they get threads of their own, or enough of them would
        # hold every default thread and wait for ever. Extra uploads queue here.
        self._uploads = ThreadPoolExecutor(max_workers=UPLOAD_THREADS,
                                           thread_name_prefix=f"{self.bucket}-upload")

    async def _s3(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking minio call in a worker thread; an unreachable S3 is a 503."""
        return await self._s3_in(None, functools.partial(fn, *args, **kwargs))

    async def _s3_in(self, executor: ThreadPoolExecutor | None, call: Callable[[], T]) -> T:
        """``call`` in ``executor`` (the loop's default when None); S3 unreachable: 503."""
        try:
            return await asyncio.get_running_loop().run_in_executor(
                executor, contextvars.copy_context().run, call)
        except urllib3.exceptions.HTTPError as exc:
            raise ServiceUnavailable(
                f"object storage does not answer ({type(exc).__name__})") from exc

    async def start(self) -> None:
        """Create the bucket when it does not exist (idempotent, safe across replicas)."""
        def ensure() -> None:
            if self._client.bucket_exists(self.bucket):
                return
            try:
                self._client.make_bucket(self.bucket, location=self.settings.s3_region)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

        await self._s3(ensure)

    async def close(self) -> None:
        self._uploads.shutdown(wait=False, cancel_futures=True)
        self._client._http.clear()

    async def put(self, use: BlobUse, source: Source, *, declared_type: str | None = None,
                  max_bytes: int | None = None) -> StoredBlob:
        """Stream ``source`` into a new object under ``use.name/``.

        ``declared_type`` is what the client said (multipart ``Content-Type``);
        ``max_bytes`` can only lower ``use.max_bytes``. The content type is
        detected from the first bytes before anything is uploaded.

        Raises:
            BlobTypeRefused: (415) a type the use does not allow or not the declared one.
            BlobTooLarge: (413) more than the limit; the partial upload is aborted.
            ServiceUnavailable: (503) S3 does not answer.
            In every case nothing stays stored.
        """
        limit = min(use.max_bytes, max_bytes or use.max_bytes)
        chunks = _chunks(source)
        try:
            head = await _read_head(chunks)
            content_type = check_type(use, head, declared_type)
            key = f"{use.name}/{uuid.uuid4().hex}"
            reader = _ChunkReader(head, chunks, asyncio.get_running_loop(), limit)
            await self._upload(key, reader, content_type)
        finally:
            await chunks.aclose()
        return StoredBlob(self.bucket, key, reader.sha256.hexdigest(), reader.size, content_type)

    async def put_generated(self, key: str, data: bytes, content_type: str) -> StoredBlob:
        """Store ``data`` under ``key``, replacing what is there: for small objects a
        service makes itself (a signed audit checkpoint), never client input, so the
        type is not detected and the caller names the key.

        Raises:
            ServiceUnavailable: (503) S3 does not answer.
        """
        await self._s3(self._client.put_object, self.bucket, key, io.BytesIO(data),
                       length=len(data), content_type=content_type)
        return StoredBlob(self.bucket, key, hashlib.sha256(data).hexdigest(), len(data),
                          content_type)

    async def _upload(self, key: str, reader: _ChunkReader, content_type: str) -> None:
        put = functools.partial(
            self._client.put_object, self.bucket, key, cast(BinaryIO, reader), length=-1,  # read()
            part_size=self.settings.s3_part_size, content_type=content_type,
            # One part at a time: minio's parallel part uploads outlive a failed
            # put_object (its pool is not joined), and each holds a part in memory.
            num_parallel_uploads=1)
        upload = asyncio.ensure_future(self._s3_in(self._uploads, put))
        try:
            await asyncio.shield(upload)
        except BaseException as exc:
            reader.cancelled = True  # the worker stops at its next read; minio aborts
            with contextlib.suppress(BaseException):
                await upload
            await self._forget(key)
            if reader.refused is not None and exc is not reader.refused:
                # minio's abort of the multipart upload failed after our refusal
                raise reader.refused from exc
            raise

    async def _forget(self, key: str) -> None:
        """Delete ``key`` on a failure path; a failure here is logged (the sweeper retries)."""
        try:
            await self.delete(key)
        except Exception as exc:
            log.warning("could not delete blob %s/%s: %s", self.bucket, key, exc)

    @contextlib.asynccontextmanager
    async def staged(self, use: BlobUse, source: Source, *, declared_type: str | None = None,
                     max_bytes: int | None = None) -> AsyncIterator[StoredBlob]:
        """:meth:`put`, then yield the blob; delete it if the block raises.

        Commit the document that references ``blob.key`` inside the block::

            async with store.staged(XRAY, body, declared_type=ct) as blob:
                await runtime.transact(lambda s: save_study(s, blob))
        """
        blob = await self.put(use, source, declared_type=declared_type, max_bytes=max_bytes)
        try:
            yield blob
        except BaseException:
            await asyncio.shield(self._forget(blob.key))
            raise

    def presigned_get(self, key: str, ttl: float | None = None) -> str:
        """A URL that GETs ``key`` without credentials for ``ttl`` seconds
        (default ``S3_PRESIGN_TTL``; 1 s to 7 days, AWS Signature V4 query auth).
        Signed locally (the region is configured): no request is made."""
        seconds = int(ttl if ttl is not None else self.settings.s3_presign_ttl)
        if not 1 <= seconds <= 7 * 24 * 3600:
            raise ValueError(f"a presigned URL lives 1 s to 7 days, not {seconds} s")
        return self._signer.presigned_get_object(self.bucket, key, timedelta(seconds=seconds))

    async def stream(self, key: str, chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]:
        """The bytes of ``key``, ``chunk_size`` at a time (memory: one chunk), each read
        in a worker thread; for downloads that go through the service instead of a
        presigned URL (when S3 is not reachable by clients).

        Raises:
            S3Error: ``NoSuchKey`` when there is no such object; ServiceUnavailable (503).
        """
        response = await self._s3(self._client.get_object, self.bucket, key)
        try:
            while chunk := await self._s3(response.read, chunk_size):
                yield chunk
        finally:
            response.close()
            response.release_conn()

    async def delete(self, key: str) -> None:
        """Delete ``key`` (no error when it does not exist)."""
        await self._s3(self._client.remove_object, self.bucket, key)

    async def exists(self, key: str) -> bool:
        try:
            await self._s3(self._client.stat_object, self.bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return False
            raise
        return True

    async def keys(self, prefix: str | None = None) -> list[str]:
        """Every key in the bucket (under ``prefix``); for tests and operators."""
        def listing() -> list[str]:
            objects = self._client.list_objects(self.bucket, prefix=prefix, recursive=True)
            return [item.object_name for item in objects]

        return await self._s3(listing)

    async def sweep(self, referenced: Callable[[list[str]], Awaitable[Collection[str]]], *,
                    older_than: float, prefix: str | None = None, batch: int = 500,
                    ) -> list[str]:
        """Delete the orphans: objects older than ``older_than`` seconds that no
        committed document references. Returns the deleted keys.

        ``referenced(keys)`` returns those of ``keys`` that a committed document
        references (one ``{"blob.key": {"$in": keys}}`` query). ``older_than``
        must exceed the longest time between an upload and its commit (minutes).
        """
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than)
        listing = self._client.list_objects(self.bucket, prefix=prefix, recursive=True)
        removed: list[str] = []
        exhausted = False
        while not exhausted:
            old, exhausted = await self._s3(_take_old, listing, cutoff, batch)
            if not old:
                continue
            keep = set(await referenced(old))
            for key in (k for k in old if k not in keep):
                await self.delete(key)
                removed.append(key)
        if removed:
            log.info("swept %d orphaned blobs from %s", len(removed), self.bucket)
        return removed
