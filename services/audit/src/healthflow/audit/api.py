"""The compliance API: read and verify the log (``audit:read``); thin over :mod:`.service`.

Public (no token): the checkpoint key and the signed checkpoints (``GET
/checkpoints/key``, ``/checkpoints/latest``, ``/checkpoints/{tree_size}``): a tree
size, a root hash and a signature reveal no entry, and a checkpoint is only worth
something if anyone can check it with the key alone (as Certificate Transparency's
``get-sth``, RFC 9162 §4.3).

The log is append-only: no route changes or removes an entry, and PUT, PATCH
and DELETE on any audit path are answered 405 problem+json. Every read is
written to the service log (caller, roles, path, query) but emits no event: an
audit entry per read would feed the log back into itself.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BeforeValidator

from healthflow.audit import checkpoints, reports, service, store, tree
from healthflow.audit.domain import CATEGORIES, MAX_SEQ
from healthflow.audit.merkle import entry_leaf_hash
from healthflow.audit.schemas import (
    AuditEntry,
    ChainHeadOut,
    CheckpointKeyOut,
    CheckpointOut,
    ConsistencyProofOut,
    InclusionProofOut,
    LoginFailureBurstOut,
    VerificationOut,
)
from healthflow.common.auth import Principal, require
from healthflow.common.http import get_runtime
from healthflow.common.mongo import Document
from healthflow.common.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from healthflow.common.permissions import Permission
from healthflow.common.service import ServiceRuntime

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

Runtime = Annotated[ServiceRuntime, Depends(get_runtime)]


async def _audit_reader(
    request: Request, principal: Principal = require(Permission.AUDIT_READ)
) -> Principal:
    """The caller, who holds ``audit:read``; the read is logged (never an event)."""
    log.info("audit log read", extra={
        "caller": principal.subject, "roles": sorted(principal.roles),
        "path": request.url.path, "query": str(request.query_params)[:500],
    })
    return principal


AuditReader = Annotated[Principal, Depends(_audit_reader)]
"""A caller holding ``audit:read`` (401 without a valid token, 403 without it)."""

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


def _rfc3339_text(value: object) -> object:
    """Admit only RFC 3339 date-times with an offset (not epoch numbers or bare dates)."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time with a UTC offset, "
                         "e.g. 2026-11-21T10:00:00Z")
    return value


Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]


def _filters(
    event_type: Annotated[str | None, Query(alias="type", max_length=128,
                                            description="event type")] = None,
    subject: Annotated[str | None, Query(max_length=256)] = None,
    actor: Annotated[str | None, Query(max_length=256)] = None,
    patient: Annotated[str | None, Query(max_length=128, description="patientid")] = None,
    since: Annotated[Rfc3339 | None, Query(
        alias="from", description="event time ≥ this (RFC 3339 with offset)")] = None,
    until: Annotated[Rfc3339 | None, Query(
        alias="to", description="event time < this (RFC 3339 with offset)")] = None,
    category: Annotated[Literal[tuple(CATEGORIES)] | None, Query(  # type: ignore[valid-type]
        description="a named set of event types (healthflow.audit.domain.CATEGORIES): "
                    "privilege-change, login-failure, login, record-access, "
                    "break-the-glass")] = None,
) -> store.EntryFilter:
    return store.EntryFilter(type=event_type, subject=subject, actor=actor, patientid=patient,
                             since=_utc(since), until=_utc(until),
                             types=CATEGORIES[category] if category else None)


Filters = Annotated[store.EntryFilter, Depends(_filters)]
"""Equality filters, a ``category`` and the ``[from, to)`` event-time window of the search
and reports. The questions officers ask: everything user Y did in a period is ``?actor=Y
&from=…&to=…``; every privilege change ``?category=privilege-change``; every failed login
``?category=login-failure`` (bursts of them: ``GET /login-failures/bursts``)."""


