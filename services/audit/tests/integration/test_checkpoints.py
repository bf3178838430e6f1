"""Signed checkpoints: on demand and periodic, kept in the database, the blob store and a
file, verified with nothing but the published key."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr, ValidationError

from healthflow.audit import note, store, tree
from healthflow.audit.app import create_app
from healthflow.audit.settings import Settings
from healthflow.auditverify import note as offline
from healthflow.common.blobs import BlobStore
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.settings import ConfigurationError
from healthflow.devkit.testing import TokenFactory, running_app

from .test_api import is_problem

if TYPE_CHECKING:
    from ..conftest import Audit


async def _verifier_key(audit: Audit) -> offline.VerifierKey:
    published = (await audit.get("/checkpoints/key")).json()
    return offline.parse_verifier_key(published["verifier_key"])


async def test_a_checkpoint_on_demand_verifies_with_the_published_key(
        audit: Audit, make_event: Callable[..., CloudEvent], settings: Settings) -> None:
    await audit.deliver(*(make_event(n=i) for i in range(5)))
    response = await audit.client.post("/api/v1/audit/checkpoints", headers=audit.officer())
    assert response.status_code == 200
    body = response.json()
    assert body["tree_size"] == 5
    checkpoint = offline.open_checkpoint(body["note"], await _verifier_key(audit))
    assert (checkpoint.origin, checkpoint.size) == (settings.checkpoint_origin, 5)
    assert checkpoint.root == await tree.root(audit.db, 5)
    assert base64.b64decode(body["root_hash"]) == checkpoint.root
    assert (await audit.get("/checkpoints/latest")).json() == body
    assert (await audit.get("/checkpoints/5")).json() == body
    again = await audit.client.post("/api/v1/audit/checkpoints", headers=audit.officer())
    assert again.json() == body  # nothing appended since: the same checkpoint
    # outside the database: a file for the operator, and the blob store
    assert (settings.checkpoint_dir / "5.checkpoint").read_text() == body["note"]
    assert (settings.checkpoint_dir / "latest.checkpoint").read_text() == body["note"]
    blobs: BlobStore = audit.runtime.state["blobs"]
    stored = b"".join([chunk async for chunk in blobs.stream(f"checkpoints/{5:020d}")])
    assert stored.decode() == body["note"]
    kept = await store.get_checkpoint(audit.db, 5)
    assert kept is not None and kept["blob_key"] == f"checkpoints/{5:020d}"


async def test_a_forged_or_altered_checkpoint_is_refused(
        audit: Audit, make_event: Callable[..., CloudEvent]) -> None:
    await audit.deliver(make_event())
    text = (await audit.client.post("/api/v1/audit/checkpoints",
                                    headers=audit.officer())).json()["note"]
    key = await _verifier_key(audit)
    with pytest.raises(offline.NoteError, match="does not verify"):
        offline.open_checkpoint(text.replace("\n1\n", "\n2\n", 1), key)
    other = note.signer_from_seed(key.name, note.new_seed())
    forged = note.sign_checkpoint(other, 1, b"\x00" * 32)
    with pytest.raises(offline.NoteError, match="no signature by"):
        offline.open_checkpoint(forged, key)


async def test_checkpoints_are_signed_periodically(
        settings: Settings, tokens: TokenFactory, make_event: Callable[..., CloudEvent],
        eventually: Callable[..., object]) -> None:
    app = create_app(settings.model_copy(update={"checkpoint_interval": 0.2}))
    app.state.verifier = tokens.verifier()
    async with running_app(app) as client:
        runtime = app.state.runtime
        await runtime.consumer(make_event())
        await runtime.consumer(make_event())

        async def covered() -> bool:
            latest = await store.latest_checkpoint(runtime.db)
            return latest is not None and latest["_id"] == 2

        await eventually(covered, what="a checkpoint covering both entries")  # type: ignore[operator]
        latest = await client.get("/api/v1/audit/checkpoints/latest",
                                  headers=tokens.headers(roles=["compliance_officer"]))
        assert latest.json()["tree_size"] == 2


async def test_a_configured_key_signs(settings: Settings, tokens: TokenFactory) -> None:
    seed = note.new_seed()
    configured = settings.model_copy(update={
        "checkpoint_signing_key": SecretStr(note.b64url(seed))})
    app = create_app(configured)
    app.state.verifier = tokens.verifier()
    async with running_app(app) as client:
        key = (await client.get("/api/v1/audit/checkpoints/key",
                                headers=tokens.headers(roles=["admin"]))).json()
    assert key["verifier_key"] == note.signer_from_seed(settings.checkpoint_origin,
                                                        seed).verifier_key
    assert key["algorithm"] == "Ed25519"


async def test_without_a_key_a_deployment_refuses_to_start(settings: Settings) -> None:
    deployed = settings.model_copy(update={"allow_generated_signing_key": False})
    assert not Settings().allow_generated_signing_key  # the default outside local runs
    with pytest.raises(ConfigurationError, match="AUDIT_CHECKPOINT_SIGNING_KEY"):
        async with running_app(create_app(deployed)):
            pass
    app = create_app(settings)  # the tests' settings allow a generated key
    async with running_app(app):
        pass
    assert await app.state.runtime.db[store.SIGNING_KEYS].find_one(
        {"_id": store.SIGNING_KEY_ID}) is not None


def test_a_malformed_key_or_origin_refuses_to_start() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(checkpoint_signing_key=SecretStr("c2VjcmV0LXNlZWQ"))
    assert "c2VjcmV0LXNlZWQ" not in str(refused.value)
    with pytest.raises(ValidationError, match="spaces"):
        Settings(checkpoint_origin="health flow")


async def test_signing_needs_audit_read_and_reading_checkpoints_needs_nothing(
        audit: Audit, make_event: Callable[..., CloudEvent]) -> None:
    doctor = audit.tokens.headers(roles=["doctor"])
    assert is_problem(await audit.client.post("/api/v1/audit/checkpoints", headers=doctor), 403)
    assert is_problem(await audit.client.post("/api/v1/audit/checkpoints"), 401)
    await audit.deliver(make_event())
    signed = (await audit.client.post("/api/v1/audit/checkpoints",
                                      headers=audit.officer())).json()
    anonymous = {path: await audit.client.get(f"/api/v1/audit{path}")
                 for path in ("/checkpoints/key", "/checkpoints/latest", "/checkpoints/1")}
    assert all(r.status_code == 200 for r in anonymous.values()), anonymous
    key = offline.parse_verifier_key(anonymous["/checkpoints/key"].json()["verifier_key"])
    assert offline.open_checkpoint(anonymous["/checkpoints/latest"].json()["note"], key).size == 1
    assert anonymous["/checkpoints/1"].json() == signed
    assert is_problem(await audit.client.get("/api/v1/audit/checkpoints/7"), 404)
    # the entries themselves stay with audit:read
    assert is_problem(await audit.client.get("/api/v1/audit/proof/inclusion",
                                             params={"seq": 0, "tree_size": 1}), 401)


async def test_a_log_truncated_below_the_latest_checkpoint_is_refused(
        audit: Audit, make_event: Callable[..., CloudEvent]) -> None:
    await audit.deliver(*(make_event(n=i) for i in range(5)))
    signed = await audit.client.post("/api/v1/audit/checkpoints", headers=audit.officer())
    assert signed.json()["tree_size"] == 5
    # an attacker drops the last two entries and moves the head (and tree) back
    kept = await store.get_entry(audit.db, 2)
    assert kept is not None
    await audit.db[store.ENTRIES].delete_many({"_id": {"$gte": 3}})
    await audit.db[store.CHAIN].update_one({"_id": store.HEAD_ID}, {"$set": {
        "seq": 2, "hash": kept["hash"], "tree_size": 3}})
    refused = await audit.client.post("/api/v1/audit/checkpoints", headers=audit.officer())
    assert is_problem(refused, 409) and refused.json()["tree_size"] == 5
    assert refused.json()["type"].endswith("audit-history-rewritten")
