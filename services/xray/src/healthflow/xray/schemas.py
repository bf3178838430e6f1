"""Request and response bodies of ``/api/v1/imaging`` (FHIR R4 terms: ``ServiceRequest``,
``ImagingStudy`` with series and instances). Times are aware UTC."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from healthflow.common.mongo import Document
from healthflow.xray.checks import LABEL
from healthflow.xray.domain import (
    BodyPart,
    OrderRequest,
    Priority,
    View,
    clean_question,
    clean_report_text,
)
from healthflow.xray.processing import NAMES, NOT_MADE_REASONS


class OrderIn(BaseModel):
    """``POST /api/v1/imaging/orders``: ``question`` is the clinical question (free text,
    kept in this service only)."""

    model_config = ConfigDict(extra="forbid")

    encounter_id: str = Field(min_length=1, max_length=64)
    body_part: BodyPart
    view: View
    priority: Priority = Priority.ROUTINE
    question: Annotated[str, AfterValidator(clean_question)]

    def request(self) -> OrderRequest:
        return OrderRequest(self.encounter_id, self.body_part, self.view, self.priority,
                            self.question)


class Coding(BaseModel):
    system: str
    code: str
    display: str


class OrderOut(BaseModel):
    """An X-ray order (``ServiceRequest``; ``status`` active | completed | revoked)."""

    id: str
    resource_type: str = "ServiceRequest"
    status: str
    intent: str
    priority: str
    encounter_id: str
    patient_id: str
    requester_id: str
    body_part: str
    body_site: Coding
    view: str
    question: str
    accession_number: str
    authored_on: datetime

    @classmethod
    def from_document(cls, doc: Document) -> OrderOut:
        return cls.model_validate({**doc, "id": doc["_id"]})


class InstanceOut(BaseModel):
    """One stored image (``ImagingStudy.series.instance``); ``size`` in bytes,
    ``sha256`` 64 hex digits; ``rows``/``columns`` in pixels; ``preview`` and
    ``file`` are paths under the gateway."""

    id: str
    number: int
    sop_instance_uid: str
    sop_class_uid: str | None
    modality: str
    content_type: str
    size: int
    sha256: str
    rows: int
    columns: int
    photometric: str
    body_part: str | None
    view_position: str | None
    uploaded_by: str
    uploaded_at: datetime
    preview: str
    file: str


class SeriesOut(BaseModel):
    uid: str
    modality: str
    instances: list[InstanceOut]


class StudyOut(BaseModel):
    """An ``ImagingStudy`` (status ``available``) of an order, its series and instances."""

    id: str
    resource_type: str = "ImagingStudy"
    status: str = "available"
    study_instance_uid: str
    order_id: str
    encounter_id: str
    patient_id: str
    modalities: list[str]
    started: datetime
    series: list[SeriesOut]

    @classmethod
    def from_documents(cls, study: Document, instances: list[Document], base: str
                       ) -> StudyOut:
        series: dict[str, SeriesOut] = {}
        for doc in instances:
            url = f"{base}/{study['_id']}/instances/{doc['_id']}"
            one = SeriesOut(uid=doc["series_uid"], modality=doc["modality"], instances=[])
            series.setdefault(doc["series_uid"], one).instances.append(InstanceOut(
                id=doc["_id"], number=doc["number"], sop_instance_uid=doc["sop_instance_uid"],
                sop_class_uid=doc["sop_class_uid"], modality=doc["modality"],
                content_type=doc["content_type"], size=doc["blob"]["size"],
                sha256=doc["blob"]["sha256"], uploaded_by=doc["uploaded_by"],
                uploaded_at=doc["uploaded_at"], preview=f"{url}/preview", file=f"{url}/file",
                **{k: doc["image"][k] for k in ("rows", "columns", "photometric",
                                                "body_part", "view_position")}))
        return cls(id=study["_id"], study_instance_uid=study["study_uid"],
                   order_id=study["order_id"], encounter_id=study["encounter_id"],
                   patient_id=study["patient_id"], modalities=study["modalities"],
                   started=study["created_at"], series=list(series.values()))


class LinkOut(BaseModel):
    """Where to get a file: ``url`` a presigned S3 GET valid ``expires_in`` seconds when
    S3 is reachable by clients, else None; ``file`` the download path under the gateway."""

    url: str | None
    expires_in: int
    file: str




ReportText = Annotated[str, AfterValidator(clean_report_text)]


class ReportIn(BaseModel):
    """``PUT /api/v1/imaging/studies/{id}/report``: the draft's findings and impression
    (FHIR ``DiagnosticReport.conclusion``)."""

    model_config = ConfigDict(extra="forbid")

    findings: ReportText
    impression: ReportText


class ReportOut(BaseModel):
    """A radiology report (``DiagnosticReport``, category RAD); ``status`` preliminary |
    final; ``issued_at`` set when signed."""

    id: str
    resource_type: str = "DiagnosticReport"
    status: str
    study_id: str
    order_id: str
    encounter_id: str
    patient_id: str
    author_id: str
    findings: str
    impression: str
    version: int
    updated_at: datetime
    issued_at: datetime | None

    @classmethod
    def from_document(cls, doc: Document) -> ReportOut:
        return cls.model_validate({**doc, "id": doc["_id"]})


class CheckOut(BaseModel):
    """One automated check: ``code`` ok | warning | not-assessed and the measurements it
    judged by (:mod:`healthflow.xray.checks`: fractions 0–1, millimetres, pixels)."""

    model_config = ConfigDict(extra="allow")

    code: str


class NotMadeOut(BaseModel):
    """An optional output the worker could not make for an image, so the doctor knows
    that part of the automated processing did not run: ``output`` ``overlay`` | ``sr``
    | ``deidentified``, ``name`` what it is, ``reason`` ``error`` |
    ``burned-in-annotation`` and ``detail`` the reason in words
    (:data:`healthflow.xray.processing.NOT_MADE_REASONS`)."""

    output: str
    name: str
    reason: str
    detail: str

    @classmethod
    def from_result(cls, doc: Document) -> list[NotMadeOut]:
        return [cls(output=kind, name=NAMES.get(kind, kind), reason=reason,
                    detail=NOT_MADE_REASONS.get(reason, reason))
                for kind, reason in sorted((doc.get("not_made") or {}).items())]


class InstanceResultsOut(BaseModel):
    """The processing worker's results for one image; ``label`` says they are
    machine-generated suggestions, not a diagnosis; ``thumbnail`` the PNG's path;
    ``overlay`` the path of the preview with the lung boxes drawn (a chest image whose
    lungs were found, else None); ``deidentified`` the path of the de-identified DICOM
    copy (for ``imaging:export_deidentified`` only; None for a photograph); ``sr`` the
    path of the TID 1500 measurement report SR (a DICOM chest image whose lungs were
    found, else None); ``not_made`` the optional outputs that could not be made, with
    why (empty when all that applies was made)."""

    instance_id: str
    label: str
    checks: dict[str, CheckOut]
    thumbnail: str
    overlay: str | None = None
    deidentified: str | None = None
    sr: str | None = None
    not_made: list[NotMadeOut] = Field(default_factory=list)
    processed_at: datetime


class ResultsOut(BaseModel):
    """``GET /api/v1/imaging/studies/{id}/results``: the images processed so far
    (an image stored moments ago may not be listed yet)."""

    study_id: str
    label: str
    instances: list[InstanceResultsOut]

    @classmethod
    def from_documents(cls, study_id: str, docs: list[Document], base: str) -> ResultsOut:
        def url(doc: Document, kind: str) -> str | None:
            return f"{base}/{study_id}/instances/{doc['_id']}/{kind}" if doc.get(kind) \
                else None

        return cls(study_id=study_id, label=LABEL, instances=[InstanceResultsOut(
            instance_id=d["_id"], label=d["label"], checks=d["checks"],
            thumbnail=f"{base}/{study_id}/instances/{d['_id']}/thumbnail",
            overlay=url(d, "overlay"), deidentified=url(d, "deidentified"),
            sr=url(d, "sr"), not_made=NotMadeOut.from_result(d),
            processed_at=d["processed_at"]) for d in docs])
