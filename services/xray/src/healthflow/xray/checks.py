"""Automated checks of a stored image: machine-generated suggestions for the radiographer
and the reporting doctor, never a diagnosis. Pure: numbers and header values in, codes
and measurements out (no pydicom, no I/O).

Every check gives a code — ``ok``, ``warning`` (look again) or ``not-assessed`` (the
image does not carry what the check needs) — and the measurements it judged by:

* **exposure** — from the stored values' histogram: the fraction of pixels at the
  lowest and highest value the detector can represent (``0`` and ``2^BitsStored − 1``,
  PS3.3 C.7.6.3.1), which are clipped (burnt-out or saturated) and carry no
  information; and the share of that range the central 99 % of pixels spans. More than
  :data:`CLIPPED_MAX` clipped at either end, or less than :data:`RANGE_MIN` of the
  range used (a flat, under- or over-exposed image), is a warning.
* **view** / **body part** — View Position (0018,5101) and Body Part Examined
  (0018,0015) of the header against the order's; absent in the header: not assessed.
* **laterality** — a paired body part (:data:`PAIRED`) must say its side in Laterality
  (0020,0060) or Image Laterality (0020,0062) (``R``, ``L``, ``B``), which PS3.3 C.7.3.1
  requires of paired structures; the order names no side, so presence is what is
  checked. Unpaired parts: ``ok`` without a side.
* **resolution** — Imager Pixel Spacing (0018,1164), else Pixel Spacing (0028,0030), in
  mm: a pixel pitch above :data:`PITCH_MAX_MM` (2.5 line pairs per mm, the
  ACR–AAPM–SIIM digital radiography technical standard's floor) is a warning; without a
  usable spacing, a short side below :data:`SHORT_SIDE_MIN` pixels is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

OK, WARNING, NOT_ASSESSED = "ok", "warning", "not-assessed"
LABEL = "machine-generated suggestion, not a diagnosis"
CLIPPED_MAX = 0.05
"""Most fraction of pixels at either end of the detector's range before a warning."""
RANGE_MIN = 0.10
"""Least share of the representable range the central 99 % of pixels should span."""
PITCH_MAX_MM = 0.2
SHORT_SIDE_MIN = 1024
PAIRED = frozenset({"SHOULDER", "ELBOW", "WRIST", "HAND", "HIP", "KNEE", "ANKLE", "FOOT",
                    "CLAVICLE", "HUMERUS", "FOREARM", "FEMUR", "LEG", "EXTREMITY"})
SIDES = frozenset({"R", "L", "B"})


@dataclass(frozen=True)
class Header:
    """What the checks read of an image: DICOM header values, ``None`` when absent;
    ``pixel_spacing_mm`` (row, column) in mm; ``bits_stored`` None for a photograph."""

    rows: int
    columns: int
    bits_stored: int | None = None
    view_position: str | None = None
    body_part: str | None = None
    laterality: str | None = None
    pixel_spacing_mm: tuple[float, float] | None = None


def exposure(stored: npt.NDArray[Any], bits_stored: int | None) -> dict[str, Any]:
    """The exposure check on the stored (pre-LUT) values; ``bits_stored`` None means an
    8-bit photograph. Fractions are 0–1, rounded to 4 places."""
    top = float(2 ** bits_stored - 1) if bits_stored else 255.0
    values = np.asarray(stored).ravel()
    if values.size == 0:
        return {"code": NOT_ASSESSED}
    low = float(np.count_nonzero(values <= 0)) / values.size
    high = float(np.count_nonzero(values >= top)) / values.size
    p_low, p_high = np.percentile(values, [0.5, 99.5])
    used = float(p_high - p_low) / top if top > 0 else 0.0
    code = WARNING if max(low, high) > CLIPPED_MAX or used < RANGE_MIN else OK
    return {"code": code, "clipped_low": round(low, 4), "clipped_high": round(high, 4),
            "range_used": round(min(used, 1.0), 4), "bits_stored": bits_stored}


def matches(found: str | None, ordered: str) -> dict[str, Any]:
    """A header value against the order's (view or body part)."""
    if not found:
        return {"code": NOT_ASSESSED, "ordered": ordered, "found": None}
    return {"code": OK if found.strip().upper() == ordered else WARNING,
            "ordered": ordered, "found": found.strip().upper()}


def laterality(body_part: str, side: str | None) -> dict[str, Any]:
    """A side is named when the ordered body part is paired."""
    named = (side or "").strip().upper() or None
    if body_part not in PAIRED:
        return {"code": OK, "paired": False, "found": named}
    return {"code": OK if named in SIDES else WARNING, "paired": True, "found": named}


def resolution(header: Header) -> dict[str, Any]:
    """The matrix and pixel pitch against :data:`PITCH_MAX_MM` / :data:`SHORT_SIDE_MIN`."""
    spacing = header.pixel_spacing_mm
    usable = spacing is not None and min(spacing) > 0
    pitch = max(spacing) if spacing is not None and usable else None
    if pitch is not None:
        code = OK if pitch <= PITCH_MAX_MM else WARNING
    else:
        code = OK if min(header.rows, header.columns) >= SHORT_SIDE_MIN else WARNING
    return {"code": code, "rows": header.rows, "columns": header.columns,
            "pixel_spacing_mm": round(pitch, 4) if pitch is not None else None}


def run(stored: npt.NDArray[Any], header: Header, order: dict[str, Any]) -> dict[str, Any]:
    """Every check of one image against its ``order`` (``body_part``, ``view``):
    ``{exposure, view, body_part, laterality, resolution}``, each ``{code, ...}``."""
    return {"exposure": exposure(stored, header.bits_stored),
            "view": matches(header.view_position, order["view"]),
            "body_part": matches(header.body_part, order["body_part"]),
            "laterality": laterality(order["body_part"], header.laterality),
            "resolution": resolution(header)}
