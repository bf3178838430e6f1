"""The FHIR R4 export: ``GET /api/v1/fhir/Patient/{id}/$everything``
(http://hl7.org/fhir/R4/patient-operation-everything.html), a page at a time.

The record is read as one sequence — the ``Patient`` stub, then the encounters,
the entries (every resource type, oldest first), the documents and last the
prescriptions (``MedicationRequest``, read from the prescription service with the
caller's token: :mod:`.prescriptions`) — cut into pages of ``_count`` resources
(:data:`DEFAULT_COUNT`, at most :data:`MAX_COUNT`). Each section is read with
keyset paging (the prescriptions with the prescription service's own cursor), so a
page never repeats or skips a resource while others are written. The page's
``next`` link carries an opaque ``_cursor``: the base64url JSON ``{"s": <section
index>, "c": <the section's own cursor or null>}``; the last page has no ``next``. A
cursor this API did not issue (its prescriptions part included) is a 400.

The records service's own sections are read in one transaction; the prescriptions
after it, outside it (no transaction waits on another service). When the
prescription service is unreachable, slow, refuses the caller or answers an item
that is not a prescription, the page carries
an ``OperationOutcome`` warning (``search.mode = outcome``) that prescriptions are
missing and has no ``next`` link: the Bundle still answers, never a 5xx.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from healthflow.common.auth import Principal
from healthflow.common.errors import BadRequest, NotFound
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.pagination import MAX_LIMIT, decode_cursor, encode_cursor
from healthflow.common.service import ServiceRuntime
from healthflow.records import fhir, store
from healthflow.records.domain import ResourceType
from healthflow.records.prescriptions import PrescriptionClient, PrescriptionsUnavailable
from healthflow.records.service import accessor, record_access

DEFAULT_COUNT = 100
MAX_COUNT = 500

Json = dict[str, Any]
Page = tuple[list[Document], str | None]
Reader = Callable[[UnitOfWork, str, str | None, int], Awaitable[Page]]


async def _encounters(uow: UnitOfWork, patient_id: str, cursor: str | None, limit: int
                      ) -> Page:
    return await store.encounters_page(uow.db, patient_id, cursor=cursor, limit=limit,
                                       session=uow.session)


async def _entries(uow: UnitOfWork, patient_id: str, cursor: str | None, limit: int) -> Page:
    return await store.entries_page(uow.db, {"patient_id": patient_id}, cursor=cursor,
                                    limit=limit, session=uow.session)


async def _documents(uow: UnitOfWork, patient_id: str, cursor: str | None, limit: int
                     ) -> Page:
    return await store.documents_page(uow.db, patient_id, cursor=cursor, limit=limit,
                                      session=uow.session)


SECTIONS: tuple[tuple[str, Reader], ...] = (
    (store.ENCOUNTERS, _encounters), (store.ENTRIES, _entries),
    (store.DOCUMENTS, _documents))
PRESCRIPTIONS = len(SECTIONS)
"""The section index of the prescriptions, read after the records service's own."""


def _position(cursor: str | None) -> tuple[int, str | None]:
    """(section index, section cursor) of an export cursor; the start for ``None``.

    Raises:
        BadRequest (400): a cursor this API did not issue.
    """
    value = decode_cursor(cursor)
    if value is None:
        return -1, None
    section, inner = value.get("s"), value.get("c")
    if not isinstance(section, int) or isinstance(section, bool) or \
            not 0 <= section <= PRESCRIPTIONS or not (inner is None or isinstance(inner, str)):
        raise BadRequest("the cursor is malformed; pass back the next link unchanged")
    if section == PRESCRIPTIONS and inner is not None and not _keyset_shaped(inner):
        raise BadRequest("the cursor is malformed; pass back the next link unchanged")
    return section, inner


def _keyset_shaped(cursor: str) -> bool:
    """Whether ``cursor`` has the shape of a :func:`healthflow.common.pagination.keyset_page`
    cursor (``{"k": [sort values]}``: strings, numbers, ``{"$dt": iso}``), as the
    prescription service's are: a forged one is refused here, not handed on to it.

    Raises:
        BadRequest (400): not base64url JSON of an object.
    """
    values = (decode_cursor(cursor) or {}).get("k")
    return isinstance(values, list) and 0 < len(values) <= 4 and all(
        (isinstance(v, str | int | float) and not isinstance(v, bool))
        or (isinstance(v, dict) and set(v) == {"$dt"} and isinstance(v["$dt"], str))
        for v in values)


