"""Events the hospital service publishes (re-exported from :mod:`healthflow.contracts`).

The models (type string, publisher, schema version and fields) live in the
contracts package, which consumers import too; this module re-exports them so
call sites keep writing ``events.<Model>(...)``.
"""

from __future__ import annotations

from healthflow.contracts.hospital import (
    DepartmentCreated,
    HospitalRegistered,
    HospitalRejected,
    HospitalSnapshot,
    HospitalVerified,
    StaffAssigned,
    StaffRemoved,
)

__all__ = [
    "DepartmentCreated",
    "HospitalRegistered",
    "HospitalRejected",
    "HospitalSnapshot",
    "HospitalVerified",
    "StaffAssigned",
    "StaffRemoved",
]
