"""Events the emergency service publishes: its contracts, from
:mod:`healthflow.contracts.emergency`."""

from __future__ import annotations

from healthflow.contracts.emergency import (
    EmergencyAssigned,
    EmergencyDestinationChosen,
    EmergencyLocated,
    EmergencyRaised,
    EmergencyReprioritised,
    EmergencyStatusChanged,
)

__all__ = ["EmergencyAssigned", "EmergencyDestinationChosen", "EmergencyLocated",
           "EmergencyRaised",
           "EmergencyReprioritised", "EmergencyStatusChanged"]
