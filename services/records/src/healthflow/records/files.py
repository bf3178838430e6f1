"""What an uploaded clinical file is, read from its bytes (no I/O but the local file it is
handed: the upload's spooled copy). The blob store has already matched the magic
number against the declared type (``filetype``); this decides whether the file is
whole and usable:

* a PDF (ISO 32000) parses with ``pypdf`` in strict mode: header, cross-reference
  table and trailer, ``%%EOF`` present (a truncated file has none), at least one
  page and at most :data:`MAX_PAGES`, every page with a media box; an encrypted PDF
  is refused (a clinician could not open it);
* a PNG or JPEG (or WebP for photographs) is recognised by Pillow as the same format
  and decodes whole, at most :data:`MAX_PIXELS` pixels (checked from the header
  before decoding: a decompression bomb is refused unread).

Refusals are :class:`InvalidDocument` (422) with a fixed ``detail`` and a ``problem``
member naming the rule: the parsers' messages may quote the file's content, so they
are neither answered nor logged (the log names the exception's type). Any exception
a parser raises on the file (not only its documented ones: hostile input reaches
branches that raise ``IndexError``, ``ZeroDivisionError``, …) is such a refusal,
never a 500.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pypdf import PdfReader

from healthflow.common.blobs.images import PIL_FORMATS, ImageRefused, decode_whole
from healthflow.common.problems import UnprocessableContent

log = logging.getLogger(__name__)
logging.getLogger("pypdf").setLevel(logging.CRITICAL + 1)

MAX_PAGES = 2000
MAX_PIXELS = 60_000_000


class InvalidDocument(UnprocessableContent):
    """The file is not a usable PDF or image; ``problem`` says which rule failed:
    ``type-mismatch``, ``not-accepted``, ``unreadable-pdf``, ``encrypted-pdf``,
    ``no-pages``, ``too-many-pages``, ``unreadable-image``, ``too-many-pixels``."""

    title, slug = "Invalid Document", "invalid-document"


@dataclass(frozen=True)
class FileFacts:
    """What was learnt: ``pages`` of a PDF, ``width`` × ``height`` pixels of an image."""

    pages: int | None = None
    width: int | None = None
    height: int | None = None


def inspect(path: Path, content_type: str) -> FileFacts:
    """The facts of the file at ``path`` whose bytes are ``content_type``.

    Raises:
        InvalidDocument (422): see the module docstring.
    """
    if content_type == "application/pdf":
        return inspect_pdf(path)
    return inspect_image(path, content_type)


def inspect_pdf(path: Path) -> FileFacts:
    """Raises InvalidDocument unless the PDF parses whole (see the module docstring)."""
    try:
        reader = PdfReader(path, strict=True)
        if reader.is_encrypted:
            raise InvalidDocument("the PDF is encrypted; upload it without a password",
                                  problem="encrypted-pdf")
        pages = len(reader.pages)
        if pages > MAX_PAGES:
            raise InvalidDocument(f"the PDF has more than {MAX_PAGES} pages",
                                  problem="too-many-pages")
        for page in reader.pages:
            _ = page.mediabox
    except InvalidDocument:
        raise
    except Exception as exc:
        log.info("refused a PDF that does not parse (%s)", type(exc).__name__)
        raise InvalidDocument("the file is not a complete, readable PDF (truncated or damaged)",
                              problem="unreadable-pdf") from None
    if pages == 0:
        raise InvalidDocument("the PDF has no pages", problem="no-pages")
    return FileFacts(pages=pages)


def inspect_image(path: Path, content_type: str) -> FileFacts:
    """Raises InvalidDocument unless Pillow decodes the image whole, as the declared format."""
    try:
        image = decode_whole(path, MAX_PIXELS, pil_format=PIL_FORMATS[content_type])
    except ImageRefused as refused:
        if refused.problem == "too-many-pixels":
            raise InvalidDocument(str(refused), problem="too-many-pixels") from None
        log.info("refused an image that does not decode (%s)", refused.error)
        raise InvalidDocument(str(refused), problem="unreadable-image") from None
    return FileFacts(width=image.width, height=image.height)
