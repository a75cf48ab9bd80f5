"""Frozen glyph embeddings: render each token's text with GNU Unifont, read its bits in
polar-snake order and project them with PCA (docs/substrate.md, "Rendering").

The recipe per token text, at `cell` pixels, as the reference's code does it:
1. a white greyscale canvas `cell` high and `cell · len(text)` wide (one cell for the empty text);
2. each character drawn black, centred in its own cell by its bounding box (`font.py`);
3. augmentation with Python's and NumPy's generators freshly seeded with 42 for every token,
   drawing in this order `angle = uniform(-R, R)`, `dx = randint(-S, S)`, `dy = randint(-S, S)`,
   then `rand(cell, width)` over the canvas for the noise:
   - "easy" texts (every character in U+0000–024F or U+0370–058F): rotate about the canvas
     centre with Pillow's default nearest-neighbour resampling (no expansion, white fill),
     paste onto a white canvas at (dx, dy), pixels with rand < p set black, Gaussian blur 0.5;
   - "complex" texts: the same draws with R = S = 0 and p = 0.001, no blur;
   then threshold to a 1-bit image, < 128 → black;
4. a canvas wider than one cell is resized to cell × cell *as the 1-bit image*: Pillow samples
   a 1-bit image with nearest neighbour whatever filter is asked for (the reference asks for
   bilinear), so the resize picks columns of the wide canvas;
5. bits (1 = black) in `polar_order`; 6. mean-centred PCA to `dim`, rows L2-normalised (`pca.py`).

`augment=None` renders without any augmentation (threshold and resize only);
`visible_blanks` (beyond the reference, off by default) draws invisible characters in a
visible form (`font.GlyphFont`).

Speed: `glyph_bits` draws each distinct character once per process and builds canvases
from those cached tiles, reuses the random draws per canvas width, and spreads chunks of
texts over worker processes; `render_bitmap` is the straightforward one-token version
that the fast path is tested against.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import multiprocessing
import os
import random
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pgt.errors import PgtError
from pgt.options import available_cpus
from pgt.substrate.font import WHITE, GlyphFont, GlyphTile, find_font
from pgt.substrate.layout import DEFAULT_LAYOUT_ENGINE, AugmentParams
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
    "render_canvas",
]

SEED = 42
THRESHOLD = 128
COMPLEX_NOISE_FRACTION = 0.001
EASY_RANGES = ((0x0000, 0x024F), (0x0370, 0x058F))
CHUNK_TEXTS = 512


def is_easy(text: str) -> bool:
    """Whether every character is Latin, Greek/Coptic, Cyrillic or Armenian (the lighter-augmented class)."""
    return all(any(low <= ord(char) <= high for low, high in EASY_RANGES) for char in text)


@lru_cache(maxsize=4)
def polar_order(cell: int) -> np.ndarray:
    """Row-major pixel indices (y · cell + x) sorted by (r, θ, x, y) around (cell/2, cell/2).

    The "polar snake" bit order (docs/substrate.md, "Rendering", step 5), from the centre outwards.
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
    # Private generators in the states that reseeding the global ones with 42 gives.
    python_rng = random.Random(SEED)
    numpy_rng = np.random.RandomState(SEED)
    rotate, shift = (augment.rotate_deg, augment.shift_px) if easy else (0, 0)
    angle = python_rng.uniform(-rotate, rotate)
    dx = python_rng.randint(-shift, shift)
    dy = python_rng.randint(-shift, shift)
    fraction = augment.noise_fraction if easy else COMPLEX_NOISE_FRACTION
    noise = numpy_rng.random_sample((cell, width)) < fraction
    return _Draws(angle, dx, dy, noise)


