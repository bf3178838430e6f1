"""The Basic Text SR's dates and times say they are UTC (DICOM PS3.3 C.12.1.1.8)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from pydicom import dcmread

from healthflow.xray import documents


def test_the_sr_s_utc_dates_and_times_carry_timezone_offset_from_utc() -> None:
    """Study/Content Date and Time are written from aware UTC instants; without
    Timezone Offset From UTC (0008,0201) a reader takes them as local time (PS3.3
    C.12.1.1.8), hours off wherever the reader is not on UTC."""
    issued = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    report = {"_id": "r-1", "patient_id": "p-1", "findings": "f", "impression": "i",
              "author_id": "dr-1", "issued_at": issued, "status": "final"}
    study = {"study_uid": "1.2.3", "created_at": datetime(2026, 3, 1, 22, 0, tzinfo=UTC)}
    order = {"accession_number": "HF0123456789AB"}
    ds = dcmread(io.BytesIO(documents.basic_text_sr(report, study, order)))
    assert ds.TimezoneOffsetFromUTC == "+0000"
    assert (ds.ContentDate, ds.ContentTime) == ("20260301", "233000")
