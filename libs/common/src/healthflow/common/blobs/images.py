"""Raster images checked by decoding them whole (Pillow), before they are kept.

An uploaded photograph (a receipt, a wound, a film) is accepted only when Pillow decodes
every pixel of it: a file whose bytes merely start like a PNG or JPEG (truncated,
damaged, or something else) is refused. The header's width × height is checked against
a limit first, so a decompression bomb (a tiny file declaring billions of pixels) is
refused without allocating them; Pillow's own ``DecompressionBombError`` (raised from
the header at twice ``Image.MAX_IMAGE_PIXELS``) is the same refusal.

Needs the ``images`` extra of ``healthflow-common`` (Pillow); services that take images
(records, emergency, xray) declare it. Pillow's messages may quote the file, so they
are neither raised on nor logged: :class:`ImageRefused` says only which rule failed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image

PIL_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
"""Pillow's format name of each content type the platform accepts as a raster image."""


class ImageRefused(Exception):
    """Not a usable image. ``problem``: ``too-many-pixels`` (``pixels`` declared by the
    header, over ``max_pixels``) or ``unreadable`` (does not decode whole, or not in the
    required format); ``str()`` is a detail fit for a client."""

    def __init__(self, detail: str, *, problem: Literal["too-many-pixels", "unreadable"],
                 pixels: int | None = None, error: str | None = None) -> None:
        super().__init__(detail)
        self.problem = problem
        self.pixels = pixels
        self.error = error
        """The class name of Pillow's exception (for logs), never its message."""


@dataclass(frozen=True)
class DecodedImage:
    """What the decode found: Pillow's ``format`` name (``"PNG"``, ``"JPEG"``, …), the
    size in pixels and Pillow's ``mode`` (``"L"``, ``"RGB"``, …)."""

    format: str
    width: int
    height: int
    mode: str


def decode_whole(path: Path, max_pixels: int, *, pil_format: str | None = None
                 ) -> DecodedImage:
    """Decode the image file at ``path`` whole, after checking its header's width ×
    height against ``max_pixels``. ``pil_format``: the only format tried (the declared
    content type's, :data:`PIL_FORMATS`); ``None``: any Pillow reads (the caller checks
    :attr:`DecodedImage.format`).

    Raises:
        ImageRefused: see the class.
    """
    formats = [pil_format] if pil_format is not None else None
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own limit and refuses at twice it: the limit is ours
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=formats) as image:
                pixels = image.width * image.height
                if pixels > max_pixels:
                    raise ImageRefused(f"the image has {pixels} pixels, more than "
                                       f"{max_pixels}", problem="too-many-pixels",
                                       pixels=pixels)
                image.load()
                return DecodedImage(format=str(image.format), width=image.width,
                                    height=image.height, mode=image.mode)
    except ImageRefused:
        raise
    except Image.DecompressionBombError:
        raise ImageRefused(f"the image declares more than {max_pixels} pixels",
                           problem="too-many-pixels") from None
    except Exception as exc:  # any failure of Pillow on hostile bytes is a refusal
        raise ImageRefused("the image does not decode (truncated or damaged)",
                           problem="unreadable", error=type(exc).__name__) from None
