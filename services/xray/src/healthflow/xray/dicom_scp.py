"""The DICOM C-STORE storage SCP: modalities push images the way they push to a PACS
(DICOM PS3.4 Annex B, Storage Service Class; PS3.7 §9.1.1 C-STORE; PS3.8 association).

A worker of the xray service (:class:`StorageScp`, started and stopped with it) runs a
pynetdicom Application Entity on ``XRAY_DICOM_PORT`` under ``XRAY_DICOM_AE_TITLE``:

* associations are accepted only from the calling AE titles in
  ``XRAY_DICOM_CALLING_AE_TITLES``; any other is rejected at association (A-ASSOCIATE-RJ,
  rejected-permanent, service-user, "calling AE title not recognised", PS3.8 §9.3.4).
  With none configured the SCP does not start (it would otherwise accept anyone);
* the presentation contexts offered are the projection-radiography storage SOP classes
  (:data:`SOP_CLASSES`) in the transfer syntaxes the upload accepts;
* each received instance is written by pynetdicom straight to a temporary Part 10 file
  as its P-DATA fragments arrive (``_config.STORE_RECV_CHUNKED_DATASET``), so memory
  stays bounded whatever its size; the disk it takes is bounded too: past
  ``XRAY_UPLOAD_MAX_BYTES`` the rest of the dataset is read off the connection and
  dropped (:class:`Bounded`), and the instance is refused ``OUT_OF_RESOURCES`` (0xA700)
  once it has arrived, before anything is stored; any other is streamed from that file
  by :func:`healthflow.xray.studies.receive` (the upload's checks
  :func:`healthflow.xray.imaging.inspect`, blob store, ``ImagingStudy``,
  ``xray.uploaded``), linked to its order by Accession Number. The file is removed once
  the handler returns (pynetdicom, and the handler itself), and when the association
  ends with a dataset half received (an abort, a lost connection, the network timeout:
  :meth:`StorageScp._on_close`; pynetdicom leaves those files behind);
* at most ``XRAY_DICOM_MAX_ASSOCIATIONS`` associations at once (any more are rejected,
  transient), of which at most ``XRAY_DICOM_MAX_ASSOCIATIONS_PER_CALLING_AE`` from one
  calling AE title and ``XRAY_DICOM_MAX_ASSOCIATIONS_PER_PEER`` from one peer address
  (:func:`over_peer_limit`, checked when the A-ASSOCIATE-RQ arrives: any more are
  rejected transient, service-user, no reason given, so one modality or host that
  opens associations in a loop cannot take every slot from the others), each waiting
  at most ``XRAY_DICOM_ACSE_TIMEOUT`` / ``XRAY_DICOM_DIMSE_TIMEOUT`` /
  ``XRAY_DICOM_NETWORK_TIMEOUT`` seconds for its peer (a stalled peer is aborted and
  its half-received dataset removed).

:class:`Bounded` and :meth:`StorageScp._on_close` reach into pynetdicom 3.0's receiving
message (``Association.dimse.message._data_set_file``, ``dimse.msg_queue``): it offers
no public hook to bound or clean up a dataset being received; the tests of this module
pin that behaviour.

``_config.STORE_RECV_CHUNKED_DATASET`` is process-global: :meth:`StorageScp.start`
sets it, which also makes any other pynetdicom SCP in the process receive to files
(none does; the service runs one SCP).

pynetdicom runs each association in a thread; the handler hands the instance to the
service's event loop and waits for the outcome, which becomes the C-STORE status
(:func:`status_of`). Nothing of the dataset (names, ids) is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.uid import UID
from pynetdicom import AE, _config, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ComputedRadiographyImageStorage,
    DigitalIntraOralXRayImageStorageForPresentation,
    DigitalIntraOralXRayImageStorageForProcessing,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from healthflow.common.blobs import BlobStore
from healthflow.common.problems import Problem
from healthflow.common.service import ServiceRuntime
from healthflow.xray import imaging, studies
from healthflow.xray.domain import InvalidImage, OrderNotFound
from healthflow.xray.settings import Settings

log = logging.getLogger(__name__)
logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its DEBUG dumps datasets

SOP_CLASSES: tuple[UID, ...] = (
    ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing, DigitalIntraOralXRayImageStorageForPresentation,
    DigitalIntraOralXRayImageStorageForProcessing)
"""Storage SOP classes of CR, DX and IO images (PS3.4 B.5)."""

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # Refused: Out of Resources (PS3.4 B.2.3)
CANNOT_UNDERSTAND = 0xC000  # Error: Cannot understand — the file fails a check
NO_ORDER = 0xC001  # Error (C000-CFFF, SCP-specific): no active order of its Accession Number
REFUSED = 0xC002  # Error: the order's rules refuse it (patient, closed, UID of another file)
RECEIVE_TIMEOUT = 120.0
"""Seconds a C-STORE waits for the instance to be checked and stored; past it the store
is cancelled (nothing kept) and the status is ``OUT_OF_RESOURCES``."""
CHUNK = 256 * 1024
"""Bytes read from a received file at a time."""
REJECT_BUSY = (0x02, 0x01, 0x01)
"""A-ASSOCIATE-RJ result, source, reason: rejected-transient, DUL service-user, no reason
given (PS3.8 §7.1.1.9, Table 9-21): the peer may try again later."""


def _peer(assoc: Any) -> tuple[str, str | None]:
    """(calling AE title, peer IP address) of an acceptor association; the title is
    empty while its A-ASSOCIATE-RQ has not arrived."""
    primitive = assoc.requestor.primitive
    title = str(primitive.calling_ae_title).strip() if primitive is not None else ""
    info = assoc.requestor.address_info
    return title, None if info is None else str(info.address)


def over_peer_limit(assoc: Any, per_title: int, per_address: int) -> str | None:
    """Which per-peer limit the association ``assoc`` being requested would pass —
    ``calling-ae-title`` (``per_title`` others of its calling AE title) or
    ``peer-address`` (``per_address`` others from its IP address) — or None. Counts the
    AE's other live acceptor associations (pynetdicom's threads: an association that
    ended is gone, so nothing is to be released by hand)."""
    title, address = _peer(assoc)
    others = [_peer(a) for a in assoc.ae.active_associations
              if a is not assoc and a.is_acceptor
              and not (a.is_rejected or a.is_aborted or a.is_released)]
    if title and sum(t == title for t, _ in others) >= per_title:
        return "calling-ae-title"
    if address is not None and sum(a == address for _, a in others) >= per_address:
        return "peer-address"
    return None


def identity(path: Path) -> tuple[str, str, str]:
    """(SOP Class UID, SOP Instance UID, Accession Number) from a Part 10 file's header
    (pixel data not read), or blanks when it does not parse."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(path, stop_before_pixels=True, specific_tags=[
                "SOPClassUID", "SOPInstanceUID", "AccessionNumber"])
        return tuple(str(ds.get(k, "") or "").strip() for k in (  # type: ignore[return-value]
            "SOPClassUID", "SOPInstanceUID", "AccessionNumber"))
    except Exception:  # any parser error: the file is refused by the full check later
        return "", "", ""


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    """The bytes of ``path`` in ``CHUNK``-sized pieces, read in a worker thread."""
    with path.open("rb") as file:
        while chunk := await asyncio.to_thread(file.read, CHUNK):
            yield chunk


