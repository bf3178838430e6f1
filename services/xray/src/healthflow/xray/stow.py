"""STOW-RS: a viewer or gateway stores DICOM instances over HTTP (DICOM PS3.18 §10.5).

The request body is ``multipart/related; type="application/dicom"`` (RFC 2387), one
DICOM Part 10 file per part. It is parsed as it streams in (``python-multipart``) and
each part is spooled to a local file, so memory stays bounded by the chunk size;
then each file is stored like a C-STORE instance (:func:`healthflow.xray.studies.receive`:
the upload's checks, linked to its order by Accession Number).

The answer (PS3.18 §10.5.3) is a DICOM JSON object: Referenced SOP Sequence
(0008,1199) of the stored instances with their Retrieve URL (0008,1190), Failed SOP
Sequence (0008,1198) with a Failure Reason (0008,1197) per refused part, coded as the
C-STORE statuses (:func:`healthflow.xray.dicom_scp.status_of`). HTTP 200 when all
were stored, 202 when some were, 409 when none was.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from healthflow.common.auth import Principal
from healthflow.common.blobs import BlobStore
from healthflow.common.errors import BadRequest, UnsupportedMediaType
from healthflow.common.service import ServiceRuntime
from healthflow.xray import imaging, studies
from healthflow.xray.dicom_scp import (
    CANNOT_UNDERSTAND,
    OUT_OF_RESOURCES,
    file_chunks,
    identity,
    status_of,
)
from healthflow.xray.dicomweb import Json, attribute

log = logging.getLogger(__name__)


@dataclass
class _Spool:
    """python-multipart callbacks writing each part to its own file in ``directory``."""

    directory: Path
    files: list[Path] = field(default_factory=list)
    current: IO[bytes] | None = None

    def begin(self) -> None:
        path = self.directory / f"part-{len(self.files)}"
        self.files.append(path)
        self.current = path.open("wb")

    def data(self, data: bytes, start: int, end: int) -> None:
        if self.current is not None:
            self.current.write(data[start:end])

    def end(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/related; type="application/dicom"`` body.

    Raises:
        UnsupportedMediaType (415): another type, or a part type other than DICOM.
    """
    kind, options = parse_options_header(content_type or "")
    if kind != b"multipart/related" or options.get(b"type") != imaging.DICOM.encode() \
            or not options.get(b"boundary"):
        raise UnsupportedMediaType('STOW-RS takes multipart/related; type="application/dicom"'
                                   " with a boundary")
    return options[b"boundary"]


async def _spool(body: AsyncIterable[bytes], boundary: bytes, directory: Path) -> list[Path]:
    """Write each part of ``body`` to a file. Raises BadRequest (400): not multipart."""
    spool = _Spool(directory)
    parser = MultipartParser(boundary, {"on_part_begin": spool.begin,
                                        "on_part_data": spool.data,
                                        "on_part_end": spool.end})
    try:
        async for chunk in body:
            await asyncio.to_thread(parser.write, chunk)
        parser.finalize()
    except MultipartParseError:
        raise BadRequest("the body is not well-formed multipart/related") from None
    finally:
        spool.end()
    if not spool.files:
        raise BadRequest("the body holds no part")
    return spool.files


@dataclass(frozen=True)
class StowResult:
    """The HTTP status and DICOM JSON body of a STOW-RS answer."""

    status: int
    body: Json


async def store_instances(runtime: ServiceRuntime, blobs: BlobStore, principal: Principal,
                          content_type: str | None, body: AsyncIterable[bytes],
                          retrieve_base: str) -> StowResult:
    """Store every part of a STOW-RS request (module docstring); ``retrieve_base`` is
    the WADO-RS studies URL the answer's Retrieve URLs start with.

    Raises:
        UnsupportedMediaType (415), BadRequest (400): the body as a whole is refused
        (then nothing is stored); a refused part is reported in the answer instead.
    """
    boundary = boundary_of(content_type)
    stored: list[Json] = []
    failed: list[Json] = []
    with tempfile.TemporaryDirectory(prefix="xray-stow-") as tmp:
        for path in await _spool(body, boundary, Path(tmp)):
            sop_class, sop_uid, accession = await asyncio.to_thread(identity, path)
            item: dict[str, Any] = {"00081150": attribute("UI", sop_class),
                                    "00081155": attribute("UI", sop_uid)}
            try:
                upload = await studies.receive(runtime, blobs, file_chunks(path), accession,
                                               principal.subject)
            except Exception as exc:  # each part's outcome is answered, none aborts the rest
                reason = status_of(exc) if sop_uid else CANNOT_UNDERSTAND
                log.log(logging.WARNING if reason == OUT_OF_RESOURCES else logging.INFO,
                        "STOW-RS part refused", extra={"error": type(exc).__name__,
                                                       "status": reason})
                failed.append(item | {"00081197": attribute("US", reason)})
                continue
            study_uid = upload.study["study_uid"]
            url = (f"{retrieve_base}/{study_uid}/series/{upload.instance['series_uid']}"
                   f"/instances/{sop_uid}")
            stored.append(item | {"00081190": attribute("UR", url)})
    answer: Json = {"00081199": {"vr": "SQ", "Value": stored} if stored else {"vr": "SQ"},
                    "00081198": {"vr": "SQ", "Value": failed} if failed else {"vr": "SQ"}}
    return StowResult(200 if not failed else (202 if stored else 409), answer)
