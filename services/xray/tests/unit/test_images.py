"""Validation of image files (pydicom, Pillow) and windowing, on files made in the test."""

from __future__ import annotations

import io
import logging
import struct
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, get_frame
from pydicom.uid import JPEG2000Lossless, RLELossless

from healthflow.devkit.dicom import radiograph
from healthflow.xray import imaging, render
from healthflow.xray.domain import InvalidImage


def write(tmp_path: Path, data: bytes, name: str = "f") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refused(path: Path, content_type: str = imaging.DICOM) -> str:
    with pytest.raises(InvalidImage) as caught:
        imaging.inspect(path, content_type)
    assert caught.value.status == 422
    return str(caught.value.extensions["problem"])


@pytest.mark.parametrize("syntax", [None, JPEG2000Lossless], ids=["uncompressed", "j2k"])
def test_a_radiograph_is_accepted_with_its_uids_and_window(tmp_path, syntax) -> None:
    data = radiograph("p-1", accession_number="HF1", transfer_syntax=syntax or
                      imaging.ExplicitVRLittleEndian)
    facts = imaging.inspect(write(tmp_path, data), imaging.DICOM)
    assert (facts.modality, facts.patient_id, facts.accession_number) == ("CR", "p-1", "HF1")
    assert facts.study_uid and facts.series_uid and facts.sop_instance_uid
    assert (facts.rows, facts.columns, facts.window) == (64, 64, (2000.0, 4000.0))


def test_an_uncompressed_radiograph_is_checked_without_reading_its_pixels(tmp_path) -> None:
    """A 32 MB image (4096 × 4096, 16 bits) is accepted with a few MB allocated at most:
    its Pixel Data's length is checked, not decoded (a decode held it twice), so an
    upload's memory does not grow with the image."""
    path = write(tmp_path, radiograph("p-1", rows=4096, columns=4096))
    # a small file first: what the first check imports is not the upload's memory
    imaging.inspect(write(tmp_path, radiograph("p-1"), "small"), imaging.DICOM)
    tracemalloc.start()
    try:
        facts = imaging.inspect(path, imaging.DICOM)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (facts.rows, facts.columns) == (4096, 4096)
    assert peak < 4_000_000, peak
    short = path.read_bytes()
    assert refused(write(tmp_path, short[:-2], "short")) == "truncated"


@pytest.mark.parametrize("cut", [300, 5000], ids=["in-pixels", "in-header"])
@pytest.mark.parametrize("syntax", [None, JPEG2000Lossless], ids=["uncompressed", "j2k"])
def test_a_truncated_file_is_refused(tmp_path, cut, syntax) -> None:
    data = radiograph("p-1", transfer_syntax=syntax or imaging.ExplicitVRLittleEndian)
    data = data[:max(len(data) - cut, 200)]
    assert refused(write(tmp_path, data)) in {"truncated", "pixel-data", "unreadable"}


@pytest.mark.parametrize("size", [64, 600], ids=["read", "deferred"])
@pytest.mark.parametrize("syntax", [None, JPEG2000Lossless], ids=["uncompressed", "j2k"])
def test_a_file_cut_inside_its_pixel_data_is_named_truncated(tmp_path, size, syntax) -> None:
    """The contract names the problem: a transfer cut short is ``truncated``, not
    "pixel data does not decode" (what the radiographer saw before)."""
    data = radiograph("p-1", rows=size, columns=size,
                      transfer_syntax=syntax or imaging.ExplicitVRLittleEndian)
    assert imaging.inspect(write(tmp_path, data, "whole"), imaging.DICOM).rows == size
    assert refused(write(tmp_path, data[:-300], "cut")) == "truncated"


def test_missing_uids_a_ct_and_an_unsupported_syntax_are_refused(tmp_path) -> None:
    assert refused(write(tmp_path, radiograph("p-1", with_uids=False))) == "missing-uid"
    assert refused(write(tmp_path, radiograph("p-1", modality="CT"))) == \
        "unsupported-modality"
    assert refused(write(tmp_path, radiograph(""))) == "missing-uid"
    # pydicom's own RLE test file: an encoding we do not take
    rle = Path(str(get_testdata_file("SC_rgb_rle.dcm")))
    assert refused(rle) in {"unsupported-modality", "transfer-syntax"}
    assert RLELossless not in imaging.TRANSFER_SYNTAXES


