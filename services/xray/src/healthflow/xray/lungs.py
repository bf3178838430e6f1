"""Lung-field detection on chest radiographs with ``lungs-finder`` (its trained OpenCV
Haar cascades, one per lung): a machine-generated suggestion of where the lungs are,
never a finding.

Boxes are in the stored image's pixels (x from the image's left, y from its top):
``right`` is the patient's right lung, on the left of a PA image shown as read.
"""

from __future__ import annotations

from typing import Any

import lungs_finder
import numpy as np
import numpy.typing as npt

from healthflow.xray.checks import NOT_ASSESSED, OK, WARNING


def lung_fields(grey: npt.NDArray[np.uint8], columns: int, body_part: str) -> dict[str, Any]:
    """The lung boxes found in ``grey`` (a windowed 8-bit preview, MONOCHROME2 as shown,
    e.g. :func:`healthflow.xray.render.preview` at 1024 px) of an image ``columns``
    pixels wide: ``{code, boxes: [{side, x, y, width, height}]}``; ``ok`` with both
    lungs, ``warning`` with fewer, ``not-assessed`` unless ``body_part`` is CHEST."""
    if body_part != "CHEST":
        return {"code": NOT_ASSESSED, "boxes": []}
    scale = columns / grey.shape[1]
    boxes = []
    for side, find in (("right", lungs_finder.find_right_lung_haar),
                       ("left", lungs_finder.find_left_lung_haar)):
        found = find(grey)
        if found is not None:
            x, y, width, height = (round(float(v) * scale) for v in found)
            boxes.append({"side": side, "x": x, "y": y, "width": width, "height": height})
    return {"code": OK if len(boxes) == 2 else WARNING, "boxes": boxes}