def _shift(pixels: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Paste at (dx, dy) onto a white canvas of the same size (the part pushed out is lost)."""
    height, width = pixels.shape
    shifted = np.full_like(pixels, WHITE)
    shifted[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = pixels[
        max(-dy, 0) : height - max(dy, 0), max(-dx, 0) : width - max(dx, 0)
    ]
    return shifted


def _augment(canvas: np.ndarray, easy: bool, augment: AugmentParams | None, draws: _Draws | None) -> np.ndarray:
    """Step 3 on a drawn canvas (uint8, 255 = white): bool [cell, width], True = black."""
    pixels = canvas
    if augment is not None:
        assert draws is not None
        if easy:
            rotated = Image.fromarray(canvas).rotate(
                draws.angle, resample=Image.Resampling.NEAREST, expand=False, fillcolor=WHITE
            )
            pixels = _shift(np.asarray(rotated), draws.dx, draws.dy)
        else:
            pixels = canvas.copy()
        pixels[draws.noise] = 0
        if easy:
            pixels = np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(augment.blur_radius)))
    return pixels < THRESHOLD


def _to_cell(black: np.ndarray, cell: int) -> np.ndarray:
    """Step 4: resize a wide 1-bit canvas to cell × cell by nearest-neighbour sampling (Pillow, mode "1")."""
    if black.shape[1] == cell:
        return black
    binary = Image.fromarray(~black)  # mode "1", True = white
    return ~np.asarray(binary.resize((cell, cell), Image.Resampling.NEAREST))


def _canvas_width(text: str, cell: int) -> int:
    return cell * max(len(text), 1)


def _draw_canvas(text: str, font: GlyphFont) -> np.ndarray:
    """Steps 1–2 the straightforward way: every character drawn onto one canvas."""
    cell = font.cell
    image = Image.new("L", (_canvas_width(text, cell), cell), WHITE)
    draw = ImageDraw.Draw(image)
    for index, char in enumerate(text):
        font.draw(draw, char, index * cell)
    return np.array(image)


def render_canvas(
    text: str,
    cell: int,
    font: str | os.PathLike | None = None,
    augment: AugmentParams | None = None,
    layout_engine: str = DEFAULT_LAYOUT_ENGINE,
    visible_blanks: bool = False,
) -> np.ndarray:
    """Steps 1–3 for one token text: the augmented 1-bit canvas, bool [cell, cell · len(text)], True = black."""
    glyph_font = GlyphFont(find_font(font), cell, layout_engine, visible_blanks)
    easy = is_easy(text)
    draws = None if augment is None else _draw_randoms(cell, _canvas_width(text, cell), easy, augment)
    return _augment(_draw_canvas(text, glyph_font), easy, augment, draws)


def render_bitmap(
    text: str,
    cell: int,
    font: str | os.PathLike | None = None,
    augment: AugmentParams | None = None,
    layout_engine: str = DEFAULT_LAYOUT_ENGINE,
    visible_blanks: bool = False,
) -> np.ndarray:
    """Steps 1–4 for one token text: bool [cell, cell], True = black."""
    return _to_cell(render_canvas(text, cell, font, augment, layout_engine, visible_blanks), cell)


class _FastRenderer:
    """`render_bitmap` for many texts: cached glyph tiles and per-width random draws."""

    def __init__(
        self, font: Path, cell: int, augment: AugmentParams | None, layout_engine: str, visible_blanks: bool = False
    ):
        self.font = GlyphFont(font, cell, layout_engine, visible_blanks)
        self.cell = cell
        self.augment = augment
        self.order = polar_order(cell)
        self.tiles: dict[str, GlyphTile] = {}
        self.draws: dict[tuple[int, bool], _Draws] = {}

    def tile(self, char: str) -> GlyphTile:
        tile = self.tiles.get(char)
        if tile is None:
            tile = self.tiles[char] = self.font.tile(char)
        return tile

    def canvas(self, text: str) -> np.ndarray:
        """Steps 1–2 from cached tiles; identical to `_draw_canvas` (tested).

        Tiles that stay in their cell never overlap, and pure black ink over anything
        composes as a pixel-wise minimum; any other overlap is drawn the straightforward way.
        """
        cell = self.cell
        tiles = [self.tile(char) for char in text]
        if len(tiles) > 1 and any(not tile.fits(cell) and (tile.clipped or not tile.binary) for tile in tiles):
            return _draw_canvas(text, self.font)
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
        return _to_cell(_augment(self.canvas(text), easy, self.augment, draws), self.cell)

    def packed_bits(self, texts: Sequence[str]) -> np.ndarray:
        """Bits of each text in polar order, packed with `np.packbits` (uint8 [n, cell²/8])."""
        bits = np.empty((len(texts), self.cell * self.cell), dtype=bool)
        for row, text in enumerate(texts):
            bits[row] = self.bitmap(text).reshape(-1)[self.order]
        return np.packbits(bits, axis=1)


_worker_renderer: _FastRenderer | None = None
PR_SET_PDEATHSIG = 1  # prctl(2)


def _pool_context() -> multiprocessing.context.BaseContext:
    """fork where available: it never re-runs the caller's main module (spawn breaks scripts
    without a `__main__` guard), and the workers only run Pillow/NumPy code that takes none
    of the locks the caller's threads (torch, tqdm's monitor) may hold."""
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def _die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this worker when its parent dies (Linux), so a killed build leaves no orphans."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if not hasattr(libc, "prctl") or libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _init_worker(
    parent: int, font: Path, cell: int, augment: AugmentParams | None, layout_engine: str, visible_blanks: bool
) -> None:
    global _worker_renderer
    _die_with_parent(parent)
    _worker_renderer = _FastRenderer(font, cell, augment, layout_engine, visible_blanks)


def _render_chunk(start: int, texts: list[str]) -> tuple[int, np.ndarray]:
    assert _worker_renderer is not None
    return start, _worker_renderer.packed_bits(texts)


def glyph_bits(
    texts: Sequence[str],
    *,
    cell: int,
    augment: AugmentParams | None,
    font: str | os.PathLike | None = None,
    layout_engine: str = DEFAULT_LAYOUT_ENGINE,
    visible_blanks: bool = False,
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
    # Reads the font: a bad one (or engine) fails here, not in a worker.
    renderer = _FastRenderer(font_path, cell, augment, layout_engine, visible_blanks)
    workers = workers or available_cpus()
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
                initargs=(os.getpid(), font_path, cell, augment, layout_engine, visible_blanks),
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
    layout_engine: str = DEFAULT_LAYOUT_ENGINE,
    visible_blanks: bool = False,
    fit_rows: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """The frozen embedding matrix of `texts`: float32 [len(texts), dim], rows L2-normalised.

    The PCA is fitted on the first `fit_rows` texts (default: all) and projects every row,
    so rows added after the reference layout (byte fallback) move no reference row.
    Deterministic: the same inputs give the same bytes (see `pca.pca_unit_rows`).
    """
    if not 1 <= dim <= cell * cell:
        raise PgtError(f"embedding dim {dim} must be between 1 and the {cell}x{cell} cell's {cell * cell} bits")
    if not texts:
        raise PgtError("no token texts to embed")
    bits = glyph_bits(
        texts,
        cell=cell,
        augment=augment,
        font=font,
        layout_engine=layout_engine,
        visible_blanks=visible_blanks,
        workers=workers,
        progress=progress,
    )
    return pca_unit_rows(bits, dim, fit_rows=fit_rows, progress=progress)


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
