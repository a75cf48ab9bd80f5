"""Frozen glyph embeddings: render each token's text with GNU Unifont, read its bits in
polar-snake order and project them with PCA (DESIGN.md §3).

The recipe per token text, at `cell` pixels:
1. a white canvas `cell` high and `cell · len(text)` wide (one cell for the empty text);
2. each character drawn black, centred in its own cell by its bounding box (`font.py`);
3. augmentation with freshly seeded generators (seed 42 for every token, so every token of
   one canvas width gets the same draws), then threshold < 128 → black:
   - "easy" texts (every character in U+0000–024F or U+0370–058F): rotate, shift, noise, blur;
   - "complex" texts: noise with p = 0.001 only;
4. a canvas wider than one cell is resized (bilinear) to cell × cell, black = < 128 again;
5. bits (1 = black) in `polar_order`; 6. mean-centred PCA to `dim`, rows L2-normalised (`pca.py`).

Our choices where the reference is silent:
- Random draws, in this order, from `random.Random(42)` and `numpy.random.RandomState(42)`
  (the same streams as reseeding the global generators): easy texts draw
  `angle = uniform(-R, R)`, `dx = randint(-S, S)`, `dy = randint(-S, S)` from Python's
  generator, then `noise = random_sample((cell, width)) < p` from NumPy's; complex texts
  draw only the NumPy noise mask.
- Rotation: Pillow `rotate` about the canvas centre, bilinear, no expansion, white fill.
  Shift: a translation by (dx, dy) pixels (positive = right/down) with white fill, no wrap.
  Blur: Pillow `GaussianBlur(0.5)`. Resize: Pillow bilinear.
- `augment=None` renders without any augmentation (threshold and resize only).

Speed: `glyph_bits` draws each distinct character once per process and builds canvases
from those cached tiles, reuses the random draws per canvas width, and spreads chunks of
texts over worker processes; `render_bitmap` is the straightforward one-token version
that the fast path is tested against.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pgt.errors import PgtError
from pgt.substrate.font import WHITE, FontChain, GlyphTile, find_font
from pgt.substrate.pca import pca_unit_rows

__all__ = [
    "COMPLEX_NOISE_FRACTION",
    "AugmentParams",
    "find_font",
    "glyph_bits",
    "glyph_matrix",
    "is_easy",
    "nearest_tokens",
    "polar_order",
    "render_bitmap",
]

SEED = 42
THRESHOLD = 128
COMPLEX_NOISE_FRACTION = 0.001
EASY_RANGES = ((0x0000, 0x024F), (0x0370, 0x058F))
CHUNK_TEXTS = 512


@dataclass(frozen=True)
class AugmentParams:
    """Augmentation of "easy" texts: rotation ±`rotate_deg`, shift ±`shift_px`, a fraction
    `noise_fraction` of pixels set black, then a Gaussian blur of `blur_radius`.

    Each family's values live with the family (`pgt.substrate.layout.Family.augment`).
    """

    rotate_deg: float
    shift_px: int
    noise_fraction: float
    blur_radius: float = 0.5



def is_easy(text: str) -> bool:
    """Whether every character is Latin, Greek/Coptic, Cyrillic or Armenian (the lighter-augmented class)."""
    return all(any(low <= ord(char) <= high for low, high in EASY_RANGES) for char in text)


@lru_cache(maxsize=4)
def polar_order(cell: int) -> np.ndarray:
    """Row-major pixel indices (y · cell + x) sorted by (r, θ, x, y) around (cell/2, cell/2).

    The "polar snake": the bit order of DESIGN.md §3 step 5, from the centre outwards.
    """
    y, x = np.divmod(np.arange(cell * cell), cell)
    r = np.hypot(x - cell / 2, y - cell / 2)
    theta = np.arctan2(y - cell / 2, x - cell / 2)
    order = np.lexsort((y, x, theta, r))
    order.flags.writeable = False
    return order


@dataclass(frozen=True)
class _Draws:
    """One token's random draws (identical for all tokens of one canvas width and class)."""

    angle: float
    dx: int
    dy: int
    noise: np.ndarray  # bool [cell, width]


def _draw_randoms(cell: int, width: int, easy: bool, augment: AugmentParams) -> _Draws:
    python_rng = random.Random(SEED)
    numpy_rng = np.random.RandomState(SEED)
    if easy:
        angle = python_rng.uniform(-augment.rotate_deg, augment.rotate_deg)
        dx = python_rng.randint(-augment.shift_px, augment.shift_px)
        dy = python_rng.randint(-augment.shift_px, augment.shift_px)
        fraction = augment.noise_fraction
    else:
        angle, dx, dy, fraction = 0.0, 0, 0, COMPLEX_NOISE_FRACTION
    noise = numpy_rng.random_sample((cell, width)) < fraction
    return _Draws(angle, dx, dy, noise)