@router.get("/events", response_model=Page[AuditEntry], summary="Search the log, newest first")
async def list_events(
    runtime: Runtime,
    principal: AuditReader,
    where: Filters,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[AuditEntry]:
    """Entries matching every given filter, newest (highest ``seq``) first.

    ``from``/``to`` bound the event's ``time`` as ``[from, to)``; both must
    carry a UTC offset. Pass ``next_cursor`` back as ``cursor`` for older ones.

    Raises:
        UnprocessableContent: ``from`` after ``to``, or a malformed parameter (422).
        BadRequest: a cursor this API did not issue (400).
    """
    docs, next_cursor = await service.search(runtime, where, cursor, limit)
    return Page[AuditEntry](items=[AuditEntry.model_validate(doc) for doc in docs],
                            next_cursor=next_cursor)


@router.get("/login-failures/bursts", response_model=list[LoginFailureBurstOut],
            summary="Bursts of failed logins per account or client address")
async def login_failure_bursts(
    runtime: Runtime,
    principal: AuditReader,
    where: Filters,
    by: Annotated[Literal["user", "client_ip"], Query(
        description="group by the account tried or by the client address")] = "user",
    threshold: Annotated[int, Query(ge=2, le=1000, description="failures in a burst")] = 5,
    gap: Annotated[int, Query(ge=1, le=86_400, description="seconds: the longest pause "
                                                           "between failures of one burst")] = 300,
) -> list[LoginFailureBurstOut]:
    """Every run of ``auth.login_failed`` in the period with at least ``threshold``
    failures for one key and no pause longer than ``gap`` seconds, earliest first
    (rule: :func:`healthflow.audit.domain.login_failure_bursts`).

    Raises:
        UnprocessableContent: (422) ``from`` after ``to``, a malformed parameter, or too
            many failures in the period to scan.
    """
    bursts = await reports.login_failure_bursts(runtime, where, by=by, threshold=threshold,
                                                gap_seconds=gap)
    return [LoginFailureBurstOut(key=b.key, count=b.count, first=b.first, last=b.last,
                                 seqs=list(b.seqs)) for b in bursts]


@router.get("/report/fhir", summary="Matching entries as FHIR R4 AuditEvents, with their "
            "checkpoint", responses={200: {"content": {"application/fhir+json": {}}}})
async def fhir_report(runtime: Runtime, principal: AuditReader, where: Filters) -> Response:
    """A FHIR R4 ``collection`` Bundle of ``AuditEvent`` resources (mapping:
    :mod:`healthflow.audit.fhir`), ascending ``seq``, whose ``signature`` holds the
    signed checkpoint covering every entry in it. E.g. ``?patient=<id>`` is who
    accessed that patient's chart, when, under which relationship and purpose.

    Raises:
        UnprocessableContent: (422) ``from`` after ``to``, or more than 10,000 entries.
        HistoryRewritten: (409) the log no longer matches its checkpoints.
    """
    bundle = await reports.fhir_bundle(runtime, where)
    return Response(json.dumps(bundle), media_type="application/fhir+json",
                    headers={"Cache-Control": "private, no-store"})


@router.get("/patient-access", summary="Who accessed my chart and record (a patient's own "
            "report)", responses={200: {"content": {"application/fhir+json": {}}}})
async def patient_access(
    request: Request,
    runtime: Runtime,
    since: Annotated[Rfc3339 | None, Query(
        alias="from", description="event time ≥ this (RFC 3339 with offset)")] = None,
    until: Annotated[Rfc3339 | None, Query(
        alias="to", description="event time < this (RFC 3339 with offset)")] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=reports.PAGE_MAX)] = reports.PAGE_MAX,
    principal: Principal = require(Permission.PATIENTS_READ_OWN),
) -> Response:
    """The caller's own access report: a FHIR R4 Bundle of the ``AuditEvent`` of every
    read of their chart, record, prescriptions or X-rays by someone else (who, when,
    care relationship, purpose) with event time in ``[from, to)``, oldest first, with
    the covering checkpoint; at most ``limit`` a page, the next page's URL in
    ``Bundle.link`` (relation ``next``). Only the caller's entries (the patient id is
    the caller's user id).

    Raises:
        UnprocessableContent: (422) ``from`` after ``to``.
        BadRequest: (400) a cursor this API did not issue.
    """
    after = service.cursor_seq(cursor)
    bundle, following = await reports.patient_access(
        runtime, principal.subject, since=_utc(since), until=_utc(until),
        after_seq=-1 if after is None else after, limit=limit)
    if (token := service.next_cursor(following)) is not None:
        url = request.url.include_query_params(cursor=token)  # relative: the edge's host
        bundle["link"] = [{"relation": "next", "url": f"{url.path}?{url.query}"}]
    return Response(json.dumps(bundle), media_type="application/fhir+json",
                    headers={"Cache-Control": "private, no-store"})


