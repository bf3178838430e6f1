"""Events the records service publishes: its contracts, from
:mod:`healthflow.contracts.records` (identifiers, kinds, versions and times only)."""

from __future__ import annotations

from healthflow.contracts.records import (
    CarePlanUpdated,
    DocumentEnteredInError,
    DocumentUploaded,
    EmergencyAccessGranted,
    EncounterCoded,
    EncounterFinished,
    EncounterStarted,
    ProcedureRecorded,
    RecordAccessed,
    RecordEntryAdded,
    RecordEntryCorrected,
)

__all__ = ["CarePlanUpdated", "DocumentEnteredInError", "DocumentUploaded",
           "EmergencyAccessGranted", "EncounterCoded", "EncounterFinished", "EncounterStarted",
           "ProcedureRecorded", "RecordAccessed", "RecordEntryAdded", "RecordEntryCorrected"]
