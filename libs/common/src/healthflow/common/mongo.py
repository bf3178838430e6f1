"""MongoDB access through PyMongo's async API.

* One :class:`~pymongo.AsyncMongoClient` per process and URL (:func:`get_client`).
* One database per service (``healthflow_<service>`` unless configured).
* Index declarations (:data:`Indexes`) applied at start-up by :func:`ensure_indexes`.
* :func:`run_transaction`: a multi-document transaction with the driver's retry
  rules (``TransientTransactionError`` retried whole, ``UnknownTransactionCommitResult``
  commit retried), via ``ClientSession.with_transaction``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TypeVar

import pymongo
from bson.codec_options import CodecOptions
from pymongo import GEOSPHERE, AsyncMongoClient, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from healthflow.common import tracing

log = logging.getLogger(__name__)

T = TypeVar("T")
Document = dict[str, Any]
Indexes = Mapping[str, Sequence[IndexModel]]
"""Collection name → the indexes it must have."""

_clients: dict[str, AsyncMongoClient[Document]] = {}

# Times come back as aware UTC datetimes.
CODEC_OPTIONS: CodecOptions[Document] = CodecOptions(tz_aware=True, tzinfo=UTC)


def get_client(url: str) -> AsyncMongoClient[Document]:
    """The process-wide client for ``url`` (created on first use)."""
    client = _clients.get(url)
    if client is None:
        tracing.instrument_pymongo()  # its command listener must exist before the client
        client = AsyncMongoClient(
            url,
            tz_aware=True,
            tzinfo=UTC,
            serverSelectionTimeoutMS=5_000,
            connectTimeoutMS=5_000,
            retryWrites=True,
            uuidRepresentation="standard",
        )
        _clients[url] = client
    return client


async def close_clients() -> None:
    """Close every client this process opened (at shutdown)."""
    while _clients:
        _, client = _clients.popitem()
        await client.close()


def get_database(url: str, name: str) -> AsyncDatabase[Document]:
    return get_client(url).get_database(name, codec_options=CODEC_OPTIONS)


def geo_index(field: str, name: str | None = None) -> IndexModel:
    """A 2dsphere index on ``field`` (GeoJSON, WGS84) that can be declared again.

    The version is given explicitly: SecantusDB stores ``2dsphereIndexVersion: 3`` and
    answers a later ``createIndexes`` without it with ``IndexKeySpecsConflict`` (code
    86), so a second replica or a restart would fail :func:`ensure_indexes`. MongoDB
    treats both forms as the same index.
    """
    return IndexModel([(field, GEOSPHERE)], name=name or field, **{"2dsphereIndexVersion": 3})


INDEX_CONFLICTS = (85, 86)  # IndexOptionsConflict, IndexKeySpecsConflict


async def ensure_indexes(db: AsyncDatabase[Document], indexes: Indexes) -> None:
    """Create the declared indexes (idempotent; run at start-up).

    A TTL index declared with another ``expireAfterSeconds`` than it has (a changed
    retention setting) is retuned in place with ``collMod`` rather than refused.

    Raises:
        pymongo.errors.OperationFailure: an index exists with other options than a
            TTL period (e.g. another key under the same name).
    """
    for collection, models in indexes.items():
        if not models:
            continue
        try:
            await db[collection].create_indexes(list(models))
        except pymongo.errors.OperationFailure as exc:
            ttl = [m.document for m in models if "expireAfterSeconds" in m.document]
            if exc.code not in INDEX_CONFLICTS or not ttl:
                raise
            for spec in ttl:
                with contextlib.suppress(pymongo.errors.OperationFailure):  # not there yet
                    await db.command({"collMod": collection, "index": {
                        "name": spec["name"], "expireAfterSeconds": spec["expireAfterSeconds"]}})
            await db[collection].create_indexes(list(models))


TRANSACTION_BUDGET = 8.0
"""Seconds one transaction of an HTTP request may take, its retries included (the
driver's client-side operation timeout); for writes (every method but GET and HEAD)
the whole request's database work shares it. Below the gateway's shortest upstream timeout
(10 s), so a stalled database ends a request as a 503 with ``Retry-After`` from the
service rather than a 504 from the edge (found by the fault drill,
``libs/client/tests/test_drill.py``)."""

transaction_budget: ContextVar[float | None] = ContextVar("transaction_budget", default=None)
"""The budget in force: :data:`TRANSACTION_BUDGET` while an HTTP request is handled (set
by the request middleware), none for event consumers and the relay, which wait the
database out and retry on their own."""


async def run_transaction(
    client: AsyncMongoClient[Document], fn: Callable[[AsyncClientSession], Awaitable[T]],
    budget: float | None = None,
) -> T:
    """Run ``fn(session)`` inside a transaction, retrying by the driver's rules.

    ``fn`` may run more than once (on transient errors) and must not have side
    effects outside the session. Majority read and write concern. ``budget``
    (seconds; default :data:`transaction_budget`) bounds the whole transaction.

    Raises:
        pymongo.errors.PyMongoError: with ``timeout`` true when the budget ran out
            (the HTTP layer answers 503 with ``Retry-After``).
    """
    budget = budget if budget is not None else transaction_budget.get()
    with pymongo.timeout(budget) if budget is not None else contextlib.nullcontext():
        async with client.start_session() as session:
            return await session.with_transaction(
                fn,
                read_concern=ReadConcern("majority"),
                write_concern=WriteConcern("majority"),
            )


def utcnow() -> datetime:
    """Now as an aware UTC datetime truncated to milliseconds (BSON's precision)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=(now.microsecond // 1000) * 1000)