@router.get("/report/csv", summary="Matching entries as CSV, with their checkpoint's size",
            responses={200: {"content": {"text/csv": {}}}})
async def csv_report(runtime: Runtime, principal: AuditReader, where: Filters) -> Response:
    """RFC 4180 CSV, one entry a row, ascending ``seq``; ``X-Checkpoint-Tree-Size`` and
    ``Link`` name the signed checkpoint that covers every row.

    Raises:
        As ``/report/fhir``.
    """
    text, size = await reports.csv_report(runtime, where)
    return Response(text, media_type="text/csv; charset=utf-8", headers={
        "X-Checkpoint-Tree-Size": str(size), "Cache-Control": "private, no-store",
        "Link": f'<{router.prefix}/checkpoints/{size}>; rel="describedby"'})


@router.get("/head", response_model=ChainHeadOut, summary="The last entry of the chain")
async def chain_head(
    runtime: Runtime, principal: AuditReader
) -> ChainHeadOut:
    head = await service.head(runtime)
    return ChainHeadOut(seq=None if head.empty else head.seq, hash=head.hash,
                        length=head.seq + 1)


@router.get("/verify", response_model=VerificationOut, summary="Recompute and check the chain")
async def verify(
    runtime: Runtime,
    principal: AuditReader,
    from_seq: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    to_seq: Annotated[int | None, Query(ge=0, le=MAX_SEQ,
                                        description="default: the head")] = None,
) -> VerificationOut:
    """Recompute every hash in ``from_seq..to_seq`` (inclusive) from the stored entries.

    ``to_seq`` is capped at the head. ``first_broken_index`` is the ``seq`` of
    the first entry that is missing, out of place, no longer hashes to its
    stored ``hash``, or whose copied attributes disagree with its envelope
    (rules: :class:`healthflow.audit.domain.ChainVerifier`).

    Raises:
        UnprocessableContent: ``from_seq`` after ``to_seq`` (422).
    """
    result, head, last = await service.verify(runtime, from_seq, to_seq)
    return VerificationOut(
        ok=result.ok, checked=result.checked, first_broken_index=result.first_broken_index,
        reason=result.reason, from_seq=from_seq, to_seq=last if last >= 0 else None,
        head_seq=None if head.empty else head.seq, head_hash=head.hash,
    )


@router.get("/events/{seq}", response_model=AuditEntry, summary="One entry by seq")
async def get_event(
    runtime: Runtime,
    seq: Annotated[int, Path(ge=0, le=MAX_SEQ)],
    principal: AuditReader,
) -> AuditEntry:
    """Raises: NotFound (404) when no entry has this ``seq``."""
    return AuditEntry.model_validate(await service.get_entry(runtime, seq))


@router.get("/proof/inclusion", response_model=InclusionProofOut,
            summary="Prove an entry is in the tree of a given size (RFC 9162)")
async def inclusion_proof(
    runtime: Runtime,
    principal: AuditReader,
    seq: Annotated[int, Query(ge=0, le=MAX_SEQ, description="the entry (leaf index)")],
    tree_size: Annotated[int, Query(ge=1, le=MAX_SEQ, description="entries in the tree, "
                                    "e.g. a checkpoint's size")],
) -> InclusionProofOut:
    """The audit path of entry ``seq`` in the tree of its first ``tree_size`` entries
    (RFC 9162 §2.1.3.1); check it against a signed checkpoint's root hash.

    Raises:
        UnprocessableContent: (422) ``tree_size`` beyond the log or ``seq`` not below it.
    """
    path = await tree.inclusion_proof(runtime, seq, tree_size)
    entry = await service.get_entry(runtime, seq)
    return InclusionProofOut(seq=seq, tree_size=tree_size,
                             leaf_hash=_b64(entry_leaf_hash(str(entry["hash"]))),
                             audit_path=[_b64(h) for h in path])