def _shift(pixels: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Translate by (dx, dy) pixels, filling the uncovered border white."""
    height, width = pixels.shape
    shifted = np.full_like(pixels, WHITE)
    shifted[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = pixels[
        max(-dy, 0) : height - max(dy, 0), max(-dx, 0) : width - max(dx, 0)
    ]
    return shifted


def _finish(canvas: np.ndarray, cell: int, easy: bool, augment: AugmentParams | None, draws: _Draws | None) -> np.ndarray:
    """Steps 3–4 on a drawn canvas (uint8, 255 = white): bool [cell, cell], True = black."""
    pixels = canvas
    if augment is not None:
        assert draws is not None
        if easy:
            rotated = Image.fromarray(canvas).rotate(
                draws.angle, resample=Image.Resampling.BILINEAR, expand=False, fillcolor=WHITE
            )
            pixels = _shift(np.asarray(rotated), draws.dx, draws.dy)
        else:
            pixels = canvas.copy()
        pixels[draws.noise] = 0
        if easy:
            pixels = np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(augment.blur_radius)))
    black = pixels < THRESHOLD
    if black.shape[1] > cell:
        binary = Image.fromarray(np.where(black, 0, WHITE).astype(np.uint8))
        black = np.asarray(binary.resize((cell, cell), Image.Resampling.BILINEAR)) < THRESHOLD
    return black


def _canvas_width(text: str, cell: int) -> int:
    return cell * max(len(text), 1)


def _draw_canvas(text: str, fonts: FontChain) -> np.ndarray:
    """Steps 1–2 the straightforward way: every character drawn onto one canvas."""
    cell = fonts.cell
    image = Image.new("L", (_canvas_width(text, cell), cell), WHITE)
    draw = ImageDraw.Draw(image)
    for index, char in enumerate(text):
        fonts.draw(draw, char, index * cell)
    return np.array(image)


def render_bitmap(
    text: str, cell: int, font: str | os.PathLike | None = None, augment: AugmentParams | None = None
) -> np.ndarray:
    """Render one token text as DESIGN.md §3 steps 1–4: bool [cell, cell], True = black."""
    fonts = FontChain(find_font(font), cell)
    easy = is_easy(text)
    width = _canvas_width(text, cell)
    draws = None if augment is None else _draw_randoms(cell, width, easy, augment)
    return _finish(_draw_canvas(text, fonts), cell, easy, augment, draws)


class _FastRenderer:
    """`render_bitmap` for many texts: cached glyph tiles and per-width random draws."""

    def __init__(self, font: Path, cell: int, augment: AugmentParams | None):
        self.fonts = FontChain(font, cell)
        self.cell = cell
        self.augment = augment
        self.order = polar_order(cell)
        self.tiles: dict[str, GlyphTile] = {}
        self.draws: dict[tuple[int, bool], _Draws] = {}

    def tile(self, char: str) -> GlyphTile:
        tile = self.tiles.get(char)
        if tile is None:
            tile = self.tiles[char] = self.fonts.tile(char)
        return tile

    def canvas(self, text: str) -> np.ndarray:
        """Steps 1–2 from cached tiles; identical to `_draw_canvas` (tested).

        Tiles that stay in their cell never overlap, and pure black ink over anything
        composes as a pixel-wise minimum; any other overlap is drawn the straightforward way.
        """
        cell = self.cell
        tiles = [self.tile(char) for char in text]
        if len(tiles) > 1 and any(not tile.fits(cell) and (tile.clipped or not tile.binary) for tile in tiles):
            return _draw_canvas(text, self.fonts)
        canvas = np.full((cell, _canvas_width(text, cell)), WHITE, dtype=np.uint8)
        for index, tile in enumerate(tiles):
            if tile.pixels is None:
                continue
            height, width = tile.pixels.shape
            x, y = index * cell + tile.x, tile.y
            x0, y0 = max(x, 0), max(y, 0)
            x1, y1 = min(x + width, canvas.shape[1]), min(y + height, cell)
            if x0 < x1 and y0 < y1:
                region = canvas[y0:y1, x0:x1]
                np.minimum(region, tile.pixels[y0 - y : y1 - y, x0 - x : x1 - x], out=region)
        return canvas

    def bitmap(self, text: str) -> np.ndarray:
        easy = is_easy(text)
        draws = None
        if self.augment is not None:
            key = (_canvas_width(text, self.cell), easy)
            draws = self.draws.get(key)
            if draws is None:
                draws = self.draws[key] = _draw_randoms(self.cell, key[0], easy, self.augment)
        return _finish(self.canvas(text), self.cell, easy, self.augment, draws)

    def packed_bits(self, texts: Sequence[str]) -> np.ndarray:
        """Bits of each text in polar order, packed with `np.packbits` (uint8 [n, cell²/8])."""
        bits = np.empty((len(texts), self.cell * self.cell), dtype=bool)
        for row, text in enumerate(texts):
            bits[row] = self.bitmap(text).reshape(-1)[self.order]
        return np.packbits(bits, axis=1)


_worker_renderer: _FastRenderer | None = None


def _pool_context() -> multiprocessing.context.BaseContext:
    """fork where available: it never re-runs the caller's main module (spawn breaks scripts
    without a `__main__` guard), and the workers only run Pillow/NumPy code that takes none
    of the locks the caller's threads (torch, tqdm's monitor) may hold."""
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def _init_worker(font: Path, cell: int, augment: AugmentParams | None) -> None:
    global _worker_renderer
    _worker_renderer = _FastRenderer(font, cell, augment)


def _render_chunk(start: int, texts: list[str]) -> tuple[int, np.ndarray]:
    assert _worker_renderer is not None
    return start, _worker_renderer.packed_bits(texts)


def glyph_bits(
    texts: Sequence[str],
    *,
    cell: int,
    augment: AugmentParams | None,
    font: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Each text's rendered bits in polar-snake order: uint8 [len(texts), cell²], 1 = black.

    `workers` processes (default: all CPUs) render chunks of texts in parallel; the result
    does not depend on their number.
    """
    from tqdm.auto import tqdm

    if cell < 1:
        raise PgtError(f"glyph cell must be a positive number of pixels, got {cell}")
    font_path = find_font(font)
    renderer = _FastRenderer(font_path, cell, augment)  # reads the fonts: bad ones fail here, not in a worker
    workers = workers or os.cpu_count() or 1
    chunks = [(start, list(texts[start : start + CHUNK_TEXTS])) for start in range(0, len(texts), CHUNK_TEXTS)]
    bits = np.empty((len(texts), cell * cell), dtype=np.uint8)

    def store(start: int, packed: np.ndarray) -> None:
        bits[start : start + len(packed)] = np.unpackbits(packed, axis=1, count=cell * cell)
        bar.update(len(packed))

    with tqdm(total=len(texts), unit="tok", desc=f"glyphs {cell}x{cell}", disable=not progress) as bar:
        if workers == 1 or len(chunks) <= 1:
            for start, chunk in chunks:
                store(start, renderer.packed_bits(chunk))
        else:
            with concurrent.futures.ProcessPoolExecutor(
                max_workers=min(workers, len(chunks)),
                mp_context=_pool_context(),
                initializer=_init_worker,
                initargs=(font_path, cell, augment),
            ) as pool:
                futures = [pool.submit(_render_chunk, start, chunk) for start, chunk in chunks]
                for future in concurrent.futures.as_completed(futures):
                    store(*future.result())
    return bits


