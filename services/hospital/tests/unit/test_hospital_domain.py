"""Hospital rules without I/O: the verification state machine, visibility, normalisation."""

from __future__ import annotations

import pytest

from healthflow.common.errors import Conflict
from healthflow.hospital import domain
from healthflow.hospital.domain import HospitalStatus as S


@pytest.mark.parametrize(("current", "target"), [(S.PENDING, S.VERIFIED), (S.PENDING, S.REJECTED)])
def test_pending_can_be_decided(current: S, target: S) -> None:
    assert domain.transition(current, target) is target


@pytest.mark.parametrize(
    ("current", "target"),
    [(S.VERIFIED, S.VERIFIED), (S.VERIFIED, S.REJECTED), (S.REJECTED, S.VERIFIED),
     (S.REJECTED, S.REJECTED), (S.PENDING, S.PENDING)],
)
def test_decisions_are_final(current: S, target: S) -> None:
    with pytest.raises(Conflict) as err:
        domain.transition(current.value, target)
    assert err.value.extensions["current_status"] == current.value


def test_rejected_hospital_accepts_no_changes() -> None:
    domain.ensure_accepts_changes("pending")
    domain.ensure_accepts_changes("verified")
    with pytest.raises(Conflict):
        domain.ensure_accepts_changes("rejected")


def test_visibility() -> None:
    assert domain.can_view("verified", "u1", subject=None, is_verifier=False)
    assert not domain.can_view("pending", "u1", subject=None, is_verifier=False)
    assert not domain.can_view("pending", "u1", subject="u2", is_verifier=False)
    assert domain.can_view("pending", "u1", subject="u1", is_verifier=False)
    assert domain.can_view("rejected", "u1", subject="u2", is_verifier=True)


def test_normalise_and_sort_key() -> None:
    assert domain.normalise("  Charité   BERLIN ") == "charité berlin"
    assert domain.normalise("ＡＢＣ") == "abc"  # full-width folds (NFKC)
    keys = sorted([domain.sort_key("b", "1"), domain.sort_key("A b", "2"),
                   domain.sort_key("a", "9")])
    assert keys == ["a\x1f9", "a b\x1f2", "b\x1f1"]


def test_clean_codes() -> None:
    assert domain.clean_codes(["ICU", " icu", "cardiology"]) == ["icu", "cardiology"]


def test_decision_fields_carry_reason_only_for_rejection() -> None:
    from datetime import UTC, datetime

    at = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert "rejection_reason" not in domain.decision_fields(S.VERIFIED, at=at, by="a")
    assert domain.decision_fields(S.REJECTED, at=at, by="a", reason="no licence")[
        "rejection_reason"] == "no licence"
