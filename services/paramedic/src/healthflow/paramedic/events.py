"""Events the paramedic service publishes: its contracts, from
:mod:`healthflow.contracts.paramedic`."""

from __future__ import annotations

from healthflow.contracts.paramedic import NoteCreated

__all__ = ["NoteCreated"]
