"""Glyph embeddings: rendering, augmentation, polar bit order, PCA, and what the vectors mean."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from pgt.errors import PgtError
from pgt.substrate.font import DEFAULT_FONT, find_font
from pgt.substrate.glyphs import (
    glyph_bits,
    glyph_matrix,
    is_easy,
    nearest_tokens,
    polar_order,
    render_bitmap,
)
from pgt.substrate.layout import get_family

pytestmark = pytest.mark.xdist_group("substrate-glyphs")  # one worker builds the module's matrix once

CELL = 32
AUGMENT_CELL_32 = get_family("bvv241-2-3").augment  # R, S, p = 4, 2, 0.01
AUGMENT_CELL_64 = get_family("bvv241-abs").augment  # R, S, p = 7, 3, 0.03
BLANK = "\uffff"  # a noncharacter that no Unifont file draws

# Texts that exercise every drawing path: wide CJK, combining marks with negative bearings
# (ink outside its cell), Devanagari clusters, Unifont Upper (emoji), blanks, long specials.
TRICKY_TEXTS = [
    "A", "Ab", "the", "ation", "日本語", "漢", "a\u0301b", "\u0301", "e\u0301", "नमस्ते", "कि", "ক্ষ",
    "\U0001f600", "😀x", "", " ", BLANK, f"a{BLANK}b", "<pad>", "<unused_123456>", "ﬁ", "Ω", "Привет",
    "ּש", "\u0e01\u0e34", "\u200b", "\t", "\n", "a\nb",
]


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """Multi-threaded OpenBLAS spins badly when the 2 cores are shared (xdist): 10x slower here."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def token_texts(corpus_files: list[Path]) -> list[str]:
    """Real token texts: every printable BMP character up to U+2FFF plus words of the corpus."""
    chars = [chr(code) for code in range(0x20, 0x3000) if chr(code).isprintable()]
    text = corpus_files[0].read_text(encoding="utf-8", errors="replace")
    words = sorted({word for word in re.findall(r"[^\W\d_]{2,5}", text)})[:800]
    return chars + words


@pytest.fixture(scope="module")
def matrix(token_texts: list[str]) -> np.ndarray:
    return glyph_matrix(token_texts, cell=CELL, dim=256, augment=AUGMENT_CELL_32, workers=2, progress=False)


def test_identical_glyphs_share_vectors_and_shapes_decide_distance(token_texts, matrix):
    def cosine(a: str, b: str) -> float:
        return float(matrix[token_texts.index(a)] @ matrix[token_texts.index(b)])

    assert cosine("A", "\u0391") > 0.99  # Greek capital alpha
    assert cosine("A", "\u0410") > 0.99  # Cyrillic capital A
    assert cosine("A", "z") < 0.5
    assert cosine("O", "0") > cosine("O", "x")
    neighbours = [index for index, _ in nearest_tokens(matrix, token_texts.index("A"), 2)]
    assert {token_texts[index] for index in neighbours} == {"\u0391", "\u0410"}


def test_rows_are_unit_norm(matrix):
    assert matrix.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)


def test_deterministic_across_runs_and_worker_counts():
    texts = [chr(code) for code in range(0x21, 0x600)] + TRICKY_TEXTS * 20
    one = glyph_matrix(texts, cell=16, dim=48, augment=AUGMENT_CELL_64, workers=1, progress=False)
    two = glyph_matrix(texts, cell=16, dim=48, augment=AUGMENT_CELL_64, workers=2, progress=False)
    again = glyph_matrix(texts, cell=16, dim=48, augment=AUGMENT_CELL_64, workers=2, progress=False)
    assert one.tobytes() == two.tobytes() == again.tobytes()


def test_bytes_do_not_depend_on_the_blas_thread_count():
    texts = [chr(code) for code in range(0x21, 0xA00)]

    def build() -> bytes:
        return glyph_matrix(texts, cell=CELL, dim=CELL * CELL, augment=AUGMENT_CELL_64, progress=False).tobytes()

    one_thread = build()  # the module runs on one BLAS thread
    with threadpool_limits(limits=2, user_api="blas"):
        assert build() == one_thread