def glyph_matrix(
    texts: Sequence[str],
    *,
    cell: int,
    dim: int,
    augment: AugmentParams | None,
    font: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """The frozen embedding matrix of `texts`: float32 [len(texts), dim], rows L2-normalised.

    Deterministic: the same inputs give the same bytes (see `pca.pca_unit_rows`).
    """
    if not 1 <= dim <= cell * cell:
        raise PgtError(f"embedding dim {dim} must be between 1 and the {cell}x{cell} cell's {cell * cell} bits")
    if not texts:
        raise PgtError("no token texts to embed")
    bits = glyph_bits(texts, cell=cell, augment=augment, font=font, workers=workers, progress=progress)
    return pca_unit_rows(bits, dim, progress=progress)


def nearest_tokens(matrix: np.ndarray, query_index: int, k: int) -> list[tuple[int, float]]:
    """The `k` rows most cosine-similar to row `query_index` (itself excluded), best first.

    Rows are unit-norm, so cosine = dot product. Ties go to the lower index.
    """
    matrix = np.asarray(matrix, dtype=np.float32)
    if not 0 <= query_index < len(matrix):
        raise PgtError(f"token index {query_index} is outside the matrix's {len(matrix)} rows")
    similarity = matrix @ matrix[query_index]
    similarity[query_index] = -np.inf
    best = np.argsort(-similarity, kind="stable")[: max(0, min(k, len(matrix) - 1))]
    return [(int(index), float(similarity[index])) for index in best]
