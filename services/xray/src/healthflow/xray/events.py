"""Events the xray service publishes: its contracts, from
:mod:`healthflow.contracts.xray`."""

from __future__ import annotations

from healthflow.contracts.xray import NoteCreated

__all__ = ["NoteCreated"]
