"""The xray service's rules, alone: ordering, identity, viewing."""

from __future__ import annotations

import pytest

from healthflow.xray.domain import (
    BODY_SITES,
    PRIORITY_RANK,
    AccessionMismatch,
    BodyPart,
    DuplicateInstance,
    EncounterStateConflict,
    NotTheRequester,
    NotTreating,
    NotYourEncounter,
    OrderClosed,
    PatientMismatch,
    Priority,
    StudyNotFound,
    StudyOfAnotherOrder,
    UidNotAccepted,
    UnknownEncounter,
    Viewer,
    check_cancellable,
    check_identity,
    check_may_order,
    check_may_report,
    check_new_instance,
    check_open,
    check_study_order,
    clean_question,
    new_accession_number,
    viewer_of,
)

ENCOUNTER = {"practitioner_id": "dr-1", "patient_id": "p-1", "status": "in-progress"}


def test_a_doctor_orders_only_in_their_own_encounter_while_it_is_in_progress() -> None:
    check_may_order(ENCOUNTER, "dr-1")
    with pytest.raises(UnknownEncounter):
        check_may_order(None, "dr-1")
    with pytest.raises(NotYourEncounter):
        check_may_order(ENCOUNTER, "dr-2")
    with pytest.raises(EncounterStateConflict):
        check_may_order({**ENCOUNTER, "status": "finished"}, "dr-1")


def test_every_body_part_has_a_snomed_body_structure_code() -> None:
    assert set(BODY_SITES) == set(BodyPart)
    assert BODY_SITES[BodyPart.CHEST] == ("51185008", "Thoracic structure")
    assert all(code.isdigit() for code, _ in BODY_SITES.values())


def test_accession_numbers_fit_dicom_sh_and_differ() -> None:
    numbers = {new_accession_number() for _ in range(100)}
    assert len(numbers) == 100 and all(len(n) <= 16 and n.startswith("HF") for n in numbers)


def test_questions_are_cleaned_and_bounded() -> None:
    assert clean_question("  cough\n since  3 weeks ") == "cough since 3 weeks"
    for bad in ("", "  ", "x" * 2001):
        with pytest.raises(ValueError):
            clean_question(bad)


def test_a_dicom_file_must_name_the_orders_patient_and_accession_number() -> None:
    order = {"patient_id": "p-1", "accession_number": "HF0001"}
    check_identity(order, "p-1", None)
    check_identity(order, "p-1", "HF0001")
    with pytest.raises(PatientMismatch):
        check_identity(order, "MRN-77", "HF0001")
    with pytest.raises(AccessionMismatch):
        check_identity(order, "p-1", "HF9999")


def test_a_study_uid_belongs_to_one_order() -> None:
    order = {"_id": "o-1", "patient_id": "p-1"}
    check_study_order(None, order)
    check_study_order({"order_id": "o-1", "patient_id": "p-1"}, order)
    with pytest.raises(StudyOfAnotherOrder):
        check_study_order({"order_id": "o-2", "patient_id": "p-1"}, order)
    with pytest.raises(UidNotAccepted):  # another patient's: not confirmed as stored
        check_study_order({"order_id": "o-3", "patient_id": "p-2"}, order)


def test_a_sop_instance_uid_is_stored_once_and_another_patients_is_not_confirmed() -> None:
    order = {"_id": "o-1", "patient_id": "p-1"}
    assert check_new_instance(None, order, "aa") is False
    assert check_new_instance({"patient_id": "p-1", "blob": {"sha256": "aa"}}, order,
                              "aa") is True  # the same file again
    with pytest.raises(DuplicateInstance):
        check_new_instance({"patient_id": "p-1", "blob": {"sha256": "bb"}}, order, "aa")
    for same_file in ("aa", "bb"):  # another patient's: refused whatever the file
        with pytest.raises(UidNotAccepted) as caught:
            check_new_instance({"patient_id": "p-2", "blob": {"sha256": "aa"}}, order,
                               same_file)
        assert "stored" not in caught.value.detail


