"""Previews: a stored image as an 8-bit grey PNG a browser shows.

DICOM pixels go through the Modality LUT (Rescale Slope/Intercept, PS3.3
C.11.1), then the VOI window from Window Center (0028,1050) / Window Width
(0028,1051) with the linear function of PS3.3 C.11.2.1.2.1 (or, without one, the VOI LUT
Sequence (0028,3010), PS3.3 C.11.2.1.1; with neither, the image's own minimum to
maximum), and are inverted for ``MONOCHROME1`` (where the
lowest value is white, PS3.3 C.7.6.3.1.2). Previews are at most
:data:`MAX_SIDE` pixels on their long side.

The lung-field overlay (:func:`lung_overlay`) is the preview in colour with the
lungs-finder boxes drawn on it, stamped "machine-generated" in its pixels and its PNG
text chunks.

A file that fails to render is logged by the error's type alone: pydicom's messages
quote element values (:func:`preview`).
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, PngImagePlugin
from pydicom import dcmread
from pydicom.pixels import apply_modality_lut

from healthflow.xray.domain import PreviewFailed
from healthflow.xray.imaging import DEFER_SIZE, DICOM, stored_window

log = logging.getLogger(__name__)
MAX_SIDE = 1024
THUMBNAIL_SIDE = 256
RENDERED_MAX_SIDE = 4096
"""The long side of a WADO-RS rendered frame at most (larger images are scaled down)."""
JPEG_QUALITY = 90
RENDERED_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG"}
"""WADO-RS rendered media types served → Pillow format (PS3.18 Table 8.7.4-2: JPEG the
default, PNG required)."""
Array = npt.NDArray[np.float64]


def window(values: Array, center: float, width: float, *, invert: bool = False
           ) -> npt.NDArray[np.uint8]:
    """PS3.3 C.11.2.1.2.1 linear VOI to 0–255: values ≤ ``c − 0.5 − (w − 1)/2`` are 0,
    values > ``c − 0.5 + (w − 1)/2`` are 255, linear in between; ``invert`` for
    MONOCHROME1. ``width`` ≥ 1 (in the values' units, e.g. HU or detector counts).

    Raises:
        ValueError: ``width`` < 1.
    """
    if width < 1:
        raise ValueError("the window width must be at least 1")
    scaled = ((values - (center - 0.5)) / (width - 1 if width > 1 else 1) + 0.5) * 255.0
    low = values <= center - 0.5 - (width - 1) / 2
    high = values > center - 0.5 + (width - 1) / 2
    out = np.clip(scaled, 0, 255)
    out[low], out[high] = 0, 255
    grey = np.rint(out).astype(np.uint8)
    return (255 - grey) if invert else grey


VOI_FUNCTIONS = ("linear", "linear-exact", "sigmoid")
"""VOI LUT functions of a WADO-RS ``window`` (PS3.18 §8.3.5.1.3, PS3.3 C.11.2.1.3)."""


def voi(values: Array, center: float, width: float, function: str = "linear",
        *, invert: bool = False) -> npt.NDArray[np.uint8]:
    """``values`` to 0–255 by a VOI function of :data:`VOI_FUNCTIONS`: ``linear``
    (:func:`window`, width ≥ 1), ``linear-exact`` (PS3.3 C.11.2.1.3.2:
    ``((x − c) / w + 0.5)``, width > 0) or ``sigmoid`` (C.11.2.1.3.1:
    ``1 / (1 + exp(−4 (x − c) / w))``, width > 0), scaled to 255; ``invert`` for
    MONOCHROME1.

    Raises:
        ValueError: an unknown function, or a width out of its range.
    """
    if function == "linear":
        return window(values, center, width, invert=invert)
    if function not in VOI_FUNCTIONS or not width > 0:
        raise ValueError(f"VOI function {function} with width {width} is not defined")
    if function == "linear-exact":
        out = ((values - center) / width + 0.5) * 255.0
    else:
        out = 255.0 / (1.0 + np.exp(np.clip(-4.0 * (values - center) / width, -700, 700)))
    grey = np.rint(np.clip(out, 0, 255)).astype(np.uint8)
    return (255 - grey) if invert else grey


def full_range(values: Array) -> tuple[float, float]:
    """The (center, width) that spans ``values`` from their minimum to their maximum."""
    low, high = float(values.min()), float(values.max())
    width = max(high - low + 1, 1.0)
    return low + width / 2, width


def _encode(grey: npt.NDArray[np.uint8], side: int = MAX_SIDE, image_format: str = "PNG",
            box: tuple[int, int] | None = None) -> bytes:
    """``grey`` scaled down (aspect kept) to fit ``side`` × ``side``, or the ``box``
    (width, height) when given, and encoded."""
    image = Image.fromarray(grey)
    image.thumbnail(box or (side, side))
    out = io.BytesIO()
    image.save(out, format=image_format, **({"quality": JPEG_QUALITY}
                                            if image_format == "JPEG" else {}))
    return out.getvalue()


def _png(grey: npt.NDArray[np.uint8], side: int = MAX_SIDE) -> bytes:
    return _encode(grey, side)


def _windowed(ds: Any, pixels: npt.NDArray[Any], side: int,
              chosen: tuple[float, float, str] | None = None) -> npt.NDArray[np.uint8]:
    """One frame's pixels as 8-bit grey as shown (Modality LUT, VOI window — ``chosen``
    (center, width, function) when given, else the stored one, else the full range —
    MONOCHROME1 inverted; colour converted to grey), kept at about twice ``side`` on its
    long side."""
    if pixels.ndim == 3:  # colour: shown as it is, in grey
        return np.asarray(Image.fromarray(pixels.astype(np.uint8)).convert("L"))
    # Keep about twice the preview's resolution before going to float64 (8 bytes a
    # pixel, several temporaries): a 60 M-pixel image would otherwise take gigabytes.
    step = max(1, -(-max(pixels.shape) // (2 * side)))
    pixels = pixels[::step, ::step]
    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    invert = str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1"
    if chosen is not None:
        return voi(values, *chosen, invert=invert)
    stored = stored_window(ds)
    if stored is None and (looked_up := voi_lut(values, ds)) is not None:
        return (255 - looked_up) if invert else looked_up
    center, width = stored or full_range(values)
    return window(values, center, width, invert=invert)


def voi_lut(values: Array, ds: Any) -> npt.NDArray[np.uint8] | None:
    """``values`` (Modality LUT output) through the first item of the VOI LUT Sequence
    (0028,3010), PS3.3 C.11.2.1.1 / C.8.11.3.1.5: LUT Descriptor (entries, 0 meaning
    65536; first value mapped; bits 8 or 10–16), values below the first mapped one take
    the first entry and those past the last the last; scaled from 0 … 2^bits − 1 to
    0–255. None without a usable sequence (absent or malformed: the caller then windows
    the full range). Not pydicom's ``apply_voi``: it indexes in the LUT's own dtype, so
    an 8-bit LUT wraps every value above 255."""
    if "VOILUTSequence" not in ds:
        return None
    try:
        item = ds.VOILUTSequence[0]
        entries, first, bits = (int(v) for v in item.LUTDescriptor)
        data = item.LUTData
        lut = np.frombuffer(data, dtype="<u2") if isinstance(data, bytes) \
            else np.asarray([data] if isinstance(data, int) else list(data), dtype=np.float64)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        log.info("VOI LUT not used", extra={"error": type(exc).__name__})
        return None
    entries = entries or 65536
    if int(ds.get("PixelRepresentation", 0) or 0) == 1 and first >= 32768:
        first -= 65536  # read as US; signed images give it as SS
    if not (bits == 8 or 10 <= bits <= 16) or len(lut) < entries:
        return None
    index = np.clip(np.rint(values) - first, 0, entries - 1).astype(np.int64)
    grey = np.asarray(lut, dtype=np.float64)[index] * (255.0 / (2 ** bits - 1))
    return np.rint(np.clip(grey, 0, 255)).astype(np.uint8)


def dicom_preview(path: Path, side: int = MAX_SIDE) -> bytes:
    """The first frame of the DICOM file at ``path``, windowed, as PNG bytes at most
    ``side`` pixels on its long side."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(path, defer_size=DEFER_SIZE)
        pixels = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    return _png(_windowed(ds, pixels, side), side)


