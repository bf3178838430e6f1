"""DICOMweb's request rules alone: the rendered frame's number and media type."""

from __future__ import annotations

import pytest

from healthflow.common.errors import BadRequest
from healthflow.xray import dicomweb, render

OFFERED = ("image/jpeg", "image/png")


@pytest.mark.parametrize(("accept", "chosen"), [
    (None, "image/jpeg"), ("", "image/jpeg"), ("*/*", "image/jpeg"),
    ("image/*", "image/jpeg"), ("image/png", "image/png"),
    ("image/webp, image/png;q=0.5, image/jpeg;q=0.4", "image/png"),
    ("image/jpeg;q=0.2, image/png", "image/png"),
    ("image/png;q=0, */*;q=0.1", "image/jpeg"),
    ("IMAGE/PNG", "image/png"),
])
def test_a_rendered_frame_is_the_acceptable_type_of_highest_quality(accept, chosen) -> None:
    assert dicomweb.rendered_type(accept, OFFERED) == chosen


@pytest.mark.parametrize("accept", ["application/pdf", "image/png;q=0", "image/gif"])
def test_a_rendered_frame_no_one_accepts_is_406(accept) -> None:
    with pytest.raises(dicomweb.NotAcceptable) as refused:
        dicomweb.rendered_type(accept, OFFERED)
    assert refused.value.status == 406 and refused.value.extensions["offered"] == list(OFFERED)


def test_one_frame_is_rendered_at_a_time() -> None:
    assert dicomweb.frame_number("1") == 1 and dicomweb.frame_number("12") == 12
    for frames in ("0", "1,2", "-1", "x", "", "١"):
        with pytest.raises(BadRequest):
            dicomweb.frame_number(frames)


def test_a_window_is_center_width_and_a_voi_function() -> None:
    assert dicomweb.voi_window(None) is None
    assert dicomweb.voi_window("40, 400, linear") == (40.0, 400.0, "linear")
    assert dicomweb.voi_window("-600,0.5,sigmoid") == (-600.0, 0.5, "sigmoid")
    for window in ("40,400", "40,400,linear,1", "40,0.5,linear", "40,0,linear-exact",
                   "inf,400,linear", "40,400,LINEAR", ",,", ""):
        with pytest.raises(BadRequest) as refused:
            dicomweb.voi_window(window)
        assert refused.value.extensions["parameter"] == "window"


def test_a_viewport_is_a_box_and_optionally_a_source_region_in_pixels() -> None:
    """PS3.18 §8.3.5.1.3 ``vw,vh[,sx,sy,sw,sh]``; empty region values take defaults."""
    assert dicomweb.viewport_size(None) is None
    assert dicomweb.viewport_size("512, 256") == render.Viewport(512, 256)
    assert dicomweb.viewport_size("512,256,10,20,100,50") == render.Viewport(
        512, 256, 10, 20, 100, 50)
    assert dicomweb.viewport_size("64,64,,,10,10") == render.Viewport(64, 64, 0, 0, 10, 10)
    assert dicomweb.viewport_size("64,64,5,6,,") == render.Viewport(64, 64, 5, 6)
    for viewport in ("512", "0,1", "4097,1", "1.5,2", "-1,2", "1,2,3", "1,2,0,0,1",
                     "1,2,0,0,1,2,3", "1,2,-1,0,1,1", "1,2,0,0,0,1", "1,2,0,0,-5,5",
                     "1,2,a,0,1,1", ",2", ""):
        with pytest.raises(BadRequest) as refused:
            dicomweb.viewport_size(viewport)
        assert refused.value.extensions["parameter"] == "viewport"


def test_a_viewport_region_lies_inside_the_image_and_fits_its_box() -> None:
    assert render.Viewport(10, 10).region(64, 32) == (0, 0, 32, 64)
    assert render.Viewport(10, 10, 8, 4).region(64, 32) == (8, 4, 24, 60)
    assert render.Viewport(10, 10, 0, 0, 32, 64).region(64, 32) == (0, 0, 32, 64)
    for outside in (render.Viewport(10, 10, 32, 0), render.Viewport(10, 10, 0, 0, 33, 1),
                    render.Viewport(10, 10, 0, 60, None, 5)):
        assert outside.region(64, 32) is None
    assert render.Viewport(100, 100).fitted(32, 64) == (50, 100)  # scaled up
    assert render.Viewport(16, 16).fitted(32, 64) == (8, 16)  # down
    assert render.Viewport(300, 10).fitted(1000, 1) == (300, 1)  # at least a pixel


ELE, J2K = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.90"
STORED = [{"image": {"transfer_syntax": ELE}}]


@pytest.mark.parametrize("accept", [
    None, "", "*/*", "multipart/*", "multipart/related",
    'multipart/related; type="application/dicom"',
    'multipart/related; type="application/dicom"; transfer-syntax=*',
    f'multipart/related; type="application/dicom"; transfer-syntax={ELE}',
    'application/dicom+json, multipart/related; type="application/dicom";q=0.5',
])
def test_wado_rs_serves_the_stored_files_to_an_accept_that_takes_them(accept) -> None:
    dicomweb.check_retrievable(accept, STORED)


@pytest.mark.parametrize("accept", [
    "application/dicom+json", "application/dicom", 'multipart/related; type="image/jpeg"',
    f'multipart/related; type="application/dicom"; transfer-syntax={J2K}',
    'multipart/related; type="application/dicom";q=0', "image/*",
])
def test_wado_rs_is_406_for_an_accept_the_stored_files_do_not_meet(accept) -> None:
    with pytest.raises(dicomweb.NotAcceptable) as refused:
        dicomweb.check_retrievable(accept, STORED)
    assert refused.value.status == 406