@router.get("/proof/consistency", response_model=ConsistencyProofOut,
            summary="Prove a tree extends an earlier one (RFC 9162)")
async def consistency_proof(
    runtime: Runtime,
    principal: AuditReader,
    first: Annotated[int, Query(ge=1, le=MAX_SEQ, description="size of the earlier tree")],
    second: Annotated[int, Query(ge=1, le=MAX_SEQ, description="size of the later tree")],
) -> ConsistencyProofOut:
    """``PROOF(first, D[second])`` (RFC 9162 §2.1.4.1): with two checkpoints' roots it
    shows the later log only appended to the earlier one.

    Raises:
        UnprocessableContent: (422) ``second`` beyond the log or ``first`` after ``second``.
    """
    path = await tree.consistency_proof(runtime, first, second)
    return ConsistencyProofOut(first=first, second=second,
                               consistency_path=[_b64(h) for h in path])


@router.get("/export", summary="Entries 0..tree_size-1 as JSON Lines, for the offline verifier",
            response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}}}})
async def export(
    runtime: Runtime,
    principal: AuditReader,
    tree_size: Annotated[int | None, Query(ge=0, le=MAX_SEQ, description=(
        "entries to export, e.g. a checkpoint's size; default: the whole log"))] = None,
) -> StreamingResponse:
    """One :class:`AuditEntry` JSON object a line, ascending ``seq`` from 0 (the export
    ``healthflow-audit-verify --entries`` takes). ``X-Tree-Size`` says how many.

    Raises:
        UnprocessableContent: (422) ``tree_size`` beyond the log.
    """
    size = await service.export_size(runtime, tree_size)

    async def lines() -> AsyncIterator[bytes]:
        async for entry in service.export(runtime, size):
            yield AuditEntry.model_validate(entry).model_dump_json().encode() + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson",
                             headers={"X-Tree-Size": str(size),
                                      "Cache-Control": "private, no-store"})


@router.post("/checkpoints", response_model=CheckpointOut,
             summary="Sign a checkpoint of the log now")
async def sign_checkpoint(runtime: Runtime, principal: Principal = require(
        Permission.AUDIT_CHECKPOINT)) -> CheckpointOut:
    """A checkpoint covering every entry in the tree so far (``audit:checkpoint``): signed
    now when it grew since the latest one, else that one. Also written to the blob
    store and a file."""
    return _checkpoint(await checkpoints.sign_now(runtime))


@router.get("/checkpoints/key", response_model=CheckpointKeyOut,
            summary="The public key that signs checkpoints")
async def checkpoint_key(runtime: Runtime) -> CheckpointKeyOut:
    """Public: the Ed25519 verifier key (C2SP signed-note ``name+hash+base64``)."""
    return CheckpointKeyOut.model_validate(await checkpoints.public_key(runtime))


@router.get("/checkpoints/latest", response_model=CheckpointOut,
            summary="The latest signed checkpoint")
async def latest_checkpoint(runtime: Runtime) -> CheckpointOut:
    """Public. Raises: NotFound (404) before the first checkpoint."""
    return _checkpoint(await checkpoints.get(runtime, None))


@router.get("/checkpoints/{tree_size}", response_model=CheckpointOut,
            summary="The checkpoint signed at a tree size")
async def get_checkpoint(runtime: Runtime,
                         tree_size: Annotated[int, Path(ge=0, le=MAX_SEQ)]) -> CheckpointOut:
    """Public. Raises: NotFound (404) when no checkpoint was signed at that size."""
    return _checkpoint(await checkpoints.get(runtime, tree_size))


def _checkpoint(document: Document) -> CheckpointOut:
    return CheckpointOut(tree_size=int(document["_id"]),
                         root_hash=_b64(bytes.fromhex(str(document["root"]))),
                         key_id=str(document["key_id"]), signed_at=document["signed_at"],
                         note=str(document["note"]))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None