def status_of(error: BaseException | None) -> int:
    """The C-STORE status (PS3.4 B.2.3) of storing an instance: ``SUCCESS`` (0x0000);
    ``CANNOT_UNDERSTAND`` (0xC000) for a file that fails the upload's checks
    (:class:`InvalidImage`); ``NO_ORDER`` (0xC001) when no order has its Accession
    Number; ``REFUSED`` (0xC002) for any other client error (patient mismatch, order
    closed, another file under a stored UID; the same file again is a success);
    ``OUT_OF_RESOURCES`` (0xA700) for anything else."""
    if error is None:
        return SUCCESS
    if isinstance(error, InvalidImage):
        return CANNOT_UNDERSTAND
    if isinstance(error, OrderNotFound):
        return NO_ORDER
    if isinstance(error, Problem) and 400 <= error.status < 500:
        return REFUSED
    return OUT_OF_RESOURCES


class Bounded:
    """Stands in for pynetdicom's temporary file of a C-STORE dataset being received
    (``DIMSEMessage._data_set_file``, a ``NamedTemporaryFile``): writes reach the file
    until it holds ``limit`` bytes; past that they are counted and dropped and
    ``overflowed`` is set, so a peer sending more can take neither memory nor disk.
    ``name``, ``file`` (flushed by pynetdicom) and :meth:`close` are the file's."""

    def __init__(self, file: Any, limit: int) -> None:
        self._file, self.limit = file, limit
        self.name, self.file = file.name, file.file
        self.size = int(file.tell())
        self.overflowed = self.size > limit

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.overflowed or self.size > self.limit:
            self.overflowed = True
            return len(data)
        return int(self._file.write(data))

    def close(self) -> None:
        self._file.close()


def _remove(file: Any) -> None:
    """Close and delete a received dataset's temporary file (best effort)."""
    with contextlib.suppress(Exception):
        file.close()
    with contextlib.suppress(Exception):
        Path(file.name).unlink(missing_ok=True)


