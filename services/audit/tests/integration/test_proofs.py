"""Inclusion and consistency proofs through the API, checked by the offline verifier's
RFC 9162 algorithms against roots it computes itself from the entries."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from healthflow.audit import store, tree
from healthflow.auditverify import proofs
from healthflow.common.events.envelope import CloudEvent

from .test_api import is_problem

if TYPE_CHECKING:
    from ..conftest import Audit

COUNT = 37


def _leaves(entries: list[dict[str, Any]]) -> list[bytes]:
    return [proofs.leaf_hash(bytes.fromhex(e["hash"])) for e in entries]


async def _all_entries(audit: Audit) -> list[dict[str, Any]]:
    return [doc async for doc in store.entries_between(audit.db, 0, COUNT - 1)]


async def _seed(audit: Audit, make_event: Callable[..., CloudEvent]) -> list[bytes]:
    events = [make_event("patient.updated", subject=f"patient/p-{i}", n=i) for i in range(COUNT)]
    await audit.deliver(*events[:20])  # one group commit
    for event in events[20:]:
        await audit.deliver(event)
    return _leaves(await _all_entries(audit))


def _decoded(items: list[str]) -> list[bytes]:
    return [base64.b64decode(item) for item in items]


async def test_every_inclusion_and_consistency_proof_verifies(
        audit: Audit, make_event: Callable[..., CloudEvent]) -> None:
    leaves = await _seed(audit, make_event)
    for size in range(1, COUNT + 1):
        root = proofs.root_of(leaves[:size])
        assert await tree.root(audit.db, size) == root
        for seq in {0, size // 2, size - 1}:
            body = (await audit.get("/proof/inclusion", seq=seq, tree_size=size)).json()
            assert base64.b64decode(body["leaf_hash"]) == leaves[seq]
            proofs.verify_inclusion(seq, size, leaves[seq], _decoded(body["audit_path"]), root)
        for first in {1, size // 2 or 1, size}:
            body = (await audit.get("/proof/consistency", first=first, second=size)).json()
            proofs.verify_consistency(first, size, proofs.root_of(leaves[:first]), root,
                                      _decoded(body["consistency_path"]))


async def test_bad_ranges_are_problems(audit: Audit,
                                       make_event: Callable[..., CloudEvent]) -> None:
    await audit.deliver(make_event(), make_event())
    cases = [("/proof/inclusion", {"seq": 2, "tree_size": 2}, "query.seq"),
             ("/proof/inclusion", {"seq": 0, "tree_size": 3}, "query.tree_size"),
             ("/proof/consistency", {"first": 2, "second": 1}, "query.first"),
             ("/proof/consistency", {"first": 1, "second": 3}, "query.second")]
    for path, params, location in cases:
        response = await audit.get(path, **params)
        assert is_problem(response, 422), (path, params)
        assert location in response.json()["detail"]
    for path, params in (("/proof/inclusion", {"seq": -1, "tree_size": 1}),
                         ("/proof/consistency", {"first": 0, "second": 1}),
                         ("/proof/inclusion", {"seq": "x", "tree_size": 1})):
        assert is_problem(await audit.get(path, **params), 422), params


async def test_proofs_need_audit_read(audit: Audit, make_event: Callable[..., CloudEvent]
                                      ) -> None:
    await audit.deliver(make_event())
    for path in ("/proof/inclusion?seq=0&tree_size=1", "/proof/consistency?first=1&second=1"):
        assert is_problem(await audit.client.get(f"/api/v1/audit{path}"), 401)
        doctor = audit.tokens.headers(roles=["doctor"])
        assert is_problem(await audit.client.get(f"/api/v1/audit{path}", headers=doctor), 403)


async def test_a_log_kept_before_the_tree_is_rebuilt_at_start(
        audit: Audit, make_event: Callable[..., CloudEvent]) -> None:
    leaves = await _seed(audit, make_event)
    unset = {"$unset": {"tree_size": ""}}  # a head written before the tree existed
    await audit.db[store.TREE].delete_many({"index": {"$gte": 0}, "level": {"$lte": 1}})
    await audit.db[store.CHAIN].update_one({"_id": store.HEAD_ID}, unset)
    assert await tree.rebuild(audit.db) == COUNT
    await audit.db[store.TREE].delete_many({})
    await audit.db[store.CHAIN].update_one({"_id": store.HEAD_ID}, unset)
    assert await tree.rebuild(audit.db) == COUNT
    assert await tree.root(audit.db, COUNT) == proofs.root_of(leaves)
    await audit.deliver(make_event(n=99))  # appending goes on from the rebuilt tree
    leaves = _leaves([doc async for doc in store.entries_between(audit.db, 0, COUNT)])
    assert await tree.root(audit.db, COUNT + 1) == proofs.root_of(leaves)


async def test_the_export_streams_entries_in_order(
        audit: Audit, make_event: Callable[..., CloudEvent]) -> None:
    leaves = await _seed(audit, make_event)
    response = await audit.get("/export", tree_size=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.headers["x-tree-size"] == "10"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [e["seq"] for e in lines] == list(range(10))
    assert _leaves(lines) == leaves[:10]
    whole = await audit.get("/export")
    assert len(whole.text.splitlines()) == COUNT
    assert is_problem(await audit.get("/export", tree_size=COUNT + 1), 422)
    doctor = audit.tokens.headers(roles=["doctor"])
    assert is_problem(await audit.client.get("/api/v1/audit/export", headers=doctor), 403)