@pytest.mark.parametrize("augment", [None, AUGMENT_CELL_32, AUGMENT_CELL_64])
def test_fast_path_matches_straightforward_rendering(augment):
    texts = TRICKY_TEXTS + [chr(code) for code in range(0x300, 0x370)]  # combining marks
    fast = glyph_bits(texts, cell=CELL, augment=augment, workers=1, progress=False)
    for row, text in zip(fast, texts, strict=True):
        expected = render_bitmap(text, CELL, augment=augment).reshape(-1)[polar_order(CELL)]
        assert np.array_equal(row.astype(bool), expected), repr(text)


def test_rendered_a_looks_like_an_a():
    bitmap = render_bitmap("A", CELL)
    assert bitmap.dtype == bool and bitmap.shape == (CELL, CELL)
    assert 40 < bitmap.sum() < CELL * CELL // 4
    assert np.mean(bitmap != bitmap[:, ::-1]) < 0.02  # symmetric about its vertical axis
    rows = np.flatnonzero(bitmap.any(axis=1))
    apex_width, base_width = (np.ptp(np.flatnonzero(bitmap[row])) for row in (rows[0], rows[-1]))
    assert apex_width < base_width  # narrow at the top, wide at the feet


def test_augmentation_perturbs_easy_texts_and_only_speckles_complex_ones():
    plain = render_bitmap("A", 64)
    augmented = render_bitmap("A", 64, augment=AUGMENT_CELL_64)
    assert 0.01 < np.mean(plain != augmented) < 0.25
    plain = render_bitmap("日", 64)
    augmented = render_bitmap("日", 64, augment=AUGMENT_CELL_64)
    changed = plain != augmented
    assert 0 < changed.sum() <= 20 and not plain[changed].any()  # p = 0.001 of pixels turned black


def test_polar_order_is_a_permutation_from_the_centre_outwards():
    order = polar_order(CELL)
    assert sorted(order.tolist()) == list(range(CELL * CELL))
    assert order[0] == (CELL // 2) * CELL + CELL // 2
    y, x = np.divmod(order, CELL)
    radius = np.hypot(x - CELL / 2, y - CELL / 2)
    assert np.all(np.diff(radius) >= 0)


@pytest.mark.parametrize(
    ("text", "easy"),
    [("Hello", True), ("Ωμέγα", True), ("Привет", True), ("Բարև", True), ("Ñandú", True), ("ǅ", True), ("", True),
     ("日本", False), ("Aअ", False), ("ɐ", False), ("\u0590", False), ("😀", False), ("ﬁ", False)],
)
def test_easy_and_complex_texts(text, easy):
    assert is_easy(text) is easy


def test_dimension_must_fit_the_cell():
    with pytest.raises(PgtError, match="1024"):
        glyph_matrix(["A", "B"], cell=32, dim=1025, augment=None, progress=False)
    with pytest.raises(PgtError):
        glyph_matrix(["A", "B"], cell=32, dim=0, augment=None, progress=False)


def test_missing_font_is_a_one_line_error(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere.otf"
    with pytest.raises(PgtError, match="apt-get install fonts-unifont unifont") as caught:
        render_bitmap("A", CELL, font=missing)
    assert "\n" not in str(caught.value)
    monkeypatch.setenv("PGT_FONT", str(missing))
    with pytest.raises(PgtError, match="PGT_FONT"):
        find_font()
    monkeypatch.setenv("PGT_FONT", str(DEFAULT_FONT))
    assert find_font() == DEFAULT_FONT


def test_unreadable_font_is_a_one_line_error(tmp_path):
    corrupt = tmp_path / "corrupt.otf"
    corrupt.write_text("not a font")
    with pytest.raises(PgtError, match="cannot be read") as caught:
        glyph_bits(["A"], cell=CELL, augment=None, font=corrupt, progress=False)
    assert "\n" not in str(caught.value)


def test_characters_beyond_the_bmp_use_unifont_upper_and_undrawable_ones_stay_blank():
    assert render_bitmap("\U0001f600", CELL).sum() > 40
    bits = glyph_bits([BLANK, "A"], cell=CELL, augment=None, progress=False)
    assert bits[0].sum() == 0 and bits[1].sum() > 0


def test_blank_glyph_gives_a_defined_vector():
    matrix = glyph_matrix([BLANK, "A", "B", "C"], cell=16, dim=3, augment=None, progress=False)
    assert np.isfinite(matrix).all()
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    identical = glyph_matrix([BLANK, BLANK], cell=16, dim=2, augment=None, progress=False)
    assert np.array_equal(identical, np.zeros((2, 2), dtype=np.float32))  # documented: zero, not NaN
