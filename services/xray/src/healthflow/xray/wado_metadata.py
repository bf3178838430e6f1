"""WADO-RS metadata (DICOM PS3.18 §10.4.1.1.2, ``…/studies/{study}/metadata``,
``…/series/{series}/metadata``, ``…/instances/{sop}/metadata``): each DICOM instance of
the study, series or instance as an object of the DICOM JSON Model (PS3.18 Annex F.2),
so a viewer such as OHIF can load a study: every attribute of the stored file's data
set up to its Pixel Data (read from the file's header, the pixels never read), plus
Available Transfer Syntax UID (0008,3002) at the instance level.

Left out: Pixel Data (this service serves rendered frames, §9.5, not bulk data: there is
no BulkDataURI to give) and other binary values (VR OB, OD, OF, OL, OV, OW, UN) larger
than :data:`BULK_LIMIT` bytes (an icon image, a private blob); smaller ones are
``InlineBinary`` (base64, F.2.7). Elements whose value does not convert are skipped
(pydicom ``suppress_invalid_tags``), never answered half-made.

Access and audit are DICOMweb's (:func:`healthflow.xray.dicomweb.study_instances`: the
patient their own studies — the machine's SR only once the report is signed — a
treating doctor those of patients they treat, ``xray.accessed`` scope ``dicomweb``).
Each file is copied from the blob store to local disk in chunks and parsed there, one
at a time, in a worker thread.
"""

from __future__ import annotations

import asyncio
import tempfile
import warnings
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from healthflow.common.auth import Principal
from healthflow.common.blobs import BlobStore
from healthflow.common.mongo import Document
from healthflow.common.service import ServiceRuntime
from healthflow.xray import dicomweb, imaging

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
    """Delete binary values larger than :data:`BULK_LIMIT`, at every nesting level."""
    def callback(dataset: Dataset, element: Any) -> None:
        if element.VR in BINARY_VRS and len(element.value or b"") > BULK_LIMIT:
            del dataset[element.tag]

    ds.walk(callback)


def instance_metadata(path: Path, instance: Document) -> Json:
    """The DICOM JSON of the Part 10 file at ``path`` (blocking: run it in a thread),
    the stored ``instance``'s transfer syntax as Available Transfer Syntax UID."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(path, stop_before_pixels=True, defer_size=imaging.DEFER_SIZE)
        _without_bulk(ds)
        found: Json = ds.to_json_dict(bulk_data_threshold=BULK_LIMIT,
                                      suppress_invalid_tags=True)
    syntax = instance["image"].get("transfer_syntax") or ds.file_meta.get("TransferSyntaxUID")
    if syntax:
        found["00083002"] = {"vr": "UI", "Value": [str(syntax)]}
    return dict(sorted(found.items()))


async def metadata(runtime: ServiceRuntime, blobs: BlobStore, principal: Principal,
                   study_uid: str, series_uid: str | None = None,
                   sop_uid: str | None = None) -> list[Json]:
    """The metadata of the DICOM instances of ``study_uid`` (optionally of one series or
    one instance), in instance order (:mod:`this module <.wado_metadata>`).

    Raises:
        StudyNotFound (404: no such study, another patient's, nothing matches),
        NotTreating (403).
    """
    found = await dicomweb.study_instances(runtime, principal, study_uid, series_uid,
                                           sop_uid)
    answer: list[Json] = []
    with tempfile.TemporaryDirectory(prefix="xray-") as tmp:
        path = Path(tmp) / "instance"
        for instance in found.instances:
            with path.open("wb") as file:
                async for chunk in blobs.stream(instance["blob"]["key"]):
                    await asyncio.to_thread(file.write, chunk)
            answer.append(await asyncio.to_thread(instance_metadata, path, instance))
    return answer
