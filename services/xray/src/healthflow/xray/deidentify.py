"""De-identified copies of stored DICOM images, for teaching and export, made with
``dicognito``: patient names, ids and birth date, accession number, institution and
staff names, study id and station replaced; dates and times shifted into the past
(order kept); every UID replaced; De-identification Method (0012,0063) ``DICOGNITO``;
Patient Identity Removed (0012,0062) ``YES`` only where the header says there is no
burned-in annotation (dicognito's rule: it does not look at pixels).

Each copy is made by a fresh anonymizer (a random seed), so copies of different
images cannot be linked by their replaced identifiers. Photographs of films are not
DICOM and get no copy (what a photograph shows is not checked).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from dicognito.anonymizer import Anonymizer
from pydicom import dcmread


def deidentified_copy(source: Path, target: Path) -> None:
    """Write a de-identified copy of the DICOM Part 10 file ``source`` to ``target``
    (blocking: run it in a thread; the whole dataset is read into memory). The File
    Meta's Media Storage SOP Instance UID follows the replaced SOP Instance UID."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(source)
        Anonymizer().anonymize(ds)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(target, enforce_file_format=True)
