"""The C-STORE storage SCP over a real TCP association, pynetdicom as the modality (SCU):
an instance of an order is stored like an upload; an unknown AE title is rejected at
association; a corrupt dataset and one without an order are refused, nothing stored."""

from __future__ import annotations

import asyncio
import io
import tempfile
import time
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import ComputedRadiographyImageStorage  # type: ignore[attr-defined]

from healthflow.common.events.outbox import recorded_events
from healthflow.devkit.dicom import radiograph
from healthflow.devkit.testing import running_app
from healthflow.xray import dicom_scp, studies
from healthflow.xray.app import create_app

from .conftest import MODALITY, PATIENT, ordered, settings_for


def c_store(port: int, datasets: list[Dataset], calling: str = MODALITY) -> list[int] | None:
    """Send ``datasets`` in one association as ``calling``: their C-STORE statuses, or
    None when the SCP rejects the association (blocking: run it in a thread)."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(ComputedRadiographyImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="HEALTHFLOW")
    if assoc.is_rejected:  # A-ASSOCIATE-RJ, not a lost connection or an abort
        return None
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


async def test_a_modality_stores_an_order_s_image_over_c_store(pacs, tokens) -> None:
    http, app = pacs
    order = await ordered(http, app, tokens)
    port = app.state.dicom_scp.port
    good = dcmread(io.BytesIO(radiograph(PATIENT, accession_number=order["accession_number"])))
    corrupt = dcmread(io.BytesIO(radiograph(PATIENT,
                                            accession_number=order["accession_number"])))
    corrupt.PixelData = corrupt.PixelData[:-512]  # pixel data shorter than Rows × Columns
    orphan = dcmread(io.BytesIO(radiograph(PATIENT, accession_number="HF000000000000")))
    statuses = await asyncio.to_thread(c_store, port, [good, corrupt, orphan])
    assert statuses == [0x0000, 0xC000, 0xC001]
    db = app.state.runtime.db
    [instance] = await db["instances"].find().to_list()
    assert instance["sop_instance_uid"] == good.SOPInstanceUID
    assert instance["uploaded_by"] == f"dicom:{MODALITY}"
    assert len(await app.state.blobs.keys()) == 1
    [uploaded] = await recorded_events(db, {"type": "xray.uploaded"})
    assert (uploaded.data or {})["order_id"] == order["id"]
    # the same instance again (a modality that lost the answer): success, stored once;
    # another file under its SOP Instance UID: refused
    other = dcmread(io.BytesIO(radiograph(PATIENT, accession_number=order["accession_number"])))
    other.SOPInstanceUID = good.SOPInstanceUID
    other.file_meta.MediaStorageSOPInstanceUID = good.SOPInstanceUID
    again = await asyncio.to_thread(c_store, port, [good, other])
    assert again == [0x0000, 0xC002]
    assert await db["instances"].count_documents({}) == 1
    # the copy received again is deleted
    assert len(await app.state.blobs.keys(prefix="xray/")) == 1
    assert len(await recorded_events(db, {"type": "xray.uploaded"})) == 1
    assert (await db["studies"].find_one())["last_number"] == 1


async def test_an_unknown_calling_ae_title_is_rejected_at_association(pacs, tokens) -> None:
    http, app = pacs
    order = await ordered(http, app, tokens)
    image = dcmread(io.BytesIO(radiograph(PATIENT, accession_number=order["accession_number"])))
    rejected = await asyncio.to_thread(c_store, app.state.dicom_scp.port, [image], "STRANGER")
    assert rejected is None
    assert await app.state.runtime.db["instances"].count_documents({}) == 0
    assert await app.state.blobs.keys() == []


async def test_without_calling_ae_titles_the_scp_does_not_listen(xray) -> None:
    _, app = xray
    assert app.state.dicom_scp.port is None


async def test_a_c_store_that_times_out_is_not_stored_after_the_failure_was_answered(
        pacs, tokens, monkeypatch) -> None:
    """The modality is told 0xA700 (out of resources: send again later) when storing takes
    longer than RECEIVE_TIMEOUT; the store still under way must then stop and keep
    nothing, or the retry would be refused as a duplicate of an image the modality was
    told was not stored."""
    http, app = pacs
    order = await ordered(http, app, tokens)
    image = dcmread(io.BytesIO(radiograph(PATIENT, accession_number=order["accession_number"])))
    gate, tasks = asyncio.Event(), []
    real_receive = studies.receive

    async def slow_receive(*args: Any, **kwargs: Any) -> Any:
        tasks.append(asyncio.current_task())
        await gate.wait()  # held until the modality has had its answer
        return await real_receive(*args, **kwargs)

    monkeypatch.setattr(studies, "receive", slow_receive)
    monkeypatch.setattr(dicom_scp, "RECEIVE_TIMEOUT", 1.0)
    statuses = await asyncio.to_thread(c_store, app.state.dicom_scp.port, [image])
    assert statuses == [dicom_scp.OUT_OF_RESOURCES]
    gate.set()
    if tasks:  # started before the timeout: wait until it has ended either way
        await asyncio.wait(tasks)
    assert await app.state.runtime.db["instances"].count_documents({}) == 0
    assert await app.state.blobs.keys() == []
    assert await recorded_events(app.state.runtime.db, {"type": "xray.uploaded"}) == []


async def test_a_c_store_dataset_over_the_maximum_is_refused_and_its_file_removed(
        mongodb_url, s3_env, unique_name, tokens, tmp_path, monkeypatch) -> None:
    """pynetdicom writes the dataset to a temporary file as it arrives (memory bounded);
    one larger than XRAY_UPLOAD_MAX_BYTES is refused 0xA700 (PS3.4 B.2.3, Refused: Out
    of Resources) with nothing stored, a smaller one is stored from the file; no
    temporary file is left either way."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where pynetdicom spools
    small = radiograph(PATIENT, accession_number="HF-PENDING")
    app = create_app(settings_for(mongodb_url, s3_env, unique_name, dicom_port=0,
                                  dicom_calling_ae_titles=[MODALITY],
                                  upload_max_bytes=len(small) + 4096))
    app.state.verifier = tokens.verifier()
    async with running_app(app) as http:
        order = await ordered(http, app, tokens)
        fits = dcmread(io.BytesIO(radiograph(PATIENT,
                                             accession_number=order["accession_number"])))
        large = dcmread(io.BytesIO(radiograph(PATIENT, rows=1024, columns=1024,
                                              accession_number=order["accession_number"])))
        statuses = await asyncio.to_thread(c_store, app.state.dicom_scp.port, [large, fits])
        assert statuses == [dicom_scp.OUT_OF_RESOURCES, 0x0000]
        [instance] = await app.state.runtime.db["instances"].find().to_list()
        assert instance["sop_instance_uid"] == fits.SOPInstanceUID
        assert len(await app.state.blobs.keys()) == 1
        assert len(await recorded_events(app.state.runtime.db,
                                         {"type": "xray.uploaded"})) == 1
    assert list(tmp_path.iterdir()) == []


