"""WADO-RS frames (DICOM PS3.18 §10.4, ``…/instances/{sop}/frames/{frames}``): the pixel
data of one or more frames of a DICOM image, one part each, as
``multipart/related`` (RFC 2387; PS3.18 §8.7.4, Table 8.7.3-5): what OHIF and other
viewers load pixels by (the BulkDataURI of Pixel Data in the metadata,
:mod:`.wado_metadata`, names this resource).

* ``application/octet-stream`` (the default: no ``Accept``, ``*/*``,
  ``multipart/related`` without ``type``), transfer syntax Explicit VR Little Endian
  (``1.2.840.10008.1.2.1``): each frame's pixels uncompressed, Rows × Columns ×
  Samples per Pixel values of Bits Allocated each, little endian, row by row; a native
  file's frame is served as stored, a JPEG 2000 one is decoded (pydicom with the
  pylibjpeg-openjpeg plugin; photometric interpretation as decoded, no colour
  conversion).
* ``image/jp2`` for an instance stored in JPEG 2000 (``1.2.840.10008.1.2.4.90`` or
  ``.91``): each frame's codestream as stored (no transcoding: a ``transfer-syntax``
  parameter must be ``*`` or the stored one).

Anything else is 406. The file is copied from the blob store to local disk in chunks
and read there in a worker thread. Access and audit are DICOMweb's
(:func:`healthflow.xray.dicomweb.study_instances`).
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.encaps import get_frame
from pydicom.pixels import pixel_array
from pydicom.uid import ExplicitVRLittleEndian
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header, parse_options_header

from healthflow.common.auth import Principal
from healthflow.common.blobs import BlobStore
from healthflow.common.errors import BadRequest
from healthflow.common.service import ServiceRuntime
from healthflow.xray import dicomweb, imaging
from healthflow.xray.domain import FrameNotFound

OCTET_STREAM = "application/octet-stream"
JP2 = "image/jp2"
UNCOMPRESSED = str(ExplicitVRLittleEndian)
MAX_FRAMES = 64
"""Most frames one request lists."""
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
"""Most decoded pixel bytes one request returns (the frames are held whole while the
answer is built): a viewer asks for fewer frames per request above it."""


def frame_list(frames: str) -> list[int]:
    """The frames of a WADO-RS frames path (PS3.18 §8.3.1: ``{frames}`` is a comma
    separated list of 1-based frame numbers), in the order given.

    Raises:
        BadRequest (400, ``parameter`` ``frames``): empty, a number below 1 or not an
        integer, a number listed twice (each would be decoded again), or more than
        :data:`MAX_FRAMES` numbers.
    """
    parts = frames.split(",")
    if len(parts) > MAX_FRAMES or len(set(parts)) != len(parts) or not all(
            p.isascii() and p.isdecimal() and int(p) >= 1 for p in parts):
        raise BadRequest(f"frames is a comma separated list of at most {MAX_FRAMES} distinct "
                         f"frame numbers, each 1 or more (got {frames[:20]!r})",
                         parameter="frames")
    return [int(p) for p in parts]


def _choice(entry: str, stored: str) -> tuple[str, str] | None:
    """What one ``Accept`` media range takes: (media type, transfer syntax) or None."""
    media, params = parse_options_header(entry)
    media = media.lower()
    if media in ("*/*", "multipart/*"):
        return OCTET_STREAM, UNCOMPRESSED
    if media != "multipart/related":
        return None
    kind = params.get("type", OCTET_STREAM).lower()
    syntax = params.get("transfer-syntax", "*")
    if kind in (OCTET_STREAM, "application/*", "*/*") and syntax in ("*", UNCOMPRESSED):
        return OCTET_STREAM, UNCOMPRESSED
    if kind == JP2 and stored in imaging.JPEG2000_SYNTAXES and syntax in ("*", stored):
        return JP2, stored
    return None


def served_as(accept: str | None, stored: str) -> tuple[str, str]:
    """(media type, transfer syntax) of the frames for the request's ``Accept``
    (RFC 9110 §12.5.1: preferred ranges first, ``q=0`` refuses) and the instance's
    ``stored`` transfer syntax (:mod:`this module <.wado_frames>`).

    Raises:
        NotAcceptable (406): nothing acceptable is served.
    """
    if not accept or not accept.strip():
        return OCTET_STREAM, UNCOMPRESSED
    for entry, quality in parse_accept_header(accept, MIMEAccept):
        choice = _choice(entry, stored) if quality > 0 else None
        if choice is not None:
            return choice
    offered = [f'multipart/related; type="{OCTET_STREAM}"; transfer-syntax={UNCOMPRESSED}']
    if stored in imaging.JPEG2000_SYNTAXES:
        offered.append(f'multipart/related; type="{JP2}"; transfer-syntax={stored}')
    raise dicomweb.NotAcceptable("frames are served uncompressed as application/octet-stream"
                                 " (or a JPEG 2000 instance's own codestreams as image/jp2)",
                                 offered=offered)


def read_frames(path: Path, numbers: list[int], media_type: str) -> list[bytes]:
    """The pixel data of frames ``numbers`` of the DICOM file at ``path`` (blocking: run
    it in a thread) as ``media_type`` (:data:`OCTET_STREAM` or :data:`JP2`).

    Raises:
        FrameNotFound (404): no Pixel Data, or a number past Number of Frames.
        BadRequest (400): the frames' decoded size is over :data:`MAX_RESPONSE_BYTES`
            (checked from the header, before any is decoded).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(path, defer_size=imaging.DEFER_SIZE)
        if "PixelData" not in ds:
            raise FrameNotFound("the instance has no pixel data")
        count = int(ds.get("NumberOfFrames", 1) or 1)
        if max(numbers) > count:
            raise FrameNotFound(f"the instance has {count} frame(s); there is no frame "
                                f"{max(numbers)}")
        size = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1) * \
            int(ds.BitsAllocated) // 8
        if size * len(numbers) > MAX_RESPONSE_BYTES:
            raise BadRequest(f"the {len(numbers)} frames hold {size * len(numbers)} bytes, "
                             f"more than the {MAX_RESPONSE_BYTES} one request returns; ask "
                             "for fewer frames at a time", parameter="frames")
        if ds.file_meta.TransferSyntaxUID.is_encapsulated:
            if media_type == JP2:
                return [get_frame(ds.PixelData, n - 1, number_of_frames=count)
                        for n in numbers]
            return [_little_endian(pixel_array(ds, index=n - 1, raw=True)) for n in numbers]
        data = ds.PixelData
        return [bytes(data[(n - 1) * size:n * size]) for n in numbers]