def test_pydicoms_own_broken_and_non_xray_files_are_refused() -> None:
    jpeg2000_nm = Path(str(get_testdata_file("JPEG2000.dcm")))  # a nuclear medicine image
    assert refused(jpeg2000_nm) == "unsupported-modality"
    not_part10 = Path(str(get_testdata_file("rtstruct.dcm")))
    assert refused(not_part10) == "unreadable"


def png(size: tuple[int, int] = (40, 30), fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("L", size, 128).save(out, format=fmt)
    return out.getvalue()


def test_photographs_must_decode_and_be_the_declared_format(tmp_path) -> None:
    facts = imaging.inspect(write(tmp_path, png()), "image/png")
    assert (facts.modality, facts.rows, facts.columns, facts.study_uid) == ("XC", 30, 40, None)
    assert refused(write(tmp_path, png(fmt="JPEG")), "image/png") == "type-mismatch"
    assert refused(write(tmp_path, png()[:60]), "image/png") == "pixel-data"
    assert refused(write(tmp_path, b"%PDF-1.7"), "application/pdf") == "not-an-image"


def test_linear_windowing_follows_ps3_3_c_11_2_1_2_1() -> None:
    values = np.array([0.0, 999.0, 1000.0, 1500.0, 2000.0, 2001.0, 5000.0])
    grey = render.window(values, center=1500, width=1000)
    assert grey[0] == grey[1] == 0 and grey[-1] == grey[-2] == 255
    assert 126 <= grey[3] <= 129  # the centre is mid-grey
    assert list(render.window(values, 1500, 1000, invert=True)) == list(255 - grey)
    with pytest.raises(ValueError):
        render.window(values, 0, 0.5)
    assert render.full_range(np.array([10.0, 20.0])) == (15.5, 11.0)


def test_a_preview_is_windowed_grey_png_and_monochrome1_is_inverted(tmp_path) -> None:
    normal = Image.open(io.BytesIO(render.dicom_preview(
        write(tmp_path, radiograph("p-1"), "a"))))
    inverted = Image.open(io.BytesIO(render.dicom_preview(
        write(tmp_path, radiograph("p-1", photometric="MONOCHROME1"), "b"))))
    assert normal.format == "PNG" and normal.mode == "L" and normal.size == (64, 64)
    a, b = np.asarray(normal), np.asarray(inverted)
    assert a[32, 32] == 255 and a[0, 0] == 0  # the disc (4000) white, the ramp's start black
    assert (b == 255 - a).all()
    big = write(tmp_path, radiograph("p-1", rows=1500, columns=2000), "c")
    assert Image.open(io.BytesIO(render.dicom_preview(big))).size == (1024, 768)


def _peak_while(fn: object, *args: object) -> int:
    """Peak bytes Python and numpy allocate while ``fn(*args)`` runs (tracemalloc)."""
    import contextlib
    import tracemalloc

    tracemalloc.start()
    try:
        with contextlib.suppress(InvalidImage):
            fn(*args)  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


MiB = 1024 * 1024


def test_a_large_element_is_not_read_into_memory_to_check_a_file(tmp_path) -> None:
    """A 24 MiB private element beside a small image: the check stays far below it."""
    from pydicom import dcmread

    ds = dcmread(io.BytesIO(radiograph("p-1")))
    block = ds.private_block(0x0009, "HEALTHFLOW TEST", create=True)
    block.add_new(0x01, "OB", bytes(24 * MiB))
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    path = write(tmp_path, out.getvalue())
    assert imaging.inspect(path, imaging.DICOM).rows == 64
    assert _peak_while(imaging.inspect, path, imaging.DICOM) < 4 * MiB


def test_a_multi_frame_file_is_refused_from_its_header_before_decoding(tmp_path) -> None:
    """16 frames of 1024 × 1024 (32 MiB of pixels): refused without reading them."""
    from pydicom import dcmread

    ds = dcmread(io.BytesIO(radiograph("p-1", rows=1024, columns=1024)))
    ds.NumberOfFrames = 16
    ds.PixelData = bytes(16 * 1024 * 1024 * 2)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    path = write(tmp_path, out.getvalue())
    assert refused(path) == "pixel-data"
    assert _peak_while(imaging.inspect, path, imaging.DICOM) < 4 * MiB


def test_a_large_image_is_previewed_without_full_size_float_copies(tmp_path) -> None:
    """3000 × 3000 16-bit (18 MB of pixels): windowing runs on a reduced copy, not on
    several 72 MB float64 arrays, and the preview is still 1024 px on its long side."""
    path = write(tmp_path, radiograph("p-1", rows=3000, columns=3000))
    assert Image.open(io.BytesIO(render.dicom_preview(path))).size == (1024, 1024)
    assert _peak_while(render.dicom_preview, path) < 120 * MiB


def declaring(data: bytes, rows: int, columns: int) -> bytes:
    """``data`` (a JPEG 2000 radiograph) with its codestream saying it is ``rows`` ×
    ``columns`` in one tile: the SIZ segment (ISO/IEC 15444-1 A.5.1) after SOC is
    ``FF51``, Lsiz, Rsiz, then Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz (32 bits each)."""
    ds = dcmread(io.BytesIO(data))
    frame = bytearray(get_frame(ds.PixelData, 0, number_of_frames=1))
    siz = frame.index(b"\xff\x51")
    struct.pack_into(">6I", frame, siz + 6, columns, rows, 0, 0, columns, rows)
    ds.PixelData = encapsulate([bytes(frame)])
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_a_jpeg2000_frame_larger_than_its_header_is_refused_before_decoding(tmp_path) -> None:
    """The decoder allocates what the codestream declares, not Rows × Columns: a 64 × 64
    file whose frame says 4096 × 4096 (32 MiB decoded) is refused from the codestream's
    header, and so is a frame that says it is smaller."""
    radiograph_j2k = radiograph("p-1", transfer_syntax=JPEG2000Lossless)
    bomb = write(tmp_path, declaring(radiograph_j2k, 4096, 4096), "bomb")
    assert refused(bomb) == "pixel-data"
    assert _peak_while(imaging.inspect, bomb, imaging.DICOM) < 4 * MiB
    assert refused(write(tmp_path, declaring(radiograph_j2k, 32, 64), "small")) == \
        "pixel-data"
    assert imaging.inspect(write(tmp_path, declaring(radiograph_j2k, 64, 64), "same"),
                           imaging.DICOM).rows == 64


def changed(data: bytes, **elements: str) -> bytes:
    """The DICOM file ``data`` with ``elements`` (keyword=value) set, saved as it is."""
    ds = dcmread(io.BytesIO(data))
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_a_refusal_quotes_no_element_value(tmp_path, caplog, monkeypatch) -> None:
    """pydicom's messages quote element values ("Unknown (0028,0004) 'Photometric
    Interpretation' value 'DOE JANE'"): neither the problem detail nor the log carries
    them; the log names the exception type."""
    cases = {"pixel-data": changed(radiograph("p-1"), PhotometricInterpretation="DOE JANE"),
             "missing-uid": changed(radiograph("p-1"), StudyInstanceUID="DOE JANE")}
    caplog.set_level(logging.DEBUG)
    for problem, data in cases.items():
        path = write(tmp_path, data, problem)
        with pytest.raises(InvalidImage) as caught, warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            imaging.inspect(path, imaging.DICOM)
        assert caught.value.extensions["problem"] == problem
        assert "DOE" not in caught.value.detail
        assert not [str(w.message) for w in said if "DOE" in str(w.message)]  # stderr: the log

    def quoting(*args: object, **kwargs: object) -> None:
        raise ValueError("cannot read (0010,0010) 'Patient Name' value 'DOE^JANE'")

    monkeypatch.setattr(imaging, "dcmread", quoting)
    with pytest.raises(InvalidImage) as caught:
        imaging.inspect(write(tmp_path, radiograph("p-1")), imaging.DICOM)
    assert caught.value.extensions["problem"] == "unreadable"
    assert "DOE" not in caught.value.detail
    assert "DOE" not in caplog.text
    assert {getattr(r, "error", None) for r in caplog.records} >= {"ValueError"}


def test_without_a_window_the_voi_lut_sequence_is_applied(tmp_path) -> None:
    """A For Presentation image may carry its VOI as a LUT (PS3.3 C.11.2.1.1) and no
    Window Center/Width: the preview must show it through that LUT, not stretched from
    its minimum to its maximum. The LUT here is a step (≤ 1000 white, above black), so
    the ramp's start is white and the disc (4000) black; MONOCHROME1 inverts the LUT's
    output."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    def with_lut(photometric: str, entries: int = 4096) -> Path:
        ds = dcmread(io.BytesIO(radiograph("p-1", window=None, photometric=photometric)))
        item = Dataset()
        item.add_new("LUTDescriptor", "US", [4096, 0, 8])
        item.add_new("LUTData", "US", [255 if v <= 1000 else 0 for v in range(entries)])
        ds.VOILUTSequence = Sequence([item])
        path = tmp_path / f"lut-{photometric}-{entries}"
        ds.save_as(path, enforce_file_format=True)
        return path

    shown = np.asarray(Image.open(io.BytesIO(render.dicom_preview(with_lut("MONOCHROME2")))))
    assert shown[0, 0] == 255 and shown[32, 32] == 0
    inverted = np.asarray(Image.open(io.BytesIO(render.dicom_preview(
        with_lut("MONOCHROME1")))))
    assert (inverted == 255 - shown).all()
    short = np.asarray(Image.open(io.BytesIO(render.dicom_preview(
        with_lut("MONOCHROME2", entries=10)))))  # malformed: the full range instead
    assert short[0, 0] == 0 and short[32, 32] == 255

    # a WADO-RS window (PS3.18 §8.3.5.1.4) replaces the LUT: the disc white, the ramp
    # black (the LUT's opposite); MONOCHROME1 still inverted
    for photometric, disc, ramp in (("MONOCHROME2", 255, 0), ("MONOCHROME1", 0, 255)):
        windowed = np.asarray(Image.open(io.BytesIO(render.rendered_frame(
            with_lut(photometric), 1, "image/png", (3500.0, 1.0, "linear")))))
        assert windowed[32, 32] == disc and (windowed[:, :8] == ramp).all()
        cropped = np.asarray(Image.open(io.BytesIO(render.rendered_frame(
            with_lut(photometric), 1, "image/png", (3500.0, 1.0, "linear"),
            render.Viewport(32, 32, 24, 24, 16, 16)))))  # inside the disc, scaled up
        assert cropped.shape == (32, 32) and (cropped == disc).all()


def nested_sequences(data: bytes, depth: int) -> bytes:
    """``data`` (a radiograph) with a Request Attributes Sequence (0040,0275) nested
    ``depth`` deep, in undefined lengths (Explicit VR Little Endian) before the pixel
    data: a few bytes a level, so a small file that is thousands of levels deep."""
    undefined, end = struct.pack("<I", 0xFFFFFFFF), b"\x00\x00\x00\x00"
    sequence_end = b"\xfe\xff\xdd\xe0" + end
    inner = b""
    for _ in range(depth):
        nested = (b"\x40\x00\x75\x02SQ\x00\x00" + undefined + inner + sequence_end
                  if inner else b"")
        inner = b"\xfe\xff\x00\xe0" + undefined + nested + b"\xfe\xff\x0d\xe0" + end
    pixel_data = data.index(b"\xe0\x7f\x10\x00")
    return (data[:pixel_data] + b"\x40\x00\x75\x02SQ\x00\x00" + undefined + inner
            + sequence_end + data[pixel_data:])


def test_a_file_nested_deeper_than_the_parser_recurses_is_refused(tmp_path) -> None:
    """pydicom parses sequences recursively: a file a few thousand levels deep raised
    RecursionError, which no check caught (500)."""
    assert imaging.inspect(write(tmp_path, nested_sequences(radiograph("p-1"), 5), "shallow"),
                           imaging.DICOM).modality == "CR"
    deep = write(tmp_path, nested_sequences(radiograph("p-1"), 3000), "deep")
    assert refused(deep) == "unreadable"


def test_an_element_that_does_not_parse_as_its_vr_is_refused(tmp_path) -> None:
    """pydicom converts an element's value when it is first read, after dcmread: an
    unknown VR (here Modality's ``CS`` made ``C2``) raised NotImplementedError from the
    checks, and a length that is no multiple of the VR's size BytesLengthException."""
    data = radiograph("p-1")
    modality = b"\x08\x00\x60\x00CS"
    assert modality in data
    assert refused(write(tmp_path, data.replace(modality, b"\x08\x00\x60\x00C2"))) \
        == "unreadable"


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width`` × ``height`` 8-bit grey pixels followed by a
    few bytes of IDAT: a decompression bomb's header (PNG spec §11.2.2)."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + \
            struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height,
                                                             8, 0, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(bytes(1024))) + chunk(b"IEND", b"")


def too_many(path: Path, content_type: str = imaging.DICOM, max_pixels: int = 1000) -> int:
    """The declared pixels of a refusal ``too-many-pixels`` under ``max_pixels``."""
    with pytest.raises(InvalidImage) as caught:
        imaging.inspect(path, content_type, max_pixels)
    assert caught.value.extensions["problem"] == "too-many-pixels", caught.value.detail
    assert caught.value.extensions["max_pixels"] == max_pixels
    return int(caught.value.extensions.get("pixels") or 0)


def test_an_image_declaring_more_pixels_than_the_limit_is_refused_before_decoding(
        tmp_path, monkeypatch) -> None:
    """Rows × Columns × Number of Frames (DICOM) or the header's width × height (PNG,
    JPEG) over the configured limit is ``too-many-pixels``; no decoder is called."""
    def no_decoding(*_: object) -> None:
        raise AssertionError("decoded before the pixel limit was checked")

    photo, jpeg = write(tmp_path, png(), "small.png"), write(tmp_path, png(fmt="JPEG"), "j")
    monkeypatch.setattr(imaging, "_check_decodes", no_decoding)
    monkeypatch.setattr(imaging, "_check_codestream", no_decoding)
    monkeypatch.setattr(imaging, "_check_native_length", no_decoding)
    monkeypatch.setattr(Image.Image, "load", no_decoding)
    for syntax in (imaging.ExplicitVRLittleEndian, JPEG2000Lossless):
        path = write(tmp_path, radiograph("p-1", transfer_syntax=syntax), str(syntax))
        assert too_many(path, max_pixels=64 * 64 - 1) == 64 * 64
    frames = dcmread(io.BytesIO(radiograph("p-1", rows=1024, columns=1024)))
    frames.NumberOfFrames = 100  # 100 M pixels declared, 2 MiB present
    out = io.BytesIO()
    frames.save_as(out, enforce_file_format=True)
    path = write(tmp_path, out.getvalue(), "frames")
    assert too_many(path, max_pixels=imaging.MAX_PIXELS) == 100 * 1024 * 1024
    huge = dcmread(io.BytesIO(radiograph("p-1")))
    huge.Rows = huge.Columns = 65535  # 4.3 G pixels declared, 8 KiB present
    out = io.BytesIO()
    huge.save_as(out, enforce_file_format=True)
    assert too_many(write(tmp_path, out.getvalue(), "huge"),
                    max_pixels=imaging.MAX_PIXELS) == 65535 * 65535
    assert too_many(photo, "image/png") == too_many(jpeg, "image/jpeg") == 40 * 30
    bomb = write(tmp_path, png_declaring(20_000, 20_000), "bomb.png")  # 400 M pixels
    too_many(bomb, "image/png", max_pixels=imaging.MAX_PIXELS)


def test_pillows_decompression_bomb_guard_is_the_service_limit(tmp_path, monkeypatch) -> None:
    """guard_pillow sets Image.MAX_IMAGE_PIXELS; Pillow's DecompressionBombError (past
    twice it, from the header) is answered ``too-many-pixels`` as well."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    imaging.guard_pillow(500)
    assert Image.MAX_IMAGE_PIXELS == 500
    path = write(tmp_path, png(), "photo.png")  # 1200 pixels: past twice 500
    too_many(path, "image/png", max_pixels=imaging.MAX_PIXELS)
