"""The C-STORE storage SCP over a real TCP association, pynetdicom as the modality (SCU):
an instance of an order is stored like an upload; an unknown AE title is rejected at
association; a corrupt dataset and one without an order are refused, nothing stored."""

from __future__ import annotations

import asyncio
import io
import tempfile
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
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
