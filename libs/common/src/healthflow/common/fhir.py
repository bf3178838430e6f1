"""Shapes every FHIR R4 resource a service serves needs alike (records, xray).

* :func:`instant` — an R4 ``instant``/``dateTime`` as HealthFlow writes it: UTC,
  milliseconds, ``Z`` (FHIR R4 §2.24.0.1 allows any offset; one form keeps outputs
  comparable).
* :func:`drop_empty` — R4 forbids empty elements (§2.6.2 "elements SHALL have a value
  or children"): ``None``, ``[]`` and ``{}`` members and ``None`` list items go.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

Json = dict[str, Any]


def instant(value: datetime | None) -> str | None:
    """``2026-03-02T09:30:00.000Z`` (UTC, milliseconds) or ``None``."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def drop_empty(data: Json) -> Json:
    """``data`` without empty members, recursively (a new dict; ``data`` is unchanged)."""
    out: Json = {}
    for key, value in data.items():
        if isinstance(value, dict):
            value = drop_empty(value)
        elif isinstance(value, list):
            value = [drop_empty(v) if isinstance(v, dict) else v for v in value
                     if v is not None]
        if value not in (None, [], {}):
            out[key] = value
    return out
