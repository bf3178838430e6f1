"""The automated checks (pure): exposure from the histogram, header against the order,
laterality of paired parts, resolution."""

from __future__ import annotations

import numpy as np

from healthflow.xray import checks
from healthflow.xray.checks import Header

ORDER = {"body_part": "CHEST", "view": "PA"}


def test_a_well_spread_image_is_ok_and_a_saturated_one_warns() -> None:
    spread = np.linspace(100, 3900, 10_000).reshape(100, 100)
    assert checks.exposure(spread, 12)["code"] == "ok"
    saturated = spread.copy()
    saturated[:20] = 4095  # 20 % at the top of a 12-bit detector
    found = checks.exposure(saturated, 12)
    assert found["code"] == "warning" and found["clipped_high"] == 0.2


def test_a_flat_image_warns() -> None:
    flat = np.full((50, 50), 2000) + np.arange(50) % 3
    assert checks.exposure(flat, 12)["code"] == "warning"


def test_view_and_body_part_against_the_order() -> None:
    found = checks.run(np.arange(100).reshape(10, 10),
                       Header(rows=2000, columns=2000, view_position="AP",
                              body_part="chest"), ORDER)
    assert found["view"] == {"code": "warning", "ordered": "PA", "found": "AP"}
    assert found["body_part"]["code"] == "ok"
    assert checks.matches(None, "PA")["code"] == "not-assessed"


def test_a_paired_part_must_name_its_side() -> None:
    assert checks.laterality("KNEE", None)["code"] == "warning"
    assert checks.laterality("KNEE", "L")["code"] == "ok"
    assert checks.laterality("CHEST", None) == {"code": "ok", "paired": False, "found": None}


def test_resolution_by_pitch_else_matrix() -> None:
    assert checks.resolution(Header(rows=3000, columns=3000,
                                    pixel_spacing_mm=(0.3, 0.3)))["code"] == "warning"
    assert checks.resolution(Header(rows=800, columns=800,
                                    pixel_spacing_mm=(0.15, 0.15)))["code"] == "ok"
    assert checks.resolution(Header(rows=800, columns=1200,
                                    pixel_spacing_mm=(0.0, 0.0)))["code"] == "warning"
