"""What may be stored: uses with their allow-lists and limits, the content-type check.

The content type of an object is read from its first bytes with ``filetype``
(magic numbers: PNG ``89 50 4E 47``, JPEG ``FF D8 FF``, PDF ``%PDF``, DICOM
``DICM`` at offset 128 per DICOM PS3.10 §7.1, …), never trusted from the client.
A declared type (the multipart part's ``Content-Type``) must name the same type.
Refusals are :class:`~healthflow.common.errors.Problem` subclasses, so a route
that lets them through answers RFC 9457 problem details (413 or 415).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import filetype

from healthflow.common.errors import PayloadTooLarge, UnsupportedMediaType

# filetype looks at no more than this many leading bytes.
HEAD_BYTES = 8192
DICOM_PREFIX = b"DICM"  # at offset 128, after the preamble (DICOM PS3.10 §7.1)
MiB = 1024 * 1024

# Names clients use for a type that filetype reports under its registered name.
_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "application/x-pdf": "application/pdf",
    "application/dicom+dcm": "application/dicom",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
}


def normalize_type(media_type: str) -> str:
    """``"Image/JPG; q=1"`` → ``"image/jpeg"``: lower case, no parameters, aliases resolved."""
    bare = media_type.split(";", 1)[0].strip().lower()
    return _ALIASES.get(bare, bare)


@dataclass(frozen=True)
class BlobUse:
    """One kind of object a service keeps: key prefix, allowed types, size limit.

    ``name`` is the key prefix (``xray/…``); ``allowed_types`` are IANA media
    types as ``filetype`` names them; ``max_bytes`` is the largest object.
    """

    name: str
    allowed_types: frozenset[str]
    max_bytes: int = field(default=20 * MiB)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"a blob use name is one key segment, not {self.name!r}")
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be positive")


# The uses the platform expects (the issue: X-rays, clinical documents, patient
# images, recordings, invoices). Services may define their own.
XRAY = BlobUse("xray", frozenset({"application/dicom", "image/png", "image/jpeg"}), 512 * MiB)
CLINICAL_DOCUMENT = BlobUse(
    "document", frozenset({"application/pdf", "image/png", "image/jpeg"}), 50 * MiB
)
PATIENT_IMAGE = BlobUse("image", frozenset({"image/png", "image/jpeg", "image/webp"}), 20 * MiB)
RECORDING = BlobUse(
    "recording", frozenset({"video/webm", "video/mp4", "audio/wav", "audio/ogg"}), 4096 * MiB
)
INVOICE = BlobUse("invoice", frozenset({"application/pdf"}), 10 * MiB)


class BlobTooLarge(PayloadTooLarge):
    """More than the use's (or the call's) ``max_bytes``; nothing was kept."""

    def __init__(self, max_bytes: int, **kw: Any) -> None:
        super().__init__(f"the file is larger than {max_bytes} bytes", max_bytes=max_bytes, **kw)


class BlobTypeRefused(UnsupportedMediaType):
    """The bytes are of a type the use does not allow, unknown, or not the declared type."""


def detect_type(head: bytes) -> str | None:
    """The media type of an object from its first bytes (up to :data:`HEAD_BYTES`), or None.

    DICOM Part 10 is decided by its prefix ``DICM`` after the 128-byte preamble before
    anything else: the preamble is free for applications (PS3.10 §7.1), and dual-format
    files put a TIFF header there, which ``filetype`` would take for a TIFF image.
    """
    if head[128:132] == DICOM_PREFIX:
        return "application/dicom"
    kind = filetype.guess(head[:HEAD_BYTES])
    return normalize_type(kind.mime) if kind is not None else None


def check_type(use: BlobUse, head: bytes, declared_type: str | None) -> str:
    """The detected media type, once it is allowed for ``use`` and matches ``declared_type``.

    Raises:
        BlobTypeRefused: unknown bytes, a type outside ``use.allowed_types``, or a
            declared type other than the detected one; extension members
            ``detected_type``, ``declared_type`` and ``allowed_types`` say which.
    """
    detected = detect_type(head)
    allowed = sorted(use.allowed_types)
    context: dict[str, Any] = {"detected_type": detected, "declared_type": declared_type,
               "allowed_types": allowed}
    if detected is None:
        raise BlobTypeRefused(f"the type of the file could not be recognised from its bytes; "
                              f"{use.name} files may be {', '.join(allowed)}", **context)
    if detected not in use.allowed_types:
        raise BlobTypeRefused(f"{detected} is not accepted for {use.name} files; "
                              f"they may be {', '.join(allowed)}", **context)
    if declared_type is not None and normalize_type(declared_type) != detected:
        raise BlobTypeRefused(f"the file was declared as {declared_type} but its bytes "
                              f"are {detected}", **context)
    return detected
