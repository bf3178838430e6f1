"""The blob store with the minio client against a real S3 server (s3rver) over HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc
from collections.abc import AsyncIterator

import httpx
import pytest

from healthflow.common.blobs import (
    CLINICAL_DOCUMENT,
    PATIENT_IMAGE,
    BlobStore,
    BlobTooLarge,
    BlobTypeRefused,
    BlobUse,
)
from healthflow.common.settings import ServiceSettings
from healthflow.devkit.embedded import EmbeddedS3

MiB = 1024 * 1024
PART = 5 * MiB  # S3's smallest multipart part
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n%%EOF\n"
SCANS = BlobUse("scan", frozenset({"image/png", "application/pdf"}), max_bytes=128 * MiB)


def settings_for(env: dict[str, str], name: str) -> ServiceSettings:
    return ServiceSettings(
        service_name=name, s3_endpoint_url=env["S3_ENDPOINT_URL"],
        s3_access_key=env["S3_ACCESS_KEY"], s3_secret_key=env["S3_SECRET_KEY"],
        s3_region=env["S3_REGION"], s3_part_size=PART,
    )


@pytest.fixture
async def store(s3_env: dict[str, str], unique_name: str) -> AsyncIterator[BlobStore]:
    blobs = BlobStore(settings_for(s3_env, unique_name))
    await blobs.start()
    yield blobs
    await blobs.close()


async def png_stream(total: int, chunk: int = 256 * 1024,
                     digest: hashlib._Hash | None = None) -> AsyncIterator[bytes]:
    """``total`` bytes starting with a PNG header, made as they are asked for."""
    sent = 0
    while sent < total:
        size = min(chunk, total - sent)
        block = (PNG + bytes(size))[:size] if sent == 0 else bytes([sent // chunk % 251]) * size
        if digest is not None:
            digest.update(block)
        sent += size
        yield block
        await asyncio.sleep(0)


async def fetch(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.get(url)


async def test_a_file_bigger_than_one_part_streams_from_a_generator(store):
    total = 16 * PART + 12345  # seventeen parts
    expected = hashlib.sha256()
    tracemalloc.start()
    try:
        blob = await store.put(SCANS, png_stream(total, digest=expected),
                               declared_type="image/png")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # minio holds a part a few times over (its copies, the signature, the MD5)
    assert peak < 8 * PART < total / 2, f"peak {peak} bytes: the upload was held in memory"
    assert (blob.size, blob.sha256, blob.content_type) == (total, expected.hexdigest(),
                                                           "image/png")
    assert blob.key.startswith("scan/") and blob.bucket == store.bucket
    body = await fetch(store.presigned_get(blob.key, ttl=60))
    assert body.status_code == 200
    assert hashlib.sha256(body.content).hexdigest() == blob.sha256
    assert body.headers["content-type"] == "image/png"


async def test_sources_may_be_bytes_sync_iterables_or_files(store, tmp_path):
    path = tmp_path / "letter.pdf"
    path.write_bytes(PDF * 100)
    with path.open("rb") as file:
        from_file = await store.put(CLINICAL_DOCUMENT, file, declared_type="application/pdf")
    from_list = await store.put(CLINICAL_DOCUMENT, [PDF[:5], PDF[5:]])
    from_bytes = await store.put(CLINICAL_DOCUMENT, PDF)
    assert from_file.sha256 == hashlib.sha256(PDF * 100).hexdigest()
    assert from_list.sha256 == from_bytes.sha256 == hashlib.sha256(PDF).hexdigest()
    assert {from_file.content_type, from_list.content_type} == {"application/pdf"}


async def test_a_png_declared_as_jpeg_is_refused_and_nothing_is_kept(store):
    with pytest.raises(BlobTypeRefused) as refused:
        await store.put(PATIENT_IMAGE, png_stream(100_000), declared_type="image/jpeg")
    problem = refused.value.body()
    assert problem["status"] == 415
    assert (problem["detected_type"], problem["declared_type"]) == ("image/png", "image/jpeg")
    assert await store.keys() == []


async def test_a_pdf_is_accepted_for_documents_and_refused_for_images(store):
    blob = await store.put(CLINICAL_DOCUMENT, PDF, declared_type="application/pdf")
    assert blob.content_type == "application/pdf" and await store.exists(blob.key)
    with pytest.raises(BlobTypeRefused, match="not accepted for image files"):
        await store.put(PATIENT_IMAGE, PDF)
    with pytest.raises(BlobTypeRefused, match="could not be recognised"):
        await store.put(CLINICAL_DOCUMENT, b"plain text, not a document" * 10)
    assert await store.keys() == [blob.key]


@pytest.mark.parametrize("total, limit", [(3 * PART, 2 * PART + 1), (50_000, 20_000)],
                         ids=["after-uploaded-parts", "within-the-first-part"])
async def test_an_over_size_file_is_refused_and_nothing_is_kept(store, total, limit):
    with pytest.raises(BlobTooLarge) as refused:
        await store.put(SCANS, png_stream(total), max_bytes=limit)
    assert refused.value.status == 413 and refused.value.body()["max_bytes"] == limit
    assert await store.keys() == []


async def test_a_presigned_get_works_without_credentials_and_expires(store):
    blob = await store.put(CLINICAL_DOCUMENT, PDF)
    assert (await fetch(store.presigned_get(blob.key, ttl=60))).content == PDF
    url = store.presigned_get(blob.key, ttl=1)  # X-Amz-Date has one-second resolution
    await asyncio.sleep(2.2)
    assert (await fetch(url)).status_code == 403
    with pytest.raises(ValueError):
        store.presigned_get(blob.key, ttl=8 * 24 * 3600)


async def test_an_object_streams_back_in_chunks(store):
    total = 2 * PART + 17
    expected = hashlib.sha256()
    blob = await store.put(SCANS, png_stream(total, digest=expected))
    got = hashlib.sha256()
    sizes = []
    async for chunk in store.stream(blob.key, chunk_size=MiB):
        got.update(chunk)
        sizes.append(len(chunk))
    assert got.hexdigest() == expected.hexdigest() == blob.sha256
    assert sum(sizes) == total and max(sizes) <= MiB


async def test_a_failed_commit_leaves_no_object(store):
    class CommitFailed(Exception):
        pass

    with pytest.raises(CommitFailed):
        async with store.staged(CLINICAL_DOCUMENT, PDF) as blob:
            assert await store.exists(blob.key)
            raise CommitFailed
    assert not await store.exists(blob.key)
    async with store.staged(CLINICAL_DOCUMENT, PDF) as kept:
        pass
    assert await store.keys() == [kept.key]


async def test_the_sweeper_removes_old_orphans_and_keeps_referenced_ones(store):
    blobs = [await store.put(CLINICAL_DOCUMENT, PDF) for _ in range(5)]
    committed = {blobs[0].key, blobs[3].key}
    asked: list[list[str]] = []

    async def referenced(keys: list[str]) -> set[str]:
        asked.append(keys)
        return committed & set(keys)

    assert await store.sweep(referenced, older_than=3600) == []  # too young to judge
    assert asked == []
    await asyncio.sleep(1.1)  # S3 timestamps have one-second resolution
    removed = await store.sweep(referenced, older_than=0.5, batch=2)
    assert sorted(removed) == sorted(b.key for b in blobs if b.key not in committed)
    assert sorted(await store.keys()) == sorted(committed)


async def test_objects_survive_a_restart_of_the_server(tmp_path, unique_name):
    server = EmbeddedS3(tmp_path / "s3").start()
    try:
        store = BlobStore(settings_for(server.env(), unique_name))
        await store.start()
        blob = await store.put(SCANS, png_stream(PART + 10))
        with pytest.raises(BlobTooLarge):  # s3rver cannot abort: parts stay until restart
            await store.put(SCANS, png_stream(3 * PART), max_bytes=2 * PART)
        uploads = list((tmp_path / "s3").glob("*/._S3rver_uploads/*"))
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)  # same port, same directory
        await store.start()
        body = await fetch(store.presigned_get(blob.key))
        assert hashlib.sha256(body.content).hexdigest() == blob.sha256
        assert await store.keys() == [blob.key]
        assert uploads and not any(path.exists() for path in uploads), [
            list(p.rglob("*")) for p in uploads]
    finally:
        server.stop()


async def test_more_concurrent_uploads_than_worker_threads_all_finish(
        store: BlobStore) -> None:
    """An upload's minio call waits in a worker thread for each next chunk, and a source
    may itself need a worker thread per chunk (xray spools every chunk to disk with
    ``asyncio.to_thread``). With the uploads on the loop's default executor, as many
    uploads as that executor has threads (``min(32, cores + 4)``: 6 on two cores) took
    every thread and waited for chunks only another thread could make: a service
    replica stopped for good on its seventh concurrent upload. Forty must all finish."""

    async def spooled(index: int) -> AsyncIterator[bytes]:
        async for chunk in png_stream(3 * 64 * 1024, chunk=64 * 1024):
            await asyncio.to_thread(len, chunk)  # a chunk's own worker-thread step
            yield chunk

    uploads = [store.put(SCANS, spooled(i), declared_type="image/png") for i in range(40)]
    stored = await asyncio.wait_for(asyncio.gather(*uploads), timeout=120)
    assert len({blob.key for blob in stored}) == 40
    assert all(blob.size == 3 * 64 * 1024 for blob in stored)
