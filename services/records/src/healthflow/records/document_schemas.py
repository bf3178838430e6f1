"""Response and request bodies of ``/api/v1/documents`` (FHIR ``DocumentReference``
metadata, withdrawal, download links); times aware UTC."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from healthflow.records.domain import DocumentCategory
from healthflow.records.schemas import ShortText, _Body


class DocumentWithdrawalIn(_Body):
    """``POST /api/v1/documents/{id}/entered-in-error``: why it was filed by mistake."""

    reason: ShortText


class DocumentWithdrawalOut(BaseModel):
    """Who withdrew a document, when (aware UTC) and why (``reason``: clinicians only;
    None for the patient)."""

    by: str
    at: datetime
    reason: str | None = None


class DocumentOut(BaseModel):
    """An uploaded file's metadata; ``file`` is its download path under the gateway.

    ``content_type`` as detected from the bytes; ``size`` in bytes; ``sha256`` 64 hex
    digits; ``pages`` for a PDF, ``width`` × ``height`` pixels for an image;
    ``status`` ``current`` or ``entered-in-error`` (then ``withdrawal``: by, at, reason).
    """

    id: str
    status: str
    withdrawal: DocumentWithdrawalOut | None = None
    encounter_id: str
    patient_id: str
    category: DocumentCategory
    content_type: str
    size: int
    sha256: str
    pages: int | None
    width: int | None
    height: int | None
    uploaded_by: str
    uploaded_at: datetime
    file: str

    @classmethod
    def from_document(cls, doc: dict[str, Any], prefix: str) -> DocumentOut:
        withdrawn = doc.get("withdrawal") is not None
        return cls.model_validate({**doc, "id": doc["_id"], "size": doc["blob"]["size"],
                                   "status": "entered-in-error" if withdrawn else "current",
                                   "sha256": doc["blob"]["sha256"],
                                   "file": f"{prefix}/{doc['_id']}/file"})


class LinkOut(BaseModel):
    """Where to get a file: ``url`` a presigned S3 GET valid ``expires_in`` seconds when
    S3 is reachable by clients, else None; ``file`` the download path under the gateway."""

    url: str | None
    expires_in: int
    file: str
