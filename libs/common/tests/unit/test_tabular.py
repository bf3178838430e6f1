"""CSV cells a spreadsheet will not run (OWASP CSV injection)."""

from __future__ import annotations

import pytest

from healthflow.common.tabular import csv_cell


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1+2", "@SUM(A1)", "\tx", "\rx",
                                  "=HYPERLINK(\"http://x\")"])
def test_text_that_starts_a_formula_gets_a_quote(text: str) -> None:
    assert csv_cell(text) == f"'{text}"


def test_plain_text_numbers_and_none_pass() -> None:
    assert [csv_cell(v) for v in ("EUR", "a=b", None, -1234, 0, 17)] == [
        "EUR", "a=b", "", -1234, 0, 17]
    assert csv_cell(True) == "True"  # a bool is text, not a number
