"""The audit log as a transparency log, through the gateway: a compliance officer signs a
checkpoint, fetches the published key, and runs the offline verifier against the
platform; the checkpoint is also kept as a file outside the database."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

from healthflow.auditverify import note as offline
from healthflow.devkit.testing import RunningPlatform

from .conftest import User, assert_problem, ok, register_patient


async def _verifier(*args: str | Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "healthflow.auditverify.cli", *(str(a) for a in args),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_an_officer_verifies_the_log_with_the_published_key_only(
        platform: RunningPlatform, gateway: httpx.AsyncClient, compliance: User,
        admin: User, tmp_path: Path) -> None:
    patient = await register_patient(gateway, "audit-proof")
    patient_view = await gateway.post("/api/v1/audit/checkpoints", headers=patient.headers)
    assert_problem(patient_view, 403)
    checkpoint = ok(await gateway.post("/api/v1/audit/checkpoints",
                                       headers=compliance.headers))
    assert checkpoint["tree_size"] >= 1
    kept = tmp_path / "kept.checkpoint"
    kept.write_text(checkpoint["note"])
    key = ok(await gateway.get("/api/v1/audit/checkpoints/key", headers=admin.headers))
    assert_problem(await gateway.get("/api/v1/audit/proof/inclusion", headers=admin.headers,
                                     params={"seq": checkpoint["tree_size"],
                                             "tree_size": checkpoint["tree_size"]}), 422)
    status, output = await _verifier(
        "--key", key["verifier_key"], "--checkpoint", kept, "--url", platform.gateway_url,
        "--token", compliance.access_token, "--entry", "0",
        "--entry", str(checkpoint["tree_size"] - 1))
    assert status == 0, output
    assert "VERIFIED" in output
    files = sorted((platform.workdir / "var" / "audit-checkpoints").glob("*.checkpoint"))
    assert any(f.read_text() == checkpoint["note"] for f in files), files


async def test_a_patient_reads_their_own_access_report_through_the_edge(
        gateway: httpx.AsyncClient) -> None:
    patient = await register_patient(gateway, "audit-own")
    report = ok(await gateway.get("/api/v1/audit/patient-access", headers=patient.headers))
    assert report["resourceType"] == "Bundle" and report["type"] == "collection"
    assert "signature" in report
    assert_problem(await gateway.get("/api/v1/audit/events", headers=patient.headers), 403)
    assert_problem(await gateway.get("/api/v1/audit/patient-access"), 401)


async def test_anyone_checks_a_checkpoint_with_the_public_key_alone(
        gateway: httpx.AsyncClient, compliance: User) -> None:
    """The key and the checkpoints are public at the edge (no token); signing one and the
    entries, proofs and export still need ``audit:read``."""
    signed = ok(await gateway.post("/api/v1/audit/checkpoints", headers=compliance.headers))
    assert_problem(await gateway.post("/api/v1/audit/checkpoints"), 401)
    key = ok(await gateway.get("/api/v1/audit/checkpoints/key"))
    latest = ok(await gateway.get("/api/v1/audit/checkpoints/latest"))
    at_size = ok(await gateway.get(f"/api/v1/audit/checkpoints/{signed['tree_size']}"))
    verifier_key = offline.parse_verifier_key(key["verifier_key"])
    checkpoint = offline.open_checkpoint(latest["note"], verifier_key)
    assert checkpoint.size >= signed["tree_size"] >= 1
    assert offline.open_checkpoint(at_size["note"], verifier_key).size == signed["tree_size"]
    with pytest.raises(offline.NoteError):
        offline.open_checkpoint(latest["note"].replace(
            f"\n{checkpoint.size}\n", f"\n{checkpoint.size + 1}\n", 1), verifier_key)
    for path in ("/api/v1/audit/events", "/api/v1/audit/export", "/api/v1/audit/head"):
        assert_problem(await gateway.get(path), 401)
