"""GNU Unifont lookup and per-character glyph drawing (docs/substrate.md, "Rendering", steps 1–2).

One font draws every character, as in the reference: a code point the font does not map
gets the font's own placeholder glyph (what FreeType draws for glyph 0), never a blank
cell. Glyphs are drawn one character at a time at font size = cell with the Pillow text
layout engine named by `layout_engine` (`basic`, the default, or `raqm`); which one the
reference's published run used is unknown, so it is a recorded build parameter.
"""

from __future__ import annotations

import os
import unicodedata
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


# Visible forms of invisible characters (the `visible_blanks` build option, beyond the reference):
# Unicode's Control Pictures for the C0 controls, space and DEL, the open box for no-break space;
# every other invisible character is drawn as its code point in hex digits inside a box.
CONTROL_PICTURES = {chr(code): chr(0x2400 + code) for code in range(0x20)} | {
    " ": "\u2420",
    "\x7f": "\u2421",
    "\u00a0": "\u2423",
}
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})  # controls, format characters, separators


class GlyphFont:
    """The glyph font at size `cell`: draws one character centred in its cell.

    With `visible_blanks`, an invisible character (a control, format or separator character: space,
    tab, newline, no-break space, …) or one the font draws no ink for is drawn in a visible form instead
    (`CONTROL_PICTURES`, else its hex code point in a box), so no two of them look alike.
    """

    def __init__(self, path: Path, cell: int, layout_engine: str = DEFAULT_LAYOUT_ENGINE, visible_blanks: bool = False):
        self.cell = cell
        self.path, self.layout_engine = path, layout_engine
        self.font = _pil_font(path, cell, layout_engine)
        self.visible_blanks = visible_blanks

    def draw(self, draw: ImageDraw.ImageDraw, char: str, cell_x: int, cell_y: int = 0) -> None:
        """Draw `char` black, centred by its bounding box in the cell whose top-left is (cell_x, cell_y).

        x = cell_x + (cell − w)//2, y = cell_y + (cell − h)//2 − top. As in the reference, a
        character whose drawing raises leaves its cell blank.
        """
        if self.visible_blanks and self.is_invisible(char):
            if char not in CONTROL_PICTURES:
                self._draw_hex_box(draw, ord(char), cell_x, cell_y)
                return
            char = CONTROL_PICTURES[char]
        self._draw_centred(draw, char, self.font, self.cell, cell_x, cell_y)

    @staticmethod
    def _draw_centred(
        draw: ImageDraw.ImageDraw, char: str, font: ImageFont.FreeTypeFont, cell: int, cell_x: int, cell_y: int
    ) -> None:
        try:
            left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
            x = cell_x + (cell - (right - left)) // 2
            y = cell_y + (cell - (bottom - top)) // 2 - top
            draw.text((x, y), char, font=font, fill=BLACK)
        except Exception:  # noqa: BLE001 - the reference blanks the cell on any failure (e.g. raqm_layout() failing)
            return

    def is_invisible(self, char: str) -> bool:
        """A control, format or separator character (invisible in text, even where Unifont draws a dashed box
        for it), or one whose glyph has no ink or cannot be drawn."""
        if unicodedata.category(char) in INVISIBLE_CATEGORIES:
            return True
        try:
            return self.font.getmask(char).getbbox() is None
        except Exception:  # noqa: BLE001 - a glyph the layout engine cannot draw is blank in the reference
            return True

    def _draw_hex_box(self, draw: ImageDraw.ImageDraw, code: int, cell_x: int, cell_y: int) -> None:
        """The code point's hex digits in two rows inside a one-pixel box the size of the cell."""
        digits = f"{code:04X}" if code <= 0xFFFF else f"{code:06X}"
        columns = len(digits) // 2
        small = max(1, self.cell // columns)
        font = _pil_font(self.path, small, self.layout_engine)
        draw.rectangle((cell_x, cell_y, cell_x + self.cell - 1, cell_y + self.cell - 1), outline=BLACK)
        for index, digit in enumerate(digits):
            row, column = divmod(index, columns)
            self._draw_centred(
                draw,
                digit,
                font,
                small,
                cell_x + column * small,
                cell_y + row * (self.cell // 2) + (self.cell // 2 - small) // 2,
            )

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