def partial_c_store(port: int, ds: Dataset, *, abort: bool) -> None:
    """Send all but the last P-DATA of a C-STORE of ``ds`` as MODALITY, then abort the
    association (``abort``) or stall, leaving the SCP to time the association out."""
    ae = AE(ae_title=MODALITY)
    ae.add_requested_context(ComputedRadiographyImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="HEALTHFLOW")
    assert assoc.is_established
    request = C_STORE()
    request.MessageID, request.Priority = 1, 2
    request.AffectedSOPClassUID = ds.SOPClassUID
    request.AffectedSOPInstanceUID = ds.SOPInstanceUID
    request.DataSet = io.BytesIO(encode(ds, False, True))
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    context_id = assoc.accepted_contexts[0].context_id
    parts = list(message.encode_msg(context_id, assoc.acceptor.maximum_length))
    assert len(parts) > 3
    for part in parts[:-1]:
        assoc.dul.send_pdu(part)
    time.sleep(0.5)  # the SCP has written what it received to its temporary file
    if abort:
        assoc.abort()
    else:
        deadline = time.monotonic() + 10
        while assoc.is_established and time.monotonic() < deadline:
            time.sleep(0.1)
        assert assoc.is_aborted, "the SCP did not time the stalled association out"


async def _no_file_left(path: Any) -> None:
    for _ in range(50):
        if not list(path.iterdir()):
            return
        await asyncio.sleep(0.1)
    assert list(path.iterdir()) == []