def test_the_patient_and_treating_doctors_view_others_do_not() -> None:
    assert viewer_of("p-1", "p-1", reads_own=True, reads_treated=False,
                     treats=False) is Viewer.PATIENT
    assert viewer_of("dr-1", "p-1", reads_own=False, reads_treated=True,
                     treats=True) is Viewer.TREATING_DOCTOR
    with pytest.raises(NotTreating):
        viewer_of("dr-2", "p-1", reads_own=False, reads_treated=True, treats=False)
    with pytest.raises(StudyNotFound):  # another patient's: hidden
        viewer_of("p-2", "p-1", reads_own=True, reads_treated=False, treats=False)


def test_a_report_is_edited_by_its_author_while_preliminary_then_signed_once() -> None:
    from healthflow.xray.domain import (
        NotTheAuthor,
        ReportFinal,
        ReportNotFound,
        check_editable,
        check_signable,
        clean_report_text,
        report_visible,
    )

    draft = {"status": "preliminary", "author_id": "dr-1"}
    check_editable(None, "dr-1")
    check_editable(draft, "dr-1")
    assert check_signable(draft, "dr-1") is draft
    with pytest.raises(NotTheAuthor):
        check_signable(draft, "dr-2")
    with pytest.raises(ReportFinal):
        check_editable({**draft, "status": "final"}, "dr-1")
    with pytest.raises(ReportNotFound):
        check_signable(None, "dr-1")
    with pytest.raises(ReportNotFound):  # the patient sees only the final report
        report_visible(draft, Viewer.PATIENT)
    assert report_visible(draft, Viewer.TREATING_DOCTOR) is draft
    assert clean_report_text("  No consolidation.  \n\nHeart normal.  ") == \
        "No consolidation.\n\nHeart normal."
    with pytest.raises(ValueError):
        clean_report_text(" \n ")


def test_an_order_is_cancelled_by_its_requester_while_active_and_then_takes_no_images(
        ) -> None:
    order = {"requester_id": "dr-1", "status": "active"}
    check_cancellable(order, "dr-1")
    check_open(order)
    with pytest.raises(NotTheRequester):
        check_cancellable(order, "dr-2")
    for status in ("completed", "revoked"):
        with pytest.raises(OrderClosed):
            check_cancellable({**order, "status": status}, "dr-1")
        with pytest.raises(OrderClosed):
            check_open({**order, "status": status})


def test_the_requester_or_a_treating_doctor_reports_and_nobody_else() -> None:
    order = {"requester_id": "dr-1"}
    check_may_report(order, "dr-1", treats=False)
    check_may_report(order, "dr-2", treats=True)
    with pytest.raises(NotTreating):
        check_may_report(order, "dr-9", treats=False)


def test_the_work_list_rank_follows_fhir_request_priority() -> None:
    assert sorted(Priority, key=PRIORITY_RANK.__getitem__) == [
        Priority.STAT, Priority.ASAP, Priority.URGENT, Priority.ROUTINE]


def test_the_requester_takes_over_a_colleagues_draft_and_nobody_else_does() -> None:
    from healthflow.xray.domain import NotTheAuthor, ReportFinal, takes_over

    draft = {"status": "preliminary", "author_id": "dr-3"}
    assert takes_over(None, "dr-1", "dr-1") is False
    assert takes_over(draft, "dr-3", "dr-1") is False  # its author rewrites it
    assert takes_over(draft, "dr-1", "dr-1") is True  # the requester takes it over
    with pytest.raises(NotTheAuthor):
        takes_over(draft, "dr-4", "dr-1")
    with pytest.raises(ReportFinal):
        takes_over({**draft, "status": "final"}, "dr-1", "dr-1")


def test_signing_completes_an_active_order_keeps_a_completed_one_refuses_a_revoked_one(
        ) -> None:
    from healthflow.xray.domain import completes_order

    assert completes_order({"status": "active"}) is True
    assert completes_order({"status": "completed"}) is False  # another study signed first
    with pytest.raises(OrderClosed):
        completes_order({"status": "revoked"})
