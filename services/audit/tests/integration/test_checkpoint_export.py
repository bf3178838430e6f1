"""The copies of checkpoints outside the database are not at the database's mercy: what
is exported verifies with the service's key, is written once, never moves
``latest.checkpoint`` back, and a copy that is there but unreadable refuses signing."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from healthflow.audit import checkpoints, note, store, tree
from healthflow.audit.settings import Settings
from healthflow.common.blobs import BlobStore
from healthflow.common.events.envelope import CloudEvent

from .test_api import is_problem

if TYPE_CHECKING:
    from ..conftest import Audit


async def _signed(audit: Audit, make_event: Callable[..., CloudEvent], count: int) -> str:
    await audit.deliver(*(make_event(n=i) for i in range(count)))
    response = await audit.client.post("/api/v1/audit/checkpoints", headers=audit.officer())
    assert response.json()["tree_size"] == count
    return str(response.json()["note"])


async def _blob(audit: Audit, size: int) -> str:
    blobs: BlobStore = audit.runtime.state["blobs"]
    return b"".join([c async for c in blobs.stream(f"checkpoints/{size:020d}")]).decode()


async def test_latest_never_moves_back_and_a_forged_note_is_not_exported(
        audit: Audit, make_event: Callable[..., CloudEvent], settings: Settings) -> None:
    five = await _signed(audit, make_event, 5)
    key = await checkpoints.signer(audit.runtime)
    smaller = note.sign_checkpoint(key, 3, await tree.root(audit.db, 3))  # genuine, older
    await audit.db[store.CHECKPOINTS].insert_one({
        "_id": 3, "root": (await tree.root(audit.db, 3)).hex(), "note": smaller,
        "key_id": key.key_id.hex(), "signed_at": None, "blob_key": None, "file": None})
    other = note.signer_from_seed(key.name, note.new_seed())
    forged = note.sign_checkpoint(other, 5, b"\x01" * 32)
    await audit.db[store.CHECKPOINTS].update_one({"_id": 5}, {"$set": {
        "note": forged, "root": "01" * 32, "blob_key": None}})
    await checkpoints.run_due(audit.runtime)
    assert (settings.checkpoint_dir / "latest.checkpoint").read_text() == five
    assert (settings.checkpoint_dir / "3.checkpoint").read_text() == smaller
    assert (settings.checkpoint_dir / "5.checkpoint").read_text() == five
    assert await _blob(audit, 5) == five  # not overwritten by the database's forgery


async def test_an_unreadable_latest_file_refuses_signing(
        audit: Audit, make_event: Callable[..., CloudEvent], settings: Settings) -> None:
    await _signed(audit, make_event, 2)
    (settings.checkpoint_dir / "latest.checkpoint").write_text("not a checkpoint\n")
    await audit.deliver(make_event(n=9))
    refused = await audit.client.post("/api/v1/audit/checkpoints", headers=audit.officer())
    assert is_problem(refused, 409)
    assert "file" in refused.json()["detail"]


async def test_the_newest_blob_counts_when_database_and_file_were_wiped(
        audit: Audit, make_event: Callable[..., CloudEvent], settings: Settings) -> None:
    await _signed(audit, make_event, 4)
    await audit.db[store.CHECKPOINTS].delete_many({})
    for path in settings.checkpoint_dir.iterdir():
        path.unlink()
    await audit.db[store.TREE].update_one({"_id": "2:0"}, {"$set": {"hash": "00" * 32}})
    await audit.deliver(make_event(n=9))
    refused = await audit.client.post("/api/v1/audit/checkpoints", headers=audit.officer())
    assert is_problem(refused, 409) and refused.json()["tree_size"] == 4
    assert "blob store" in refused.json()["detail"]
