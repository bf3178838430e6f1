"""Events the prescription service publishes: its contracts, from
:mod:`healthflow.contracts.prescription` (ids, states, quantities, times; an
override's reason)."""

from __future__ import annotations

from healthflow.contracts.prescription import (
    PrescriptionAccessed,
    PrescriptionCancelled,
    PrescriptionDispensed,
    PrescriptionIssued,
    SafetyOverride,
)

__all__ = ["PrescriptionAccessed", "PrescriptionCancelled", "PrescriptionDispensed",
           "PrescriptionIssued", "SafetyOverride"]