def _little_endian(pixels: np.ndarray) -> bytes:
    """A decoded frame's values as little-endian bytes, row by row."""
    return bytes(np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<")).tobytes())


def multipart(parts: list[bytes], media_type: str, syntax: str) -> dicomweb.Multipart:
    """``parts`` as ``multipart/related; type=media_type; transfer-syntax=syntax``."""
    boundary = secrets.token_hex(16)
    part_type = f"{media_type}; transfer-syntax={syntax}"

    async def body() -> AsyncIterator[bytes]:
        for part in parts:
            yield (f"--{boundary}\r\nContent-Type: {part_type}\r\n"
                   f"Content-Length: {len(part)}\r\n\r\n").encode()
            yield part
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    return dicomweb.Multipart(f'multipart/related; type="{media_type}"; '
                              f"transfer-syntax={syntax}; boundary={boundary}", body())


async def frames(runtime: ServiceRuntime, blobs: BlobStore, principal: Principal,
                 uids: tuple[str, str, str], numbers: list[int], accept: str | None
                 ) -> dicomweb.Multipart:
    """Frames ``numbers`` of the instance of ``uids`` (study, series, SOP instance UIDs)
    as the ``Accept`` header asks (:func:`served_as`), one part each, in that order.

    Raises:
        StudyNotFound (404): no such instance (or another patient's); FrameNotFound
        (404): an SR, or a frame past the instance's; NotAcceptable (406); NotTreating
        (403).
    """
    found = await dicomweb.study_instances(runtime, principal, *uids)
    [instance] = found.instances
    if instance["modality"] == "SR":
        raise FrameNotFound("a structured report (modality SR) has no frames")
    media_type, syntax = served_as(accept, str(instance["image"].get("transfer_syntax")))
    with tempfile.TemporaryDirectory(prefix="xray-") as tmp:
        path = Path(tmp) / "image"
        with path.open("wb") as file:
            async for chunk in blobs.stream(instance["blob"]["key"]):
                await asyncio.to_thread(file.write, chunk)
        parts = await asyncio.to_thread(read_frames, path, numbers, media_type)
    return multipart(parts, media_type, syntax)
