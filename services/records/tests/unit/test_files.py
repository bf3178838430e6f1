"""The content checks of uploaded files alone (pypdf, Pillow), on files written to disk."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfWriter

from healthflow.records.files import InvalidDocument, inspect


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "upload"
    path.write_bytes(data)
    return path


def pdf(pages: int, password: str | None = None) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(100, 100)
    if password:
        writer.encrypt(password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def png(size: tuple[int, int] = (8, 6)) -> bytes:
    out = io.BytesIO()
    Image.new("L", size).save(out, "PNG")
    return out.getvalue()


def test_a_whole_pdf_and_image_give_their_pages_and_size(tmp_path: Path) -> None:
    assert inspect(write(tmp_path, pdf(3)), "application/pdf").pages == 3
    facts = inspect(write(tmp_path, png()), "image/png")
    assert (facts.width, facts.height, facts.pages) == (8, 6, None)


@pytest.mark.parametrize(("data", "content_type", "problem"), [
    (pdf(1)[:-30], "application/pdf", "unreadable-pdf"),
    (pdf(1)[: len(pdf(1)) // 2], "application/pdf", "unreadable-pdf"),
    (pdf(0), "application/pdf", "no-pages"),
    (pdf(1, password="secret"), "application/pdf", "encrypted-pdf"),
    (png()[:40], "image/png", "unreadable-image"),
    (png(), "image/jpeg", "unreadable-image"),  # Pillow must find the declared format
])
def test_damaged_empty_or_locked_files_are_refused(tmp_path: Path, data: bytes,
                                                   content_type: str, problem: str) -> None:
    with pytest.raises(InvalidDocument) as refused:
        inspect(write(tmp_path, data), content_type)
    assert refused.value.extensions["problem"] == problem
    assert "secret" not in refused.value.detail


@pytest.mark.parametrize("raised", [ZeroDivisionError, IndexError, AssertionError])
def test_any_other_parser_failure_is_a_refusal_not_a_server_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raised: type[Exception]) -> None:
    """pypdf and Pillow raise more than their documented errors on hostile input; any of
    them is the file's fault (422), never a 500. The parsers are made to raise here:
    no small file is known to reach such a branch today."""
    from healthflow.common.blobs import images
    from healthflow.records import files

    def failing(*args: object, **kwargs: object) -> None:
        raise raised("boom")

    monkeypatch.setattr(files, "PdfReader", failing)
    monkeypatch.setattr(images.Image, "open", failing)  # the shared whole-image check
    for data, content_type, problem in ((pdf(1), "application/pdf", "unreadable-pdf"),
                                        (png(), "image/png", "unreadable-image")):
        with pytest.raises(InvalidDocument) as refused:
            inspect(write(tmp_path, data), content_type)
        assert refused.value.extensions["problem"] == problem
