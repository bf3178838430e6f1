"""Events the xray service publishes: its contracts, from :mod:`healthflow.contracts.xray`
(ids, codes, sizes, hashes and times; never the clinical question or DICOM names)."""

from __future__ import annotations

from healthflow.contracts.xray import (
    XrayAccessed,
    XrayProcessed,
    XrayReportDraftReplaced,
    XrayReported,
    XrayRequested,
    XrayRevoked,
    XrayUploaded,
)

__all__ = ["XrayAccessed", "XrayProcessed", "XrayReportDraftReplaced", "XrayReported",
           "XrayRequested", "XrayRevoked", "XrayUploaded"]
