"""Rules of the paramedic service: no FastAPI, no MongoDB, tested alone."""

from __future__ import annotations

import unicodedata

TITLE_MAX = 200


def clean_title(text: str) -> str:
    """A title as stored: NFC-normalised, inner runs of white space collapsed, trimmed.

    Raises:
        ValueError: nothing is left, or more than :data:`TITLE_MAX` characters.
    """
    title = " ".join(unicodedata.normalize("NFC", text).split())
    if not title:
        raise ValueError("the title is empty")
    if len(title) > TITLE_MAX:
        raise ValueError(f"the title has more than {TITLE_MAX} characters")
    return title