def _resource(section: str, doc: Document, documents_url: str) -> Json:
    if section == store.ENCOUNTERS:
        return fhir.encounter(doc)
    if section == store.DOCUMENTS:
        return fhir.document_reference(doc, documents_url)
    return fhir.MAPPERS[ResourceType(doc["resource_type"])](doc)


async def _page(uow: UnitOfWork, patient_id: str, section: int, inner: str | None,
                count: int, documents_url: str) -> tuple[list[Json], int, str | None]:
    """Up to ``count`` of the records service's own resources from ``(section, inner)``
    on, and the position of the rest (section :data:`PRESCRIPTIONS` once they are read)."""
    resources: list[Json] = []
    if section < 0:
        resources.append({"resourceType": "Patient", "id": patient_id})
        section = 0
    while section < len(SECTIONS) and len(resources) < count:
        name, read = SECTIONS[section]
        docs, inner = await read(uow, patient_id, inner, count - len(resources))
        resources += [_resource(name, doc, documents_url) for doc in docs]
        if inner is None:
            section += 1
    return resources, section, inner


async def _prescriptions(client: PrescriptionClient, principal: Principal, patient_id: str,
                         inner: str | None, room: int
                         ) -> tuple[list[Json], str | None, list[Json]]:
    """Up to ``room`` ``MedicationRequest``s after ``inner``, the cursor of the rest
    (``None``: none left) and the ``OperationOutcome``s of what could not be read (the
    service unavailable, or an item of its page that does not map: then none of them).

    One call asks for at most the shared page size cap
    (:data:`healthflow.common.pagination.MAX_LIMIT`, which the prescription service's list
    enforces); a page that fills only part of ``room`` keeps the rest for the ``next`` link.
    """
    what = "Prescriptions (MedicationRequest)"
    try:
        items, rest = await client.page(principal.token, patient_id, inner,
                                        min(room, MAX_LIMIT))
    except PrescriptionsUnavailable as exc:
        return [], None, [fhir.missing_outcome(what, str(exc))]
    try:
        return [fhir.medication_request(item) for item in items], rest, []
    except (KeyError, TypeError, ValueError, AttributeError):
        return [], None, [fhir.missing_outcome(
            what, "the prescription service answered an item that is not a prescription")]


async def everything(runtime: ServiceRuntime, client: PrescriptionClient,
                     principal: Principal, patient_id: str, *, base_url: str,
                     documents_url: str, count: int, cursor: str | None) -> Json:
    """One page of the patient's record as a FHIR R4 ``searchset`` Bundle.

    ``base_url`` is the public FHIR base (``…/api/v1/fhir``) of ``fullUrl``s and
    links; ``documents_url`` the public ``…/api/v1/documents`` attachments point into.

    Raises:
        NotTreating / Forbidden (403); NotFound (404): no such patient is known;
        BadRequest (400): a cursor this API did not issue.
    """

    start, start_inner = _position(cursor)

    async def read(uow: UnitOfWork) -> tuple[list[Json], int, str | None]:
        role = await accessor(uow, principal, patient_id)
        if not await store.patient_exists(uow, patient_id):
            raise NotFound(f"no patient {patient_id} is known to the records")
        record_access(uow, principal, patient_id, role, "export")
        return await _page(uow, patient_id, start, start_inner, count, documents_url)

    resources, section, inner = await runtime.transact(read, actor=principal.actor)
    outcomes: list[Json] = []
    if section == PRESCRIPTIONS and len(resources) < count:
        more, inner, outcomes = await _prescriptions(client, principal, patient_id, inner,
                                                     count - len(resources))
        resources += more
        if inner is None:
            section += 1
    next_cursor = None if section > PRESCRIPTIONS else encode_cursor({"s": section, "c": inner})
    here = f"{base_url}/Patient/{patient_id}/$everything"
    links = [("self", f"{here}?{urlencode(_query(count, cursor))}")]
    if next_cursor is not None:
        links.append(("next", f"{here}?{urlencode(_query(count, next_cursor))}"))
    return fhir.bundle(resources, base_url=base_url, now=utcnow(), links=links,
                       outcomes=outcomes)


def _query(count: int, cursor: str | None) -> dict[str, str]:
    return {"_count": str(count), **({"_cursor": cursor} if cursor else {})}
