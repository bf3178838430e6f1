"""Events the paramedic service publishes: its contracts, from
:mod:`healthflow.contracts.paramedic`."""

from __future__ import annotations

from healthflow.contracts.paramedic import (
    AssignmentEscalated,
    EtaUpdated,
    TaskAccepted,
    TaskDeclined,
    TaskOffered,
    TaskUnacknowledged,
    XrayTaskAccepted,
    XrayTaskEnded,
    XrayTaskOffered,
)

__all__ = ["AssignmentEscalated", "EtaUpdated", "TaskAccepted", "TaskDeclined", "TaskOffered",
           "TaskUnacknowledged", "XrayTaskAccepted", "XrayTaskEnded", "XrayTaskOffered"]
