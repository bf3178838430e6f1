"""Cursor pagination: opaque ``cursor`` tokens and a ``Page`` response shape.

A cursor is the base64url JSON of the sort key of the last item returned
(e.g. ``{"seq": 41}`` or ``{"t": "2026-11-21T10:00:00+00:00", "id": "…"}``);
clients pass it back verbatim as ``?cursor=``. A tampered or foreign cursor is
a 400 problem, never a 500.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from healthflow.common.errors import BadRequest

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