class StorageScp:
    """The storage SCP as a service worker (:mod:`healthflow.common.workers`)."""

    name = "dicom-scp"

    def __init__(self, runtime: ServiceRuntime, blobs: BlobStore, settings: Settings) -> None:
        self.runtime, self.blobs, self.settings = runtime, blobs, settings
        self.server: ThreadedAssociationServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def port(self) -> int | None:
        """The port it listens on (the one bound when configured as 0), once started."""
        return None if self.server is None else int(self.server.server_address[1])

    async def start(self) -> None:
        titles = self.settings.dicom_calling_ae_titles
        if not titles:
            log.info("DICOM storage SCP off: no calling AE titles are configured")
            return
        self.loop = asyncio.get_running_loop()
        # Process-global (module docstring): each C-STORE dataset goes to a temp file.
        _config.STORE_RECV_CHUNKED_DATASET = True
        ae = AE(ae_title=self.settings.dicom_ae_title)
        ae.require_calling_aet = list(titles)
        ae.maximum_associations = self.settings.dicom_max_associations
        ae.acse_timeout = self.settings.dicom_acse_timeout
        ae.dimse_timeout = self.settings.dicom_dimse_timeout
        ae.network_timeout = self.settings.dicom_network_timeout
        syntaxes = sorted(imaging.TRANSFER_SYNTAXES)
        for sop_class in SOP_CLASSES:
            ae.add_supported_context(sop_class, syntaxes)
        ae.add_supported_context(Verification)  # C-ECHO, for modality set-up
        self.server = await asyncio.to_thread(
            ae.start_server, (self.settings.dicom_host or self.settings.host,
                              self.settings.dicom_port),
            block=False, evt_handlers=[
                (evt.EVT_REQUESTED, self._on_requested),
                (evt.EVT_C_STORE, self._on_store), (evt.EVT_PDU_RECV, self._on_pdu),
                (evt.EVT_ABORTED, self._on_close), (evt.EVT_CONN_CLOSE, self._on_close)])
        log.info("DICOM storage SCP listening", extra={"port": self.port})

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            await asyncio.to_thread(server.shutdown)

    def _on_requested(self, event: Any) -> None:
        """EVT_REQUESTED, in the association's thread once its A-ASSOCIATE-RQ arrived and
        before pynetdicom negotiates it: reject it (:data:`REJECT_BUSY`) past a
        per-peer limit (:func:`over_peer_limit`); pynetdicom then skips the negotiation
        and closes the connection."""
        settings = self.settings
        limit = over_peer_limit(event.assoc, settings.dicom_max_associations_per_calling_ae,
                                settings.dicom_max_associations_per_peer)
        if limit is None:
            return
        log.warning("DICOM association rejected: per-peer limit reached", extra={
            "limit": limit, "calling_ae_title": _peer(event.assoc)[0]})
        event.assoc.acse.send_reject(*REJECT_BUSY)
        event.assoc.kill()

    def _on_pdu(self, event: Any) -> None:
        """EVT_PDU_RECV, in the association's DUL thread before the PDU is decoded: once
        pynetdicom has opened the temporary file of a C-STORE dataset, put
        :class:`Bounded` in front of it (at most one PDU is written before)."""
        message = getattr(event.assoc.dimse, "message", None)
        file = getattr(message, "_data_set_file", None)
        if file is not None and not isinstance(file, Bounded):
            message._data_set_file = Bounded(  # type: ignore[union-attr]
                file, self.settings.upload_max_bytes)

    def _on_close(self, event: Any) -> None:
        """EVT_ABORTED / EVT_CONN_CLOSE: delete the temporary file of a dataset still
        being received, or received and not yet handled, when the association ends."""
        dimse = event.assoc.dimse
        message = getattr(dimse, "message", None)
        files = [getattr(message, "_data_set_file", None)]
        with contextlib.suppress(Exception):
            files += [getattr(primitive, "_dataset_file", None)
                      for _, primitive in list(dimse.msg_queue.queue)]
        for file in files:
            if file is not None:
                _remove(file)

    def _on_store(self, event: Any) -> int:
        """EVT_C_STORE, in pynetdicom's association thread: store on the service's loop.
        The dataset is the file at ``event.dataset_path`` (module docstring)."""
        path = Path(event.dataset_path)
        calling = str(event.assoc.requestor.ae_title).strip()
        try:
            if getattr(event.request, "_dataset_file", None) is not None and \
                    getattr(event.request._dataset_file, "overflowed", False):
                log.info("C-STORE refused: larger than the maximum", extra={
                    "status": OUT_OF_RESOURCES, "calling_ae_title": calling})
                return OUT_OF_RESOURCES
            return self._store_file(path, calling)
        finally:
            with contextlib.suppress(OSError):
                path.unlink()  # pynetdicom removes it too; this one holds on any path

    def _store_file(self, path: Path, calling: str) -> int:
        assert self.loop is not None
        if path.stat().st_size > self.settings.upload_max_bytes:
            log.info("C-STORE refused: larger than the maximum", extra={
                "status": OUT_OF_RESOURCES, "calling_ae_title": calling})
            return OUT_OF_RESOURCES
        _, _, accession = identity(path)
        future = asyncio.run_coroutine_threadsafe(studies.receive(
            self.runtime, self.blobs, file_chunks(path), accession, f"dicom:{calling}"),
            self.loop)
        try:
            future.result(timeout=RECEIVE_TIMEOUT)
        except Exception as exc:
            # Stop a store still under way (TimeoutError): the modality is told 0xA700 and
            # sends again; stored anyway, its retry would be refused as a duplicate. Its
            # blob is deleted and its transaction rolled back (BlobStore.staged).
            future.cancel()
            status = status_of(exc)
            log.log(logging.WARNING if status == OUT_OF_RESOURCES else logging.INFO,
                    "C-STORE refused", extra={"error": type(exc).__name__, "status": status,
                                              "calling_ae_title": calling})
            return status
        return SUCCESS
