"""Tables handed to people: CSV cells that a spreadsheet will not run.

A cell beginning with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is taken
for a formula by spreadsheet programs (OWASP "CSV Injection"); such text gets a
leading ``'``. Integers and other numbers are written as they are (a negative amount
stays a number).
"""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """``value`` for a CSV cell: None as ``""``, numbers unchanged, text that would start
    a formula with a leading ``'``."""
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    text = str(value)
    return f"'{text}" if text[:1] in FORMULA_STARTS else text