def photo_preview(path: Path, side: int = MAX_SIDE) -> bytes:
    """A photograph of a film, in grey, as PNG bytes."""
    with Image.open(path) as image:
        return _png(np.asarray(image.convert("L")), side)


def preview(path: Path, content_type: str, side: int = MAX_SIDE) -> bytes:
    """The PNG preview of the stored file at ``path`` of ``content_type``, at most ``side``
    pixels on its long side (:data:`THUMBNAIL_SIDE` for a thumbnail).

    Raises:
        PreviewFailed (500): the file does not render; logged with the exception's type
            only (no message, no traceback: they can quote element values).
    """
    draw = dicom_preview if content_type == DICOM else photo_preview
    try:
        return draw(path, side)
    except Exception as exc:  # a stored file passed every check; anything here is a bug
        log.error("preview failed", extra={"error": type(exc).__name__})
        raise PreviewFailed("the image could not be rendered; it has been logged") from None


OVERLAY_COLOURS = {"right": (255, 160, 0), "left": (0, 200, 255)}
"""Box colour per lung (RGB): orange the patient's right, cyan the left."""
OVERLAY_TINT = 0.25
"""How much of the box colour is blended into the pixels inside a box (0–1)."""


def lung_overlay(preview_png: bytes, boxes: list[dict[str, Any]], columns: int,
                 label: str) -> bytes:
    """The preview (PNG bytes, as :func:`preview` made it) in RGB with each lung box
    (``{side, x, y, width, height}`` in the stored image's pixels, the image ``columns``
    wide) tinted and outlined, and ``label`` written in its top left corner and as
    the PNG ``Description`` and ``Software`` text chunks (PNG 1.2 §4.2.3)."""
    with Image.open(io.BytesIO(preview_png)) as shown:
        image = shown.convert("RGB")
    scale = image.width / columns
    pixels = np.asarray(image, dtype=np.float64).copy()
    outlines: list[tuple[tuple[int, int, int, int], tuple[int, int, int]]] = []
    for box in boxes:
        x0, y0 = round(box["x"] * scale), round(box["y"] * scale)
        x1 = min(image.width, round((box["x"] + box["width"]) * scale))
        y1 = min(image.height, round((box["y"] + box["height"]) * scale))
        colour = OVERLAY_COLOURS.get(box["side"], (255, 0, 255))
        inside = pixels[y0:y1, x0:x1]
        pixels[y0:y1, x0:x1] = inside * (1 - OVERLAY_TINT) + np.array(colour) * OVERLAY_TINT
        outlines.append(((x0, y0, x1 - 1, y1 - 1), colour))
    drawn = Image.fromarray(np.rint(pixels).astype(np.uint8), "RGB")
    pen = ImageDraw.Draw(drawn)
    width = max(2, image.width // 256)
    for rectangle, colour in outlines:
        pen.rectangle(rectangle, outline=colour, width=width)
    pen.rectangle((0, 0, 8 + 6 * len(label), 16), fill=(0, 0, 0))
    pen.text((4, 3), label, fill=(255, 255, 0))
    info = PngImagePlugin.PngInfo()
    info.add_text("Description", f"Lung fields: {label}")
    info.add_text("Software", "HealthFlow lungs-finder overlay (machine-generated)")
    out = io.BytesIO()
    drawn.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


@dataclass(frozen=True)
class Geometry:
    """Number of Frames (0028,0008; 1 when absent), Rows and Columns of a DICOM file."""

    frames: int
    rows: int
    columns: int


def geometry(path: Path) -> Geometry:
    """The :class:`Geometry` of the DICOM file at ``path`` (its header alone)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(path, stop_before_pixels=True)
    return Geometry(int(ds.get("NumberOfFrames", 1) or 1), int(ds.get("Rows", 0) or 0),
                    int(ds.get("Columns", 0) or 0))


@dataclass(frozen=True)
class Viewport:
    """A WADO-RS ``viewport=vw,vh[,sx,sy,sw,sh]`` (PS3.18 §8.3.5.1.3): the rendered
    image is the source region — ``sx``, ``sy`` its top-left corner in image pixels
    (column, row; default 0), ``sw`` × ``sh`` its size (default: to the image's right
    and bottom edges) — scaled up or down to fit ``width`` × ``height`` pixels, aspect
    kept."""

    width: int
    height: int
    x: int = 0
    y: int = 0
    region_width: int | None = None
    region_height: int | None = None

    def region(self, rows: int, columns: int) -> tuple[int, int, int, int] | None:
        """(x, y, width, height) of the source region in an image ``rows`` × ``columns``,
        or None when it does not lie inside the image (or is empty)."""
        width = columns - self.x if self.region_width is None else self.region_width
        height = rows - self.y if self.region_height is None else self.region_height
        inside = min(self.x, self.y) >= 0 and min(width, height) > 0 and \
            self.x + width <= columns and self.y + height <= rows
        return (self.x, self.y, width, height) if inside else None

    def fitted(self, width: int, height: int) -> tuple[int, int]:
        """The size a region ``width`` × ``height`` is shown at: scaled by one factor
        (up or down) to touch the viewport's sides, at least 1 pixel each."""
        scale = min(self.width / width, self.height / height)
        return max(1, round(width * scale)), max(1, round(height * scale))


def rendered_frame(path: Path, frame: int, media_type: str,
                   chosen: tuple[float, float, str] | None = None,
                   viewport: Viewport | None = None) -> bytes:
    """Frame ``frame`` (1-based) of the DICOM file at ``path`` rendered as the preview is
    (Modality LUT, VOI window — the ``chosen`` (center, width, function) of a WADO-RS
    ``window`` when given, in place of the stored window or VOI LUT — MONOCHROME1
    inverted) at its own size up to :data:`RENDERED_MAX_SIDE`, or its ``viewport``
    region fitted to the viewport, encoded as ``media_type`` (a key of
    :data:`RENDERED_FORMATS`). The caller checks ``frame`` and the viewport's region
    against :func:`geometry`.

    Raises:
        PreviewFailed (500): the file does not render (logged by the error's type).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(path, defer_size=DEFER_SIZE)
            pixels = ds.pixel_array
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            pixels = pixels[frame - 1]
        image_format = RENDERED_FORMATS[media_type]
        if viewport is None:
            side = min(RENDERED_MAX_SIDE, max(pixels.shape[:2]))
            return _encode(_windowed(ds, pixels, side, chosen), side, image_format)
        region = viewport.region(*pixels.shape[:2])
        if region is None:
            raise ValueError("the viewport's region is outside the image")
        x, y, width, height = region
        size = viewport.fitted(width, height)
        grey = _windowed(ds, pixels[y:y + height, x:x + width], max(size), chosen)
        return _encode(np.asarray(Image.fromarray(grey).resize(size, Image.Resampling.LANCZOS)),
                       max(size), image_format)
    except Exception as exc:  # a stored file passed every check; anything here is a bug
        log.error("rendering failed", extra={"error": type(exc).__name__})
        raise PreviewFailed("the frame could not be rendered; it has been logged") from None
