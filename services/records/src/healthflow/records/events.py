"""Events the records service publishes: its contracts, from
:mod:`healthflow.contracts.records`."""

from __future__ import annotations

from healthflow.contracts.records import NoteCreated

__all__ = ["NoteCreated"]
