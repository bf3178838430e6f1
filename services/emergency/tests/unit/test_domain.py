"""The emergency service's rules, alone."""

from __future__ import annotations

import pytest

from healthflow.emergency.domain import TITLE_MAX, clean_title


def test_titles_are_normalised() -> None:
    assert clean_title("  Follow   up\tnext week ") == "Follow up next week"


@pytest.mark.parametrize("bad", ["", "   ", "x" * (TITLE_MAX + 1)])
def test_empty_or_overlong_titles_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        clean_title(bad)
