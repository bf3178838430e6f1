"""WADO-RS metadata (DICOM PS3.18 §10.4.1.1.2, ``…/studies/{study}/metadata``,
``…/series/{series}/metadata``, ``…/instances/{sop}/metadata``): each DICOM instance of
the study, series or instance as an object of the DICOM JSON Model (PS3.18 Annex F.2),
so a viewer such as OHIF can load a study: every attribute of the stored file's data
set (its header), plus Available Transfer Syntax UID (0008,3002) at the instance level.

Pixel Data (7FE0,0010) of an image is ``{"vr": "OB" | "OW", "BulkDataURI": …}`` (F.2.6)
naming the instance's WADO-RS frames resource (:mod:`.wado_frames`, all of its frames,
uncompressed on request), from which viewers load the pixels. Other binary values (VR
OB, OD, OF, OL, OV, OW, UN) larger than :data:`BULK_LIMIT` bytes (an icon image, a
private blob) are left out; smaller ones are ``InlineBinary`` (base64, F.2.7). Elements
whose value does not convert are skipped (pydicom ``suppress_invalid_tags``), never
answered half-made.

The header is computed once: when the instance is stored (:func:`header_json` on the
upload's spooled copy: HTTP upload, C-STORE, STOW-RS; collection ``headers``), so a
metadata read never touches the blob store. Instances stored before that (and the
machine's measurement SRs, made by the worker) get theirs on their first metadata read:
the file is copied from the blob store to local disk in chunks, parsed in a worker
thread, and its header kept (:func:`healthflow.xray.store.keep_header`).

Access and audit are DICOMweb's (:func:`healthflow.xray.dicomweb.study_instances`: the
patient their own studies — the machine's SR only once the report is signed — a
treating doctor those of patients they treat, ``xray.accessed`` scope ``dicomweb``).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from healthflow.common.auth import Principal
from healthflow.common.blobs import BlobStore
from healthflow.common.mongo import Document, utcnow
from healthflow.common.service import ServiceRuntime
from healthflow.xray import dicomweb, imaging, store

Json = dict[str, Any]
MEDIA_TYPE = "application/dicom+json"
BULK_LIMIT = 64 * 1024
"""Binary values above this many bytes are left out of the metadata."""
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
ACCEPTED = (MEDIA_TYPE, "application/json", "application/*", "*/*")


def check_accept(accept: str | None) -> None:
    """The metadata is ``application/dicom+json`` (PS3.18 §8.7.3.5.2); ``Accept`` must
    take it (absent, ``application/json`` and wildcards do; ``q=0`` refuses).

    Raises:
        dicomweb.NotAcceptable (406): e.g. ``multipart/related; type="application/dicom"``
        (that is the instances' resource) or ``application/dicom+xml``.
    """
    if not accept or not accept.strip():
        return
    ranges = parse_accept_header(accept, MIMEAccept)
    if not any(quality > 0 and entry.split(";")[0].strip().lower() in ACCEPTED
               for entry, quality in ranges):
        raise dicomweb.NotAcceptable(f"the metadata is served as {MEDIA_TYPE}",
                                     offered=[MEDIA_TYPE])


def _without_bulk(ds: Dataset) -> None:
    """Delete binary values, and text values (UT, LT, … can hold up to 4 GiB), larger than
    :data:`BULK_LIMIT`, at every nesting level: the stored header stays far below the
    database's 16 MiB document limit whatever a modality sends."""
    def callback(dataset: Dataset, element: Any) -> None:
        if element.VR == "SQ":
            return
        value = element.value
        binary = element.VR in BINARY_VRS or isinstance(value, str | bytes)
        if binary and len(value or b"") > BULK_LIMIT:
            del dataset[element.tag]

    ds.walk(callback)


PIXEL_DATA = "7FE00010"
ENCAPSULATED_VR = "OB"


def _pixel_vr(ds: Dataset) -> str:
    """The VR of the file's Pixel Data (PS3.5 §A.1, §A.4): OB when encapsulated, OW for
    native pixels of more than 8 bits allocated, OB for 8 bits."""
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is not None and UID(str(syntax)).is_encapsulated:
        return ENCAPSULATED_VR
    return "OW" if int(ds.get("BitsAllocated", 16) or 16) > 8 else "OB"


def header_json(path: Path) -> str:
    """The header of the DICOM Part 10 file at ``path`` in the DICOM JSON Model, as JSON
    text (blocking: run it in a thread): the data set's attributes before Pixel Data
    (the File Meta Information is not part of it), binary values larger than
    :data:`BULK_LIMIT` left out, and for an image (one with Rows) Pixel Data as
    ``{"vr": …}`` with neither value nor URI (:func:`served` adds the URI)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(path, stop_before_pixels=True, defer_size=imaging.DEFER_SIZE)
        _without_bulk(ds)
        found: Json = ds.to_json_dict(bulk_data_threshold=BULK_LIMIT,
                                      suppress_invalid_tags=True)
    if "Rows" in ds:
        found[PIXEL_DATA] = {"vr": _pixel_vr(ds)}
    return json.dumps(dict(sorted(found.items())), separators=(",", ":"))


def frames_url(base: str, study_uid: str, instance: Document, frames: int) -> str:
    """The WADO-RS frames resource of all ``frames`` frames of ``instance`` under the
    DICOMweb ``base`` URL (``…/studies``)."""
    listed = ",".join(str(n) for n in range(1, frames + 1))
    return (f"{base}/{study_uid}/series/{instance['series_uid']}/instances/"
            f"{instance['sop_instance_uid']}/frames/{listed}")


def served(header: str, instance: Document, study_uid: str, base: str) -> Json:
    """The metadata of ``instance`` from its stored ``header`` (:func:`header_json`):
    the stored instance's transfer syntax as Available Transfer Syntax UID, and Pixel
    Data's BulkDataURI (:func:`frames_url`)."""
    found: Json = json.loads(header)
    syntax = instance["image"].get("transfer_syntax")
    if syntax:
        found["00083002"] = {"vr": "UI", "Value": [str(syntax)]}
    if PIXEL_DATA in found:
        frames = int((found.get("00280008", {}).get("Value") or [1])[0] or 1)
        found[PIXEL_DATA]["BulkDataURI"] = frames_url(base, study_uid, instance, frames)
    return dict(sorted(found.items()))


async def _header_of(runtime: ServiceRuntime, blobs: BlobStore, instance: Document,
                     tmp: Path) -> str:
    """The header of an instance stored before headers were: computed from its file
    (copied to ``tmp``) and kept."""
    path = tmp / "instance"
    with path.open("wb") as file:
        async for chunk in blobs.stream(instance["blob"]["key"]):
            await asyncio.to_thread(file.write, chunk)
    header = await asyncio.to_thread(header_json, path)
    await store.keep_header(runtime.db, instance["_id"], header, utcnow())
    return header


async def metadata(runtime: ServiceRuntime, blobs: BlobStore, principal: Principal,
                   study_uid: str, series_uid: str | None = None,
                   sop_uid: str | None = None, base: str = "") -> list[Json]:
    """The metadata of the DICOM instances of ``study_uid`` (optionally of one series or
    one instance), in instance order (:mod:`this module <.wado_metadata>`); ``base``
    the public DICOMweb URL of the studies (``…/api/v1/dicomweb/studies``) for the
    BulkDataURIs.

    Raises:
        StudyNotFound (404: no such study, another patient's, nothing matches),
        NotTreating (403).
    """
    found = await dicomweb.study_instances(runtime, principal, study_uid, series_uid,
                                           sop_uid)
    headers = await store.headers_of(runtime.db, [i["_id"] for i in found.instances])
    answer: list[Json] = []
    with tempfile.TemporaryDirectory(prefix="xray-") as tmp:
        for instance in found.instances:
            header = headers.get(instance["_id"]) or \
                await _header_of(runtime, blobs, instance, Path(tmp))
            answer.append(served(header, instance, study_uid, base))
    return answer
