"""De-identified copies of stored DICOM images, for teaching and export, made with
``dicognito``: patient names, ids and birth date, accession number, institution and
staff names, study id and station replaced; dates and times shifted into the past
(order kept); every UID replaced; De-identification Method (0012,0063) ``DICOGNITO``;
Patient Identity Removed (0012,0062) ``YES`` only where the header says there is no
burned-in annotation (dicognito's rule: it does not look at pixels).

dicognito leaves free text, descriptions, device identity and private elements as they
were; those are removed after it (:data:`REMOVED`, and every private element), as the
Basic Application Level Confidentiality Profile does (PS3.15 Annex E, Table E.1-1,
action X), in nested sequences too.

Each copy is made by a fresh anonymizer (a random seed), so copies of different
images cannot be linked by their replaced identifiers. An image whose header says its
pixels carry burned-in annotation gets no copy either. Photographs of films are not
DICOM and get no copy (what a photograph shows is not checked).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from dicognito.anonymizer import Anonymizer
from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

REMOVED = frozenset(tag_for_keyword(keyword) for keyword in (
    "PatientComments", "AdditionalPatientHistory", "ImageComments", "FrameComments",
    "StudyDescription", "SeriesDescription", "StudyComments", "VisitComments",
    "InstitutionAddress", "InstitutionalDepartmentName", "DeviceSerialNumber",
    "ProtocolName", "AcquisitionComments", "DerivationDescription",
    "RequestAttributesSequence", "RequestedProcedureDescription",
    "RequestedProcedureComments", "ReasonForTheRequestedProcedure", "ReasonForStudy",
    "ImagingServiceRequestComments", "ScheduledProcedureStepDescription",
    "PerformedProcedureStepDescription", "CommentsOnThePerformedProcedureStep",
    "AdmittingDiagnosesDescription", "ServiceEpisodeDescription", "InterpretationText",
    "TextComments", "TextString", "Occupation", "MedicalAlerts", "Allergies",
    "PatientTelephoneNumbers", "PatientAddress", "EthnicGroup", "MilitaryRank",
    "BranchOfService", "CountryOfResidence", "RegionOfResidence",
    "PatientReligiousPreference", "OtherPatientNames", "PatientBirthName",
    "PatientMotherBirthName", "ResponsibleOrganization", "ResponsiblePerson",
    "ReferencedPatientSequence", "MedicalRecordLocator", "SpecialNeeds", "PatientState",
    "CurrentPatientLocation", "PatientInstitutionResidence", "AdmissionID",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "OrderCallbackPhoneNumber", "OrderEnteredBy", "OrderEntererLocation",
    "ModifiedAttributesSequence", "OriginalAttributesSequence"))
"""Attributes the Basic Profile removes (PS3.15 Table E.1-1, X) that dicognito keeps:
free text, descriptions and comments (they often name the patient), addresses and
phone numbers, device identity, the request's details."""


def _remove_identifying(ds: Dataset) -> None:
    """Delete :data:`REMOVED` and every private element, at every nesting level."""
    def callback(dataset: Dataset, element: Any) -> None:
        if element.tag in REMOVED or element.tag.is_private:
            del dataset[element.tag]

    ds.walk(callback)


def deidentified_copy(source: Path, target: Path) -> bool:
    """Write a de-identified copy of the DICOM Part 10 file ``source`` to ``target``
    (blocking: run it in a thread; the whole dataset is read into memory) and return
    True; or write nothing and return False when Burned In Annotation (0028,0301) is
    ``YES``: the pixels themselves show identity, which only the pixels' removal
    (PS3.15 E.3.1, Clean Pixel Data Option, not done here) would take away. The File
    Meta's Media Storage SOP Instance UID follows the replaced SOP Instance UID."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(source)
        if str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES":
            return False
        Anonymizer().anonymize(ds)
        _remove_identifying(ds)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(target, enforce_file_format=True)
    return True
