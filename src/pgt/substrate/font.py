"""GNU Unifont lookup and per-character glyph drawing (docs/substrate.md, "Rendering", steps 1–2).

One font draws every character, as in the reference: a code point the font does not map
gets the font's own placeholder glyph (what FreeType draws for glyph 0), never a blank
cell. Glyphs are drawn one character at a time at font size = cell with the Pillow text
layout engine named by `layout_engine` (`basic`, the default, or `raqm`); which one the
reference's published run used is unknown, so it is a recorded build parameter.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFont, features

from pgt.errors import PgtError, one_line
from pgt.substrate.layout import DEFAULT_LAYOUT_ENGINE, LAYOUT_ENGINES

DEFAULT_FONT = Path("/usr/share/fonts/opentype/unifont/unifont.otf")
FONT_ENV = "PGT_FONT"
WHITE = 255
BLACK = 0
_PIL_LAYOUTS = {"basic": ImageFont.Layout.BASIC, "raqm": ImageFont.Layout.RAQM}


def find_font(font: str | os.PathLike | None = None) -> Path:
    """The glyph font: `font` if given, else `$PGT_FONT`, else Debian's GNU Unifont."""
    if font is not None:
        path, origin = Path(font), "--font"
    elif os.environ.get(FONT_ENV):
        path, origin = Path(os.environ[FONT_ENV]), f"${FONT_ENV}"
    else:
        path, origin = DEFAULT_FONT, "the default"
    if not path.is_file():
        raise PgtError(
            f"font {path} ({origin}) not found: install GNU Unifont with "
            f"`apt-get install fonts-unifont unifont`, or pass --font PATH / set {FONT_ENV}"
        )
    return path


def check_layout_engine(name: str) -> None:
    """A known engine that this Pillow build provides, or a one-line PgtError."""
    if name not in LAYOUT_ENGINES:
        raise PgtError(f"unknown text layout engine {name!r} (known: {', '.join(LAYOUT_ENGINES)})")
    if name == "raqm" and not features.check("raqm"):
        raise PgtError("this Pillow has no Raqm layout engine (install libraqm); use --layout-engine basic")


@lru_cache(maxsize=8)
def _pil_font(path: Path, size: int, layout_engine: str) -> ImageFont.FreeTypeFont:
    check_layout_engine(layout_engine)
    try:
        return ImageFont.truetype(str(path), size, layout_engine=_PIL_LAYOUTS[layout_engine])
    except OSError as exc:
        raise PgtError(f"font {path} cannot be read as an OpenType/TrueType font: {one_line(exc)}") from None


@dataclass(frozen=True)
class GlyphTile:
    """A character's ink as drawn by `GlyphFont.draw`, relative to the top-left of its cell.

    `pixels` covers the ink's bounding box (uint8, 255 = white) at offset (`x`, `y`);
    `pixels` is None for a character that draws nothing. `clipped` marks ink that reached
    the edge of the drawing margin, so `pixels` may miss part of it.
    """

    x: int
    y: int
    pixels: np.ndarray | None
    clipped: bool = False

    def fits(self, cell: int) -> bool:
        """Whether the ink stays inside the character's own cell (then tiles never overlap)."""
        if self.pixels is None:
            return True
        height, width = self.pixels.shape
        return 0 <= self.x and self.x + width <= cell and 0 <= self.y and self.y + height <= cell

    @property
    def binary(self) -> bool:
        """Whether every ink pixel is pure black or white (no anti-aliased edge)."""
        return self.pixels is None or bool(np.isin(self.pixels, (BLACK, WHITE)).all())


class GlyphFont:
    """The glyph font at size `cell`: draws one character centred in its cell."""

    def __init__(self, path: Path, cell: int, layout_engine: str = DEFAULT_LAYOUT_ENGINE):
        self.cell = cell
        self.font = _pil_font(path, cell, layout_engine)

    def draw(self, draw: ImageDraw.ImageDraw, char: str, cell_x: int, cell_y: int = 0) -> None:
        """Draw `char` black, centred by its bounding box in the cell whose top-left is (cell_x, cell_y).

        x = cell_x + (cell − w)//2, y = cell_y + (cell − h)//2 − top. As in the reference, a
        character whose drawing raises leaves its cell blank.
        """
        try:
            left, top, right, bottom = draw.textbbox((0, 0), char, font=self.font)
            x = cell_x + (self.cell - (right - left)) // 2
            y = cell_y + (self.cell - (bottom - top)) // 2 - top
            draw.text((x, y), char, font=self.font, fill=BLACK)
        except Exception:  # noqa: BLE001 - the reference blanks the cell on any failure (e.g. raqm_layout() failing)
            return

    def tile(self, char: str) -> GlyphTile:
        """Draw `char` alone with a one-cell margin all round and keep just its ink."""
        cell = self.cell
        image = Image.new("L", (3 * cell, 3 * cell), WHITE)
        self.draw(ImageDraw.Draw(image), char, cell, cell)
        box = ImageChops.invert(image).getbbox()  # the ink's extent: non-white pixels
        if box is None:
            return GlyphTile(0, 0, None)
        left, top, right, bottom = box
        clipped = left == 0 or top == 0 or right == 3 * cell or bottom == 3 * cell
        return GlyphTile(left - cell, top - cell, np.array(image.crop(box)), clipped)
