"""Cursor pagination: opaque ``cursor`` tokens and a ``Page`` response shape.

A cursor is the base64url JSON of the sort key of the last item returned
(e.g. ``{"seq": 41}`` or ``{"t": "2026-11-21T10:00:00+00:00", "id": "…"}``);
clients pass it back verbatim as ``?cursor=``. A tampered or foreign cursor is
a 400 problem, never a 500.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from healthflow.common.errors import BadRequest
from healthflow.common.mongo import Document

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class Page(BaseModel, Generic[T]):
    """One page of results; ``next_cursor`` is ``None`` on the last page."""

    items: list[T]
    next_cursor: str | None = Field(default=None, description="pass as ?cursor= for the next page")


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    """The position inside ``cursor``.

    Raises:
        BadRequest: when the cursor is not one this API issued.
    """
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the cursor is malformed; pass back next_cursor unchanged") from None
    if not isinstance(value, dict):
        raise BadRequest("the cursor is malformed; pass back next_cursor unchanged")
    return value


def _cursor_value(value: Any) -> Any:
    return {"$dt": value.isoformat()} if isinstance(value, datetime) else value


def _query_value(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"$dt"}:
        try:
            return datetime.fromisoformat(str(value["$dt"]))
        except ValueError:
            raise BadRequest("the cursor is malformed; pass back next_cursor unchanged") from None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadRequest("the cursor is malformed; pass back next_cursor unchanged")
    return value


async def keyset_page(
    collection: AsyncCollection[Document],
    query: Mapping[str, Any],
    *,
    sort: Sequence[str],
    cursor: str | None,
    limit: int,
    descending: bool = False,
    hint: str | None = None,
    session: AsyncClientSession | None = None,
) -> tuple[list[Document], str | None]:
    """One page of ``query`` in the order of the fields ``sort``, and the next cursor.

    Keyset pagination: the cursor holds the sort values of the last item (strings,
    numbers or aware datetimes), and the next page starts strictly after them, so
    pages never repeat or skip items while others are inserted. The last field of
    ``sort`` must make the order total (``_id`` usually). ``hint`` names the index
    that serves the query and the order (SecantusDB's planner needs it named).

    Raises:
        BadRequest: (400) for a cursor this API did not issue.
    """
    op = "$lt" if descending else "$gt"
    filters: list[Mapping[str, Any]] = [query] if query else []
    position = decode_cursor(cursor)
    if position is not None:
        values = position.get("k")
        if not isinstance(values, list) or len(values) != len(sort):
            raise BadRequest("the cursor is malformed; pass back next_cursor unchanged")
        after = [_query_value(v) for v in values]
        # (a, b) after (x, y): a > x, or a = x and b > y (lexicographic order).
        filters.append({"$or": [
            {**{sort[j]: after[j] for j in range(i)}, sort[i]: {op: after[i]}}
            for i in range(len(sort))
        ]})
    where = filters[0] if len(filters) == 1 else ({"$and": filters} if filters else {})
    direction = DESCENDING if descending else ASCENDING
    found = collection.find(where, session=session).sort([(f, direction) for f in sort])
    if hint is not None:
        found = found.hint(hint)
    docs = await found.limit(limit + 1).to_list()
    if len(docs) <= limit:
        return docs, None
    docs = docs[:limit]
    return docs, encode_cursor({"k": [_cursor_value(docs[-1][f]) for f in sort]})
