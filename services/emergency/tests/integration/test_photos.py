"""Photos of an emergency: added by its raiser, streamed into a real S3 server (s3rver),
checked by content with Pillow, read by the dispatchers, its crew and the raiser only."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from PIL import Image

from healthflow.common import mongo
from healthflow.common.events.inprocess import InProcessTransport
from healthflow.devkit.testing import TokenFactory, running_app
from healthflow.emergency.app import create_app
from healthflow.emergency.photos import PhotoStore
from healthflow.emergency.settings import Settings

from .conftest import Emergencies
from .test_emergencies import problem


def image(fmt: str, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, "red" if mode == "RGB" else 1).save(out, fmt)
    return out.getvalue()


@pytest.fixture
async def emg(mongodb_url: str, unique_name: str, tokens: TokenFactory,
              s3_env: dict[str, str]) -> AsyncIterator[Emergencies]:
    """The emergency app with a bucket of its own on the S3 server."""
    settings = Settings(mongodb_url=mongodb_url, mongodb_database=unique_name,
                        transport="inprocess", s3_endpoint_url=s3_env["S3_ENDPOINT_URL"],
                        s3_access_key=s3_env["S3_ACCESS_KEY"],
                        s3_secret_key=s3_env["S3_SECRET_KEY"], s3_region=s3_env["S3_REGION"],
                        s3_bucket=f"emergency-{unique_name}".replace("_", "-").lower())
    app = create_app(settings, transport=InProcessTransport(
        mongo.get_database(mongodb_url, f"{unique_name}_bus")))
    app.state.verifier = tokens.verifier()
    async with running_app(app) as client:
        handle = Emergencies(client, app.state.runtime, tokens)
        handle.photos = app.state.photos  # type: ignore[attr-defined]
        yield handle


def stored(emg: Emergencies) -> PhotoStore:
    photos: PhotoStore = emg.photos  # type: ignore[attr-defined]
    return photos


async def upload(emg: Emergencies, eid: str, data: bytes, content_type: str | None,
                 sub: str = "pat-1", role: str = "patient") -> Any:
    headers = emg.as_(sub, role) | ({"Content-Type": content_type} if content_type else {})
    return await emg.client.post(f"/api/v1/emergencies/{eid}/photos", content=data,
                                 headers=headers)


async def test_the_raiser_adds_a_photo_its_readers_see_it_and_no_one_else(
        emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    jpeg = image("JPEG")
    added = await upload(emg, eid, jpeg, "image/jpeg")
    assert added.status_code == 201, added.text
    photo = added.json()
    assert photo | {"content_type": "image/jpeg", "width": 64, "height": 48,
                    "size": len(jpeg)} == photo
    assert added.headers["location"] == photo["file"]
    doc = (await emg.client.get(f"/api/v1/emergencies/{eid}",
                                headers=emg.as_("pat-1", "patient"))).json()
    assert [p["id"] for p in doc["photos"]] == [photo["id"]]

    await emg.offer(eid, "para-1")
    for sub, role in (("pat-1", "patient"), ("disp-1", "dispatcher"), ("para-1", "paramedic")):
        got = await emg.client.get(photo["file"], headers=emg.as_(sub, role))
        assert got.status_code == 200, (role, got.text)
        assert got.content == jpeg and got.headers["content-type"] == "image/jpeg"
        assert got.headers["cache-control"] == "no-store"
        assert got.headers["x-content-type-options"] == "nosniff"
    for sub, role in (("pat-2", "patient"), ("para-2", "paramedic"), ("doc-1", "doctor")):
        problem(await emg.client.get(photo["file"], headers=emg.as_(sub, role)), 404,
                "emergency-not-found")
    problem(await emg.client.get(photo["file"], headers=emg.as_("acct", "accountant")), 403)
    problem(await emg.client.get(f"/api/v1/emergencies/{eid}/photos/nope",
                                 headers=emg.as_("disp-1", "dispatcher")), 404,
            "photo-not-found")
    noise = io.BytesIO()  # a photo over the platform's 1 MiB default body limit
    Image.frombytes("RGB", (1000, 1000), os.urandom(3_000_000)).save(noise, "PNG")
    assert len(noise.getvalue()) > 2 * 1024 * 1024
    png = await upload(emg, eid, noise.getvalue(), "image/png")
    assert png.status_code == 201, png.text
    assert png.json() | {"content_type": "image/png", "width": 1000} == png.json()


async def test_bad_photos_are_refused_by_content_and_nothing_is_stored(
        emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    jpeg = image("JPEG")
    cases: list[tuple[bytes, str | None, int, str | None]] = [
        (jpeg[: len(jpeg) // 2], "image/jpeg", 422, "unreadable-image"),  # truncated
        (image("PNG"), "image/jpeg", 422, "not-accepted"),  # not what it claims
        (b"GIF89a" + b"\0" * 64, "image/gif", 422, "not-accepted"),
        (b"just some text, not a photo at all", "image/png", 422, "not-accepted"),
        (image("PNG", (8000, 8000), "1"), "image/png", 422, "too-many-pixels"),  # a bomb
        (jpeg, None, 415, None),
        (b"\xff\xd8\xff" + b"\0" * (10 * 1024 * 1024 + 1), "image/jpeg", 413, None),
    ]
    for data, content_type, status, rule in cases:
        refused = await upload(emg, eid, data, content_type)
        body = problem(refused, status, "invalid-photo" if status == 422 else None)
        assert body.get("problem") == rule, body
    assert len(image("PNG", (8000, 8000), "1")) < 100_000  # small on the wire
    problem(await upload(emg, eid, jpeg, "image/jpeg", "pat-2"), 404, "emergency-not-found")
    problem(await upload(emg, eid, jpeg, "image/jpeg", "disp-1", "dispatcher"), 403,
            "not-raiser")
    problem(await upload(emg, eid, jpeg, "image/jpeg", "para-1", "paramedic"), 403)
    doc = await emg.runtime.db["emergencies"].find_one({"_id": eid})
    assert doc is not None and not doc.get("photos")
    assert await stored(emg).blobs.keys() == []


async def test_photos_are_limited_per_emergency_and_end_with_it(emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    for _ in range(3):
        assert (await upload(emg, eid, image("JPEG"), "image/jpeg")).status_code == 201
    problem(await upload(emg, eid, image("JPEG"), "image/jpeg"), 409, "cannot-add-photo")
    assert len(await stored(emg).blobs.keys()) == 3
    cancelled = await emg.client.post(f"/api/v1/emergencies/{eid}/status",
                                      json={"status": "cancelled", "reason": "false alarm"},
                                      headers=emg.as_("disp-1", "dispatcher"))
    assert cancelled.status_code == 200, cancelled.text
    other = (await emg.raise_("pat-3")).json()["id"]
    problem(await upload(emg, eid, image("JPEG"), "image/jpeg"), 409, "cannot-add-photo")
    assert (await upload(emg, other, image("PNG"), "image/png", "pat-3")).status_code == 201
