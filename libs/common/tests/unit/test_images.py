"""Raster images are decoded whole before they are kept: truncated files, the wrong
format and decompression bombs are refused, saying only which rule failed."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from healthflow.common.blobs.images import ImageRefused, decode_whole


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height), 128).save(out, format="PNG")
    return out.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` × ``height`` pixels and holds almost none."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "image"
    path.write_bytes(data)
    return path


def test_a_whole_image_is_decoded(tmp_path: Path) -> None:
    image = decode_whole(write(tmp_path, png(40, 30)), 10_000, pil_format="PNG")
    assert (image.format, image.width, image.height, image.mode) == ("PNG", 40, 30, "L")


def test_a_truncated_image_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ImageRefused) as refused:
        decode_whole(write(tmp_path, png(200, 200)[:120]), 10**6, pil_format="PNG")
    assert refused.value.problem == "unreadable" and refused.value.error


def test_another_format_than_the_declared_one_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ImageRefused) as refused:
        decode_whole(write(tmp_path, png(10, 10)), 10**6, pil_format="JPEG")
    assert refused.value.problem == "unreadable"


def test_a_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    with pytest.raises(ImageRefused) as refused:
        decode_whole(write(tmp_path, bomb_png(100_000, 100_000)), 50_000_000)
    assert refused.value.problem == "too-many-pixels"
    assert "50000000" in str(refused.value)
