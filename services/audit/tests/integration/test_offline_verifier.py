"""``healthflow-audit-verify`` as a compliance officer runs it: a subprocess against a real
audit service over HTTP, against an export, and against rewritten histories.

The attacker here can write the whole audit database: rewriting an entry,
recomputing the chain after it, moving the head and rebuilding the tree leaves
the service's own ``/verify`` satisfied — the checkpoints the officer kept are
what catch it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from healthflow.audit import domain, note, store, tree
from healthflow.audit.app import create_app
from healthflow.audit.settings import Settings
from healthflow.common.events.envelope import CloudEvent
from healthflow.devkit.embedded import free_port
from healthflow.devkit.testing import TokenFactory

from .test_api import is_problem

FIRST, SECOND = 12, 30  # entries covered by the earlier and the later checkpoint


@dataclass
class Served:
    """A real audit service on a loopback port, and an officer's view of it."""

    url: str
    client: httpx.AsyncClient
    runtime: Any
    token: str
    workdir: Path
    seed: bytes

    async def officer(self, method: str, path: str, **params: Any) -> Any:
        response = await self.client.request(method, f"/api/v1/audit{path}", params=params,
                                             headers={"Authorization": f"Bearer {self.token}"})
        assert response.status_code == 200, response.text
        return response.json()

    async def keep_checkpoint(self, name: str) -> Path:
        """Sign now and keep the note where the officer keeps it."""
        path = self.workdir / name
        path.write_text((await self.officer("POST", "/checkpoints"))["note"])
        return path

    async def verify(self, *args: str | Path) -> tuple[int, str]:
        """Run the verifier; returns its exit status and what it printed."""
        key = (await self.officer("GET", "/checkpoints/key"))["verifier_key"]
        return await _run("healthflow.auditverify.cli", "--key", key, *args)

    async def witness(self, *args: str | Path) -> tuple[int, str]:
        """Run the witness as ``witness.example/w1`` with its seed in the work dir."""
        return await _run("healthflow.auditverify.witness_cli", "--name", "witness.example/w1",
                          "--seed-file", self.workdir / "witness.seed", *args)