async def test_a_dataset_half_received_leaves_no_temporary_file(
        mongodb_url, s3_env, unique_name, tokens, tmp_path, monkeypatch) -> None:
    """A modality that aborts in the middle of a C-STORE, or stalls until the SCP's
    XRAY_DICOM_NETWORK_TIMEOUT aborts it, leaves no temporary file and nothing stored
    (pynetdicom itself removes the file only once the C-STORE has been handled)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where pynetdicom spools
    app = create_app(settings_for(mongodb_url, s3_env, unique_name, dicom_port=0,
                                  dicom_calling_ae_titles=[MODALITY],
                                  dicom_network_timeout=1.0))
    app.state.verifier = tokens.verifier()
    async with running_app(app) as http:
        order = await ordered(http, app, tokens)
        image = dcmread(io.BytesIO(radiograph(PATIENT, rows=512, columns=512,
                                              accession_number=order["accession_number"])))
        port = app.state.dicom_scp.port
        await asyncio.to_thread(partial_c_store, port, image, abort=True)
        await _no_file_left(tmp_path)
        await asyncio.to_thread(partial_c_store, port, image, abort=False)
        await _no_file_left(tmp_path)
        assert await app.state.runtime.db["instances"].count_documents({}) == 0
        assert await app.state.blobs.keys() == []


async def test_past_the_maximum_a_dataset_is_dropped_as_it_arrives(
        mongodb_url, s3_env, unique_name, tokens, tmp_path, monkeypatch) -> None:
    """The temporary file of an instance larger than XRAY_UPLOAD_MAX_BYTES never grows
    past that size (the rest is read and dropped), and the instance is refused 0xA700."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    sizes: list[int] = []
    real_on_store = dicom_scp.StorageScp._on_store

    def measured(self: dicom_scp.StorageScp, event: Any) -> int:
        sizes.append(Path(event.dataset_path).stat().st_size)
        return real_on_store(self, event)

    monkeypatch.setattr(dicom_scp.StorageScp, "_on_store", measured)
    limit = 256 * 1024
    app = create_app(settings_for(mongodb_url, s3_env, unique_name, dicom_port=0,
                                  dicom_calling_ae_titles=[MODALITY], upload_max_bytes=limit))
    app.state.verifier = tokens.verifier()
    async with running_app(app) as http:
        order = await ordered(http, app, tokens)
        large = dcmread(io.BytesIO(radiograph(PATIENT, rows=1024, columns=1024,
                                              accession_number=order["accession_number"])))
        statuses = await asyncio.to_thread(c_store, app.state.dicom_scp.port, [large])
        assert statuses == [dicom_scp.OUT_OF_RESOURCES]
        assert sizes and max(sizes) <= limit
        assert await app.state.runtime.db["instances"].count_documents({}) == 0
    assert list(tmp_path.iterdir()) == []


async def test_the_scp_takes_its_limits_from_the_settings(
        mongodb_url, s3_env, unique_name, tokens) -> None:
    """At most XRAY_DICOM_MAX_ASSOCIATIONS associations at once: one more is rejected
    while the others last; the ACSE and DIMSE timeouts are the configured ones."""
    app = create_app(settings_for(mongodb_url, s3_env, unique_name, dicom_port=0,
                                  dicom_calling_ae_titles=[MODALITY],
                                  dicom_max_associations=1, dicom_acse_timeout=7.0,
                                  dicom_dimse_timeout=9.0))
    app.state.verifier = tokens.verifier()
    async with running_app(app):
        server = app.state.dicom_scp.server
        assert (server.ae.acse_timeout, server.ae.dimse_timeout) == (7.0, 9.0)

        def two_at_once(port: int) -> tuple[bool, bool]:
            ae = AE(ae_title=MODALITY)
            ae.add_requested_context(ComputedRadiographyImageStorage, ExplicitVRLittleEndian)
            first = ae.associate("127.0.0.1", port, ae_title="HEALTHFLOW")
            try:
                second = ae.associate("127.0.0.1", port, ae_title="HEALTHFLOW")
                if second.is_established:
                    second.release()
                return first.is_established, second.is_rejected
            finally:
                first.release()

        assert await asyncio.to_thread(two_at_once, app.state.dicom_scp.port) == (True, True)


