"""Rules of the xray service: X-ray orders (FHIR R4 ``ServiceRequest``), who may order
and view, and the problems clients see. Pure: no FastAPI, Starlette or PyMongo.

Codes come from the standards that name them:

* body part — DICOM Body Part Examined (0018,0015) defined terms (PS3.16 Annex L,
  "Correspondence of Anatomic Region Codes and Body Part Examined Defined Terms"),
  each with the SNOMED CT body-structure code FHIR ``ServiceRequest.bodySite`` carries;
* view — DICOM View Position (0018,5101) defined terms (PS3.3 C.8.11.5);
* priority — FHIR R4 ``request-priority`` (routine | urgent | asap | stat).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from healthflow.common.problems import (
    Conflict,
    Forbidden,
    NotFound,
    Problem,
    UnprocessableContent,
)

SNOMED = "http://snomed.info/sct"


class BodyPart(StrEnum):
    """DICOM Body Part Examined terms this service orders (radiography of the common sites)."""

    CHEST = "CHEST"
    ABDOMEN = "ABDOMEN"
    PELVIS = "PELVIS"
    SKULL = "SKULL"
    CSPINE = "CSPINE"
    TSPINE = "TSPINE"
    LSPINE = "LSPINE"
    SHOULDER = "SHOULDER"
    ELBOW = "ELBOW"
    WRIST = "WRIST"
    HAND = "HAND"
    HIP = "HIP"
    KNEE = "KNEE"
    ANKLE = "ANKLE"
    FOOT = "FOOT"


BODY_SITES: dict[BodyPart, tuple[str, str]] = {
    BodyPart.CHEST: ("51185008", "Thoracic structure"),
    BodyPart.ABDOMEN: ("818981001", "Abdomen"),
    BodyPart.PELVIS: ("816092008", "Pelvis"),
    BodyPart.SKULL: ("89546000", "Skull structure"),
    BodyPart.CSPINE: ("122494005", "Cervical spine"),
    BodyPart.TSPINE: ("122495006", "Thoracic spine"),
    BodyPart.LSPINE: ("122496007", "Lumbar spine"),
    BodyPart.SHOULDER: ("16982005", "Shoulder region structure"),
    BodyPart.ELBOW: ("127949000", "Elbow region structure"),
    BodyPart.WRIST: ("8205005", "Wrist region structure"),
    BodyPart.HAND: ("85562004", "Hand structure"),
    BodyPart.HIP: ("29836001", "Hip region structure"),
    BodyPart.KNEE: ("72696002", "Knee region structure"),
    BodyPart.ANKLE: ("344001", "Ankle region structure"),
    BodyPart.FOOT: ("56459004", "Foot structure"),
}
"""Body part → (SNOMED CT code, display), as PS3.16 Annex L pairs them."""


class View(StrEnum):
    """DICOM View Position terms: antero-posterior, postero-anterior, left and right
    lateral, right and left posterior oblique... as PS3.3 C.8.11.5.1.1 defines them."""

    AP = "AP"
    PA = "PA"
    LL = "LL"
    RL = "RL"
    RLO = "RLO"
    LLO = "LLO"


class Priority(StrEnum):
    """FHIR R4 request-priority (http://hl7.org/fhir/request-priority)."""

    ROUTINE = "routine"
    URGENT = "urgent"
    ASAP = "asap"
    STAT = "stat"


PRIORITY_RANK: dict[Priority, int] = {Priority.STAT: 0, Priority.ASAP: 1,
                                       Priority.URGENT: 2, Priority.ROUTINE: 3}
"""The work list's order: FHIR request-priority from the most to the least urgent
(stat > asap > urgent > routine, as the code system defines them)."""


class OrderStatus(StrEnum):
    """FHIR R4 request-status, the part an X-ray order uses: ``active`` while images are
    taken and read; ``completed`` once the report of its study is signed; ``revoked``
    when the ordering doctor cancels it before that. Only an active order takes images."""

    ACTIVE = "active"
    COMPLETED = "completed"
    REVOKED = "revoked"


ENCOUNTER_IN_PROGRESS = "in-progress"
ENCOUNTER_FINISHED = "finished"
QUESTION_MAX = 2000


# ----------------------------------------------------------------------------- problems


class UnknownEncounter(UnprocessableContent):
    title, slug = "Unknown Encounter", "unknown-encounter"


class NotYourEncounter(Forbidden):
    title, slug = "Not Your Encounter", "not-your-encounter"


class EncounterStateConflict(Conflict):
    title, slug = "Encounter State Conflict", "encounter-state"


class OrderNotFound(NotFound):
    title, slug = "X-ray Order Not Found", "order-not-found"


class StudyNotFound(NotFound):
    title, slug = "Imaging Study Not Found", "study-not-found"


class InstanceNotFound(NotFound):
    title, slug = "Image Not Found", "instance-not-found"


class NotTreating(Forbidden):
    title, slug = "Not A Treating Doctor", "not-treating"


class NotTheRequester(Forbidden):
    title, slug = "Not The Requester", "not-the-requester"


class OrderClosed(Conflict):
    title, slug = "Order Closed", "order-closed"


class InvalidImage(UnprocessableContent):
    """The file is not an image this service accepts; ``problem`` names what is wrong
    (``unreadable``, ``truncated``, ``missing-uid``, ``unsupported-modality``, ``transfer-syntax``,
    ``pixel-data``, ``too-many-pixels``, ``type-mismatch``, ``not-an-image``)."""

    title, slug = "Invalid Image", "invalid-image"

    def __init__(self, detail: str, *, problem: str, **kw: Any) -> None:
        super().__init__(detail, problem=problem, **kw)


class FrameNotFound(NotFound):
    title, slug = "Frame Not Found", "frame-not-found"


class PreviewFailed(Problem):
    """A stored image did not render (500): its cause is logged by type only."""

    title, slug = "Preview Failed", "preview-failed"


class PatientMismatch(UnprocessableContent):
    title, slug = "Patient Mismatch", "patient-mismatch"


class AccessionMismatch(UnprocessableContent):
    title, slug = "Accession Number Mismatch", "accession-mismatch"


class StudyOfAnotherOrder(Conflict):
    title, slug = "Study Of Another Order", "study-of-another-order"


class DuplicateInstance(Conflict):
    title, slug = "Duplicate Instance", "duplicate-instance"


class UidNotAccepted(UnprocessableContent):
    """The file's Study or SOP Instance UID is stored for another patient. Said in words
    that do not confirm it is stored: the caller may not learn of another's images."""

    title, slug = "UID Not Accepted", "uid-not-accepted"

    def __init__(self) -> None:
        super().__init__("the image's Study or SOP Instance UID cannot be used for this "
                         "order; check that the file is an image of the order's patient")


# ----------------------------------------------------------------------------- orders


def clean_question(text: str) -> str:
    """The clinical question (FHIR ``ServiceRequest.reasonCode.text``) as stored: inner
    white space collapsed, trimmed, 1 to :data:`QUESTION_MAX` characters.

    Raises:
        ValueError: empty or too long.
    """
    question = " ".join(text.split())
    if not question:
        raise ValueError("the clinical question is empty")
    if len(question) > QUESTION_MAX:
        raise ValueError(f"the clinical question has more than {QUESTION_MAX} characters")
    return question


def check_may_order(encounter: dict[str, Any] | None, doctor_id: str) -> None:
    """A doctor orders only in an in-progress encounter they conduct.

    ``encounter`` is the read model of ``encounter.started``/``.finished``:
    ``{practitioner_id, status}`` (``in-progress`` or ``finished``).

    Raises:
        UnknownEncounter (422): not (yet) known here; NotYourEncounter (403): another
        doctor's; EncounterStateConflict (409): already finished.
    """
    if encounter is None:
        raise UnknownEncounter("no started encounter with this id is known to imaging")
    if encounter["practitioner_id"] != doctor_id:
        raise NotYourEncounter("a doctor orders X-rays only in encounters they conduct")
    if encounter["status"] != ENCOUNTER_IN_PROGRESS:
        raise EncounterStateConflict(f"the encounter is {encounter['status']}; X-rays are "
                                     "ordered while it is in progress")


def new_accession_number() -> str:
    """A fresh DICOM Accession Number: ``HF`` and 12 upper-case hex digits (14
    characters; VR SH allows 16). The radiographer enters it at the modality, which
    writes it into every image of the study (0008,0050)."""
    return "HF" + secrets.token_hex(6).upper()


@dataclass(frozen=True)
class OrderRequest:
    """What a doctor asks for (already validated)."""

    encounter_id: str
    body_part: BodyPart
    view: View
    priority: Priority
    question: str


def new_order(order_id: str, request: OrderRequest, encounter: dict[str, Any],
              requester_id: str, now: datetime) -> dict[str, Any]:
    """The order document: FHIR ``ServiceRequest`` fields, ``authored_on`` aware UTC."""
    code, display = BODY_SITES[request.body_part]
    return {
        "_id": order_id, "encounter_id": request.encounter_id,
        "patient_id": encounter["patient_id"], "requester_id": requester_id,
        "status": OrderStatus.ACTIVE.value, "intent": "order",
        "priority": request.priority.value,
        "priority_rank": PRIORITY_RANK[request.priority], "body_part": request.body_part.value,
        "body_site": {"system": SNOMED, "code": code, "display": display},
        "view": request.view.value, "question": request.question,
        "accession_number": new_accession_number(), "authored_on": now, "updated_at": now,
    }


def check_open(order: dict[str, Any]) -> None:
    """Images are added to an ``active`` order only.

    Raises:
        OrderClosed (409): completed (its report is signed) or revoked.
    """
    if order["status"] != OrderStatus.ACTIVE:
        raise OrderClosed(f"the order is {order['status']}; it takes no more images")


def check_cancellable(order: dict[str, Any], doctor_id: str) -> None:
    """The ordering doctor revokes an order while it is ``active`` (FHIR request-status
    active → revoked).

    Raises:
        NotTheRequester (403): another doctor's order; OrderClosed (409): not active.
    """
    if order["requester_id"] != doctor_id:
        raise NotTheRequester("only the doctor who ordered the X-ray cancels it")
    if order["status"] != OrderStatus.ACTIVE:
        raise OrderClosed(f"the order is {order['status']}; only an active order is "
                          "cancelled")


# ----------------------------------------------------------------------------- images


def check_identity(order: dict[str, Any], patient_id: str, accession_number: str | None
                   ) -> None:
    """A DICOM file belongs to ``order``: its Patient ID (0010,0020) is the order's
    HealthFlow patient id, and its Accession Number (0008,0050), when the modality
    set one, is the order's. Nothing is reconciled silently: a mismatch is refused.

    Raises:
        PatientMismatch (422), AccessionMismatch (422).
    """
    if patient_id != order["patient_id"]:
        raise PatientMismatch("the DICOM Patient ID is not the patient of the order; set it "
                              "to the patient id the work list shows")
    if accession_number and accession_number != order["accession_number"]:
        raise AccessionMismatch(f"the DICOM Accession Number is not the order's "
                                f"({order['accession_number']})")


def check_study_order(study: dict[str, Any] | None, order: dict[str, Any]) -> None:
    """A Study Instance UID belongs to one order. ``study`` is the stored study of the
    UID, or None; both carry ``patient_id``.

    Raises:
        StudyOfAnotherOrder (409): of another order of the same patient;
        UidNotAccepted (422): of another patient's order.
    """
    if study is None or study["order_id"] == order["_id"]:
        return
    if study["patient_id"] != order["patient_id"]:
        raise UidNotAccepted
    raise StudyOfAnotherOrder("this Study Instance UID is stored for another order of "
                              "this patient")


def check_new_instance(stored: dict[str, Any] | None, order: dict[str, Any], sha256: str
                       ) -> bool:
    """A SOP Instance UID is stored once; whether this is the stored file sent again.
    ``stored`` is the instance already stored under the UID, or None; ``sha256`` is the
    hex SHA-256 of the file being stored. The same file again for the same patient (a
    modality or viewer re-sending after a lost answer) is not an error: True, and the
    caller stores nothing and answers as it did the first time (PS3.4 C.4.2.1.4 leaves
    duplicate handling to the SCP).

    Raises:
        DuplicateInstance (409): another file under a UID stored for the order's patient;
        UidNotAccepted (422): stored for another patient.
    """
    if stored is None:
        return False
    if stored["patient_id"] != order["patient_id"]:
        raise UidNotAccepted
    if stored["blob"]["sha256"] == sha256:
        return True
    raise DuplicateInstance("another file is stored under this SOP Instance UID")


# ----------------------------------------------------------------------------- viewing


class Viewer(StrEnum):
    PATIENT = "patient"
    TREATING_DOCTOR = "treating_doctor"


def viewer_of(subject: str, patient_id: str, *, reads_own: bool, reads_treated: bool,
              treats: bool) -> Viewer:
    """In what capacity ``subject`` views ``patient_id``'s images.

    The patient views their own (``imaging:read_own``); a doctor
    (``imaging:read_treated``) while in a care relationship (``treats``).

    Raises:
        StudyNotFound (404): a patient asking for another patient's (existence is hidden);
        NotTreating (403): a doctor without a care relationship.
    """
    if reads_own and subject == patient_id:
        return Viewer.PATIENT
    if reads_treated:
        if treats:
            return Viewer.TREATING_DOCTOR
        raise NotTreating("you may only see the images of your own patients")
    raise StudyNotFound("no such imaging study")


# ----------------------------------------------------------------------------- reports


class ReportStatus(StrEnum):
    """FHIR R4 diagnostic-report-status, the part a radiology report uses here."""

    PRELIMINARY = "preliminary"
    FINAL = "final"


REPORT_TEXT_MAX = 20_000


class ReportNotFound(NotFound):
    title, slug = "Report Not Found", "report-not-found"


class ReportFinal(Conflict):
    title, slug = "Report Is Final", "report-final"


class NotTheAuthor(Forbidden):
    title, slug = "Not The Author", "not-the-author"


def clean_report_text(text: str) -> str:
    """Findings or impression as stored: trimmed, 1 to :data:`REPORT_TEXT_MAX` characters
    (line breaks kept: reports are paragraphs).

    Raises:
        ValueError: empty or too long.
    """
    cleaned = "\n".join(line.rstrip() for line in text.strip().splitlines())
    if not cleaned:
        raise ValueError("the text is empty")
    if len(cleaned) > REPORT_TEXT_MAX:
        raise ValueError(f"the text has more than {REPORT_TEXT_MAX} characters")
    return cleaned


def check_may_report(order: dict[str, Any], doctor_id: str, *, treats: bool) -> None:
    """Who reports a study: the doctor who ordered it (FHIR ``ServiceRequest.requester``)
    or a doctor in a care relationship with its patient (``treats``).

    Raises:
        NotTreating (403): any other doctor.
    """
    if order["requester_id"] != doctor_id and not treats:
        raise NotTreating("only the ordering doctor or a doctor treating the patient "
                          "reports their images")


def check_editable(report: dict[str, Any] | None, author_id: str) -> None:
    """A report is written and rewritten while ``preliminary``, by its author only.

    Raises:
        ReportFinal (409): signed already; NotTheAuthor (403): another doctor's draft.
    """
    if report is None:
        return
    if report["status"] == ReportStatus.FINAL:
        raise ReportFinal("the report is signed; it can no longer change")
    if report["author_id"] != author_id:
        raise NotTheAuthor("only the author edits a draft report")


def takes_over(report: dict[str, Any] | None, doctor_id: str, requester_id: str) -> bool:
    """Whether ``doctor_id`` writing ``report`` takes over another doctor's draft: the
    ordering doctor (FHIR ``ServiceRequest.requester``, who answers for the order) has
    precedence over a draft a treating colleague started, which their write discards.

    Raises:
        ReportFinal (409): signed already; NotTheAuthor (403): neither its author nor
        the ordering doctor.
    """
    if report is None:
        return False
    try:
        check_editable(report, doctor_id)
    except NotTheAuthor:
        if doctor_id != requester_id:
            raise NotTheAuthor("only the author or the ordering doctor edits a draft "
                               "report") from None
        return True
    return False


def completes_order(order: dict[str, Any]) -> bool:
    """Whether signing a report of ``order``'s studies moves it ``active → completed``.
    One order may hold several studies (a photograph's plus the modality's, or a
    modality splitting Study Instance UIDs), each reported and signed: the first
    signature completes it, later ones find it completed and leave it so.

    Raises:
        OrderClosed (409): the order was revoked; its reports are not signed.
    """
    if order["status"] == OrderStatus.REVOKED:
        raise OrderClosed("the order was revoked; its report is not signed")
    return bool(order["status"] == OrderStatus.ACTIVE)


def check_signable(report: dict[str, Any] | None, doctor_id: str) -> dict[str, Any]:
    """preliminary → final, by the author. Returns the report. Raises ReportNotFound
    (404), ReportFinal (409), NotTheAuthor (403)."""
    if report is None:
        raise ReportNotFound("the study has no report to sign")
    check_editable(report, doctor_id)
    return report


def report_visible(report: dict[str, Any] | None, viewer: Viewer) -> dict[str, Any]:
    """What a viewer sees: treating doctors every state, the patient the final report.
    Raises ReportNotFound (404): none, or a draft asked for by the patient."""
    if report is None or (viewer is Viewer.PATIENT and report["status"] != ReportStatus.FINAL):
        raise ReportNotFound("the study has no report yet")
    return report