async def _run(module: str, *args: str | Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *(str(a) for a in args),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


@pytest.fixture
async def served(settings: Settings, tokens: TokenFactory, tmp_path: Path,
                 make_event: Callable[..., CloudEvent]) -> AsyncIterator[Served]:
    seed = note.new_seed()
    configured = settings.model_copy(update={
        "checkpoint_signing_key": SecretStr(note.b64url(seed))})
    app = create_app(configured)
    app.state.verifier = tokens.verifier()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the audit service did not start"
        await asyncio.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            runtime = app.state.runtime
            yield Served(url, client, runtime, tokens.mint(roles=["compliance_officer"]),
                         tmp_path, seed)
    finally:
        server.should_exit = True
        await task


async def _append(served: Served, make_event: Callable[..., CloudEvent], count: int) -> None:
    for i in range(count):
        await served.runtime.consumer(make_event("patient.updated", n=i))


async def _rewrite_history(db: Any, seq: int) -> None:
    """What an attacker with write access to the database does: change entry ``seq``,
    recompute every later hash, move the head, rebuild the tree."""
    docs = [doc async for doc in db[store.ENTRIES].find({"_id": {"$gte": seq}}).sort("_id")]
    prev = docs[0]["prev_hash"]
    for doc in docs:
        if doc["_id"] == seq:
            doc["envelope"]["data"] = {"n": "rewritten"}
        digest = domain.entry_hash(prev, doc["_id"], doc["appended_at"], doc["envelope"])
        await db[store.ENTRIES].update_one({"_id": doc["_id"]}, {"$set": {
            "envelope": doc["envelope"], "prev_hash": prev, "hash": digest}})
        prev = digest
    await db[store.CHAIN].update_one({"_id": store.HEAD_ID},
                                     {"$set": {"hash": prev, "tree_size": 0}})
    await db[store.TREE].delete_many({})
    await tree.rebuild(db)


async def test_an_intact_log_verifies_by_api_and_by_export(
        served: Served, make_event: Callable[..., CloudEvent]) -> None:
    await _append(served, make_event, FIRST)
    earlier = await served.keep_checkpoint("earlier.checkpoint")
    await _append(served, make_event, SECOND - FIRST)
    latest = await served.keep_checkpoint("latest.checkpoint")
    export = served.workdir / "export.jsonl"
    status, output = await served.verify(
        "--checkpoint", latest, "--earlier-checkpoint", earlier, "--url", served.url,
        "--token", served.token, "--entry", "0", "--entry", str(SECOND - 1),
        "--save-entries", export)
    assert status == 0, output
    assert "VERIFIED" in output and f"entry {SECOND - 1} is included" in output
    assert len(export.read_text().splitlines()) == SECOND
    status, output = await served.verify("--checkpoint", latest, "--earlier-checkpoint",
                                         earlier, "--entries", export, "--entry", "3")
    assert status == 0, output
    token_file = served.workdir / "token"  # not in the process list
    token_file.write_text(served.token + "\n")
    status, output = await served.verify("--checkpoint", latest, "--url", served.url,
                                         "--token-file", token_file)
    assert status == 0, output


async def test_a_rewritten_export_with_a_recomputed_chain_is_caught(
        served: Served, make_event: Callable[..., CloudEvent]) -> None:
    await _append(served, make_event, SECOND)
    latest = await served.keep_checkpoint("latest.checkpoint")
    export = served.workdir / "export.jsonl"
    status, _ = await served.verify("--checkpoint", latest, "--url", served.url,
                                    "--token", served.token, "--save-entries", export)
    assert status == 0
    entries = [json.loads(line) for line in export.read_text().splitlines()]
    entries[7]["envelope"]["data"] = {"n": "rewritten"}
    prev = entries[7]["prev_hash"]
    for entry in entries[7:]:  # a careful forger keeps the chain consistent
        entry["prev_hash"] = prev
        entry["hash"] = prev = domain.entry_hash(
            prev, entry["seq"], domain.to_millis(_time(entry["appended_at"])),
            entry["envelope"])
    export.write_text("".join(json.dumps(e) + "\n" for e in entries))
    status, output = await served.verify("--checkpoint", latest, "--entries", export)
    assert status == 1, output
    assert "FAILED" in output and "rewritten after it was signed" in output
    entries[9]["hash"] = "0" * 64  # a careless one breaks the chain itself
    export.write_text("".join(json.dumps(e) + "\n" for e in entries))
    status, output = await served.verify("--checkpoint", latest, "--entries", export)
    assert status == 1 and "entry 9" in output, output


async def test_a_database_rewrite_passes_verify_but_not_the_kept_checkpoints(
        served: Served, make_event: Callable[..., CloudEvent]) -> None:
    await _append(served, make_event, FIRST)
    earlier = await served.keep_checkpoint("earlier.checkpoint")
    await _append(served, make_event, SECOND - FIRST)
    latest = await served.keep_checkpoint("latest.checkpoint")
    await _rewrite_history(served.runtime.db, 5)
    assert (await served.officer("GET", "/verify"))["ok"] is True  # the chain alone is fooled
    status, output = await served.verify("--checkpoint", latest, "--url", served.url,
                                         "--token", served.token)
    assert status == 1 and "rewritten after it was signed" in output, output
    # the service itself refuses to sign over the rewrite, even with its checkpoints
    # collection wiped too: the latest checkpoint file is outside the database
    await _append(served, make_event, 1)
    refused = await served.client.post("/api/v1/audit/checkpoints",
                                       headers={"Authorization": f"Bearer {served.token}"})
    assert is_problem(refused, 409) and refused.json()["tree_size"] == SECOND
    await served.runtime.db[store.CHECKPOINTS].delete_many({})
    refused = await served.client.post("/api/v1/audit/checkpoints",
                                       headers={"Authorization": f"Bearer {served.token}"})
    assert is_problem(refused, 409) and "kept in the file" in refused.json()["detail"]
    # a validly signed checkpoint of the rewritten log (a stolen key, say) is still
    # refused by the earlier one the officer kept: history before it changed
    size = SECOND + 1
    signer = note.signer_from_seed(served.runtime.settings.checkpoint_origin, served.seed)
    rewritten = served.workdir / "rewritten.checkpoint"
    rewritten.write_text(note.sign_checkpoint(signer, size,
                                              await tree.root(served.runtime.db, size)))
    status, output = await served.verify("--checkpoint", rewritten, "--earlier-checkpoint",
                                         earlier, "--url", served.url, "--token", served.token)
    assert status == 1 and "history before it was rewritten" in output, output


async def test_an_altered_checkpoint_and_bad_usage(
        served: Served, make_event: Callable[..., CloudEvent]) -> None:
    await _append(served, make_event, 3)
    latest = await served.keep_checkpoint("latest.checkpoint")
    latest.write_text(latest.read_text().replace("\n3\n", "\n2\n", 1))
    status, output = await served.verify("--checkpoint", latest, "--url", served.url,
                                         "--token", served.token)
    assert status == 1 and "does not verify" in output, output
    status, output = await served.verify("--checkpoint", served.workdir / "none.checkpoint",
                                         "--url", served.url)
    assert status == 2 and "cannot read" in output, output


async def test_a_witness_cosigns_only_checkpoints_that_extend_what_it_saw(
        served: Served, make_event: Callable[..., CloudEvent]) -> None:
    status, witness_key = await served.witness("--new-seed")
    assert status == 0, witness_key
    log_key = (await served.officer("GET", "/checkpoints/key"))["verifier_key"]
    common = ("--log-key", log_key, "--state", served.workdir / "witness" / "audit.state",
              "--url", served.url, "--token", served.token)
    await _append(served, make_event, FIRST)
    first = await served.keep_checkpoint("first.checkpoint")
    status, output = await served.witness(*common, "--checkpoint", first, "--out", first)
    assert status == 0, output
    await _append(served, make_event, SECOND - FIRST)
    latest = await served.keep_checkpoint("latest.checkpoint")
    status, output = await served.verify("--checkpoint", latest, "--url", served.url,
                                         "--token", served.token,
                                         "--witness-key", witness_key.strip())
    assert status == 1 and "no cosignature by witness" in output, output
    status, output = await served.witness(*common, "--checkpoint", latest, "--out", latest)
    assert status == 0, output
    status, output = await served.verify("--checkpoint", latest, "--url", served.url,
                                         "--token", served.token,
                                         "--witness-key", witness_key.strip())
    assert status == 0 and "cosigned by witness witness.example/w1" in output, output
    # a split view: the log (its key stolen) shows the witness a rewritten history
    await _rewrite_history(served.runtime.db, 3)
    await _append(served, make_event, 1)
    signer = note.signer_from_seed(served.runtime.settings.checkpoint_origin, served.seed)
    forked = served.workdir / "forked.checkpoint"
    forked.write_text(note.sign_checkpoint(signer, SECOND + 1,
                                           await tree.root(served.runtime.db, SECOND + 1)))
    status, output = await served.witness(*common, "--checkpoint", forked)
    assert status == 1 and "REFUSED" in output and f"size {SECOND}" in output, output


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