async def test_a_c_store_image_over_the_pixel_limit_is_refused_before_decoding(
        mongodb_url, s3_env, unique_name, tokens, monkeypatch) -> None:
    """XRAY_MAX_IMAGE_PIXELS: an instance declaring more pixels is 0xC000 (cannot
    understand), nothing stored; its pixels are not decoded."""
    from PIL import Image

    from healthflow.xray import imaging

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after

    decoded: list[object] = []  # a raise here would be caught as "unreadable"

    def no_decoding(*args: object) -> None:
        decoded.append(args)

    monkeypatch.setattr(imaging, "_check_native_length", no_decoding)
    app = create_app(settings_for(mongodb_url, s3_env, unique_name, dicom_port=0,
                                  dicom_calling_ae_titles=[MODALITY],
                                  max_image_pixels=64 * 64 - 1))
    app.state.verifier = tokens.verifier()
    async with running_app(app) as http:
        order = await ordered(http, app, tokens)
        image = dcmread(io.BytesIO(radiograph(PATIENT,
                                              accession_number=order["accession_number"])))
        statuses = await asyncio.to_thread(c_store, app.state.dicom_scp.port, [image])
        assert statuses == [dicom_scp.CANNOT_UNDERSTAND]
        assert decoded == []
        assert await app.state.runtime.db["instances"].count_documents({}) == 0
        assert await app.state.blobs.keys() == []


def hold(port: int, calling: str, held: list[Any]) -> bool:
    """Open an association as ``calling`` and keep it in ``held`` if established;
    whether it was rejected (A-ASSOCIATE-RJ)."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(ComputedRadiographyImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="HEALTHFLOW")
    if assoc.is_established:
        held.append(assoc)
    else:
        assert assoc.is_rejected
        assert (assoc.acceptor.primitive.result, assoc.acceptor.primitive.result_source,
                assoc.acceptor.primitive.diagnostic) == dicom_scp.REJECT_BUSY
    return bool(assoc.is_rejected)


async def test_one_calling_ae_title_or_peer_takes_a_few_associations_only(
        mongodb_url, s3_env, unique_name, tokens) -> None:
    """Past XRAY_DICOM_MAX_ASSOCIATIONS_PER_CALLING_AE associations of one calling AE
    title, or XRAY_DICOM_MAX_ASSOCIATIONS_PER_PEER from one address, the next is
    rejected (transient) while the others last; other titles are still taken, and a
    slot is free again once an association is released."""
    titles = [MODALITY, "CR_ROOM_2", "CR_ROOM_3"]
    app = create_app(settings_for(mongodb_url, s3_env, unique_name, dicom_port=0,
                                  dicom_calling_ae_titles=titles, dicom_max_associations=8,
                                  dicom_max_associations_per_calling_ae=1,
                                  dicom_max_associations_per_peer=2))
    app.state.verifier = tokens.verifier()
    held: list[Any] = []
    async with running_app(app):
        port = app.state.dicom_scp.port

        def scenario() -> list[bool]:
            try:
                return [hold(port, MODALITY, held), hold(port, MODALITY, held),
                        hold(port, "CR_ROOM_2", held), hold(port, "CR_ROOM_3", held)]
            finally:
                for assoc in held:
                    assoc.release()

        # the second of one title; the third from one address (127.0.0.1)
        assert await asyncio.to_thread(scenario) == [False, True, False, True]
        held.clear()
        for _ in range(100):  # the SCP's released associations' threads end
            if not app.state.dicom_scp.server.ae.active_associations:
                break
            await asyncio.sleep(0.05)
        assert await asyncio.to_thread(hold, port, MODALITY, held) is False
        held[0].release()
