"""Use case of compliance reports: a period's entries as a FHIR R4 Bundle of
``AuditEvent`` resources or as CSV, with the signed checkpoint that covers them.

The latest checkpoint is taken first (a new one is signed only when the latest is
``checkpoint_interval`` seconds old: :func:`healthflow.audit.checkpoints.recent`,
so reading reports does not make the service sign); the report then holds only
entries below its tree size, so every entry in it can be checked against that
checkpoint with ``healthflow-audit-verify``. Mapping: :mod:`healthflow.audit.fhir`.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
from datetime import datetime
from typing import Any

from healthflow.audit import checkpoints, domain, fhir, store
from healthflow.audit.domain import rfc3339_millis
from healthflow.common.errors import UnprocessableContent
from healthflow.common.mongo import Document, utcnow
from healthflow.common.service import ServiceRuntime

REPORT_MAX = 10_000
"""The most entries one report holds (narrow the filters for more)."""

PAGE_MAX = 1_000
"""The most entries one page of a patient's access report holds."""

ACCESS_TYPES = domain.CATEGORIES["record-access"]
"""The events that record someone other than the patient reading their chart, record,
a prescription or an X-ray."""

SIGNATURE_TYPE = {"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.5",
                  "display": "Verification Signature"}


async def _covered(runtime: ServiceRuntime, where: store.EntryFilter
                   ) -> tuple[Document, list[Document]]:
    if where.since is not None and where.until is not None and where.since > where.until:
        raise UnprocessableContent("query.from: must not be after 'to'",
                                   errors=[{"location": "query.from",
                                            "message": "must not be after 'to'"}])
    checkpoint = await checkpoints.recent(runtime)
    entries = await store.entries_for_report(runtime.db, where, below_seq=int(checkpoint["_id"]),
                                             limit=REPORT_MAX + 1)
    if len(entries) > REPORT_MAX:
        raise UnprocessableContent(
            f"more than {REPORT_MAX} entries match; narrow the period or the filters",
            errors=[{"location": "query", "message": f"more than {REPORT_MAX} entries"}])
    return checkpoint, entries


async def fhir_bundle(runtime: ServiceRuntime, where: store.EntryFilter
                      ) -> dict[str, Any]:
    """A FHIR R4 ``collection`` Bundle of the matching entries' AuditEvents, ascending
    ``seq``; ``Bundle.signature`` carries the covering checkpoint (its signed note,
    base64, ``sigFormat`` text/plain; type ASTM E1762 *Verification Signature*).

    Raises:
        UnprocessableContent: (422) ``from`` after ``to``, or more than :data:`REPORT_MAX`.
        checkpoints.HistoryRewritten: (409) the log no longer matches its checkpoints.
    """
    checkpoint, entries = await _covered(runtime, where)
    return _bundle(runtime, checkpoint, entries)


def _bundle(runtime: ServiceRuntime, checkpoint: Document, entries: list[Document]
            ) -> dict[str, Any]:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "collection",
                              "timestamp": rfc3339_millis(utcnow())}
    if entries:  # FHIR JSON has no empty arrays
        bundle["entry"] = [{"resource": fhir.audit_event(entry)} for entry in entries]
    return bundle | {
        "signature": {
            "type": [SIGNATURE_TYPE],
            "when": rfc3339_millis(checkpoint["signed_at"]),
            "who": {"display": checkpoints.settings_of(runtime).checkpoint_origin},
            "sigFormat": "text/plain",
            "data": base64.b64encode(str(checkpoint["note"]).encode()).decode(),
        },
    }


async def csv_report(runtime: ServiceRuntime, where: store.EntryFilter) -> tuple[str, int]:
    """The matching entries as CSV (RFC 4180, header :data:`fhir.CSV_COLUMNS`) and the
    tree size of the checkpoint that covers them.

    Raises:
        As :func:`fhir_bundle`.
    """
    checkpoint, entries = await _covered(runtime, where)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(fhir.CSV_COLUMNS)
    writer.writerows(fhir.csv_row(entry) for entry in entries)
    return out.getvalue(), int(checkpoint["_id"])


async def patient_access(runtime: ServiceRuntime, patient_id: str, *,
                         since: datetime | None = None, until: datetime | None = None,
                         after_seq: int = -1, limit: int = PAGE_MAX
                         ) -> tuple[dict[str, Any], int | None]:
    """One page of every access to ``patient_id``'s chart, record, prescriptions and
    X-rays by someone else (:data:`ACCESS_TYPES`) with event time in ``[since, until)``
    (aware UTC), ``seq`` after ``after_seq``: a :func:`fhir_bundle` of at most
    ``limit`` AuditEvents (who, when, care relationship, purpose) and the ``seq`` to
    continue after (``None`` on the last page). For the patient's own view; no other
    patient's entries.

    Raises:
        UnprocessableContent: (422) ``since`` after ``until``.
    """
    if since is not None and until is not None and since > until:
        raise UnprocessableContent("query.from: must not be after 'to'",
                                   errors=[{"location": "query.from",
                                            "message": "must not be after 'to'"}])
    where = store.EntryFilter(patientid=patient_id, types=ACCESS_TYPES, since=since,
                              until=until)
    checkpoint = await checkpoints.recent(runtime)
    entries = await store.entries_for_report(runtime.db, where, below_seq=int(checkpoint["_id"]),
                                             after_seq=after_seq, limit=limit + 1)
    following = int(entries[limit - 1]["seq"]) if len(entries) > limit else None
    return _bundle(runtime, checkpoint, entries[:limit]), following


BURST_SCAN_MAX = 50_000
"""The most ``auth.login_failed`` entries one burst query scans (narrow the period)."""


async def login_failure_bursts(runtime: ServiceRuntime, where: store.EntryFilter, *,
                               by: str, threshold: int, gap_seconds: float
                               ) -> list[domain.Burst]:
    """The failed-login bursts in ``where``'s period (rule:
    :func:`healthflow.audit.domain.login_failure_bursts`), grouped ``by`` ``user`` (the
    account tried: ``data.user_id``, else the entry's ``subject``) or ``client_ip`` (the
    source: ``data.client_ip``); failures without that key are left out.

    Raises:
        UnprocessableContent: (422) ``from`` after ``to``, or more than
            :data:`BURST_SCAN_MAX` failures in the period.
    """
    if where.since is not None and where.until is not None and where.since > where.until:
        raise UnprocessableContent("query.from: must not be after 'to'",
                                   errors=[{"location": "query.from",
                                            "message": "must not be after 'to'"}])
    where = dataclasses.replace(where, types=domain.CATEGORIES["login-failure"])
    head = await store.read_head(runtime.db)
    entries = await store.entries_for_report(runtime.db, where, below_seq=head.seq + 1,
                                             limit=BURST_SCAN_MAX + 1)
    if len(entries) > BURST_SCAN_MAX:
        raise UnprocessableContent(
            f"more than {BURST_SCAN_MAX} failed logins in the period; narrow it",
            errors=[{"location": "query", "message": f"more than {BURST_SCAN_MAX} entries"}])
    failures = []
    for entry in entries:
        data = entry.get("envelope", {}).get("data") or {}
        key = (data.get("user_id") or entry.get("subject")) if by == "user" else \
            data.get("client_ip")
        if isinstance(key, str) and key:
            failures.append(domain.Failure(int(entry["seq"]), entry["time"], key))
    return domain.login_failure_bursts(failures, threshold=threshold, gap_seconds=gap_seconds)
