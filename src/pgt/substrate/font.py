"""GNU Unifont lookup and per-character glyph drawing (DESIGN.md §3, steps 1–2).

Font choice: the main font (`find_font`) draws every character it maps; characters it
lacks (most of those above U+FFFF) fall back to `unifont_upper.otf` from the same
directory when that file exists. A character that no font in the chain maps is left
blank, as in the reference. Glyphs are drawn with Pillow's basic layout engine (one
character at a time, so shaping never applies) at font size = cell.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFont

from pgt.errors import PgtError

DEFAULT_FONT = Path("/usr/share/fonts/opentype/unifont/unifont.otf")
FALLBACK_FONT_NAME = "unifont_upper.otf"
FONT_ENV = "PGT_FONT"
WHITE = 255
BLACK = 0


def find_font(font: str | os.PathLike | None = None) -> Path:
    """The main glyph font: `font` if given, else `$PGT_FONT`, else Debian's GNU Unifont."""
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


def font_chain_paths(main: Path) -> tuple[Path, ...]:
    """The fonts tried in order for each character: the main font, then Unifont Upper beside it."""
    fallback = main.parent / FALLBACK_FONT_NAME
    if fallback.is_file() and fallback.resolve() != main.resolve():
        return (main, fallback)
    return (main,)


@lru_cache(maxsize=8)
def _char_map(path: Path) -> frozenset[int]:
    """Code points that the font at `path` maps to a glyph."""
    from fontTools.ttLib import TTFont, TTLibError

    try:
        with TTFont(str(path), lazy=True) as font:
            return frozenset(font.getBestCmap() or {})
    except (TTLibError, OSError, AssertionError) as exc:
        raise PgtError(f"font {path} cannot be read as an OpenType/TrueType font: {exc}") from None


@lru_cache(maxsize=8)
def _pil_font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)
    except OSError as exc:
        raise PgtError(f"font {path} cannot be loaded: {exc}") from None


@dataclass(frozen=True)
class GlyphTile:
    """A character's ink as drawn by `FontChain.draw`, relative to the top-left of its cell.

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


class FontChain:
    """The font chain at size `cell`: draws one character centred in its cell."""

    def __init__(self, main: Path, cell: int):
        self.cell = cell
        self.fonts = [(_char_map(path), _pil_font(path, cell)) for path in font_chain_paths(main)]

    def font_for(self, char: str) -> ImageFont.FreeTypeFont | None:
        """The first font of the chain that maps `char`, or None (the character stays blank)."""
        code_point = ord(char)
        for char_map, font in self.fonts:
            if code_point in char_map:
                return font
        return None

    def draw(self, draw: ImageDraw.ImageDraw, char: str, cell_x: int, cell_y: int = 0) -> None:
        """Draw `char` black, centred by its bounding box in the cell whose top-left is (cell_x, cell_y).

        DESIGN.md §3 step 2: x = cell_x + (cell − w)//2, y = cell_y + (cell − h)//2 − top.
        """
        font = self.font_for(char)
        if font is None:
            return
        left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
        width, height = right - left, bottom - top
        x = cell_x + (self.cell - width) // 2
        y = cell_y + (self.cell - height) // 2 - top
        draw.text((x, y), char, font=font, fill=BLACK)

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
