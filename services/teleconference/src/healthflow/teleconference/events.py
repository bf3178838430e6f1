"""Events the teleconference service publishes: its contracts, from
:mod:`healthflow.contracts.teleconference`."""

from __future__ import annotations

from healthflow.contracts.teleconference import (
    TeleconsultEnded,
    TeleconsultParticipantJoined,
    TeleconsultParticipantLeft,
    TeleconsultStarted,
)

__all__ = ["TeleconsultEnded", "TeleconsultParticipantJoined", "TeleconsultParticipantLeft",
           "TeleconsultStarted"]
