"""Glyph embeddings: rendering, augmentation, polar bit order, PCA, and what the vectors mean."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
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
    render_canvas,
)
from pgt.substrate.layout import FAMILIES, get_family
from pgt.substrate.pca import pca_unit_rows

pytestmark = pytest.mark.xdist_group("substrate-glyphs")  # one worker builds the module's matrix once

CELL = 32
AUGMENT_CELL_32 = get_family("bvv241-2-3").augment  # R, S, p = 4, 2, 0.01
AUGMENT_CELL_64 = get_family("bvv241-abs").augment  # R, S, p = 7, 3, 0.03
UNMAPPED = "\ufffe"  # a noncharacter Unifont does not map: the font's placeholder glyph is drawn
NOTEBOOK_IMAGES = Path(__file__).parent / "data" / "notebook-images"

# Texts that exercise every drawing path: wide CJK, combining marks with negative bearings
# (ink outside its cell), Devanagari clusters, Unifont Upper (emoji), blanks, long specials.
TRICKY_TEXTS = [
    "A",
    "Ab",
    "the",
    "ation",
    "日本語",
    "漢",
    "a\u0301b",
    "\u0301",
    "e\u0301",
    "नमस्ते",
    "कि",
    "ক্ষ",
    "\U0001f600",
    "😀x",
    "",
    " ",
    UNMAPPED,
    f"a{UNMAPPED}b",
    "<pad>",
    "<unused_123456>",
    "ﬁ",
    "Ω",
    "Привет",
    "ּש",
    "\u0e01\u0e34",
    "\u200b",
    "\t",
    "\n",
    "a\nb",
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
    [
        ("Hello", True),
        ("Ωμέγα", True),
        ("Привет", True),
        ("Բարև", True),
        ("Ñandú", True),
        ("ǅ", True),
        ("", True),
        ("日本", False),
        ("Aअ", False),
        ("ɐ", False),
        ("\u0590", False),
        ("😀", False),
        ("ﬁ", False),
    ],
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


def test_unmapped_code_points_draw_the_fonts_placeholder_glyph():
    placeholder = render_bitmap(UNMAPPED, CELL)
    assert placeholder.sum() > 40  # the reference draws what the font renders, not a blank cell
    assert np.array_equal(render_bitmap("\U0001f600", CELL), placeholder)  # beyond unifont.otf: same placeholder
    bits = glyph_bits([" ", "A"], cell=CELL, augment=None, progress=False)
    assert bits[0].sum() == 0 and bits[1].sum() > 0  # a space draws nothing


def test_blank_glyph_gives_a_defined_vector():
    matrix = glyph_matrix([" ", "A", "B", "C"], cell=16, dim=3, augment=None, progress=False)
    assert np.isfinite(matrix).all()
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    identical = glyph_matrix([" ", " "], cell=16, dim=2, augment=None, progress=False)
    assert np.array_equal(identical, np.zeros((2, 2), dtype=np.float32))  # documented: zero, not NaN


@pytest.mark.parametrize("layout_engine", ["basic", "raqm"])
@pytest.mark.parametrize("family", ["bvv241-abs", "bvv241-2-3", "bvv241-max"])
@pytest.mark.parametrize("text", ["A", "BC"])
def test_reference_notebook_images_are_reproduced_pixel_for_pixel(family, text, layout_engine):
    """The reference notebooks' own saved images, after augmentation and after the resize to one cell."""
    preset = get_family(family)
    for stage, render in (("augmented", render_canvas), ("resized", render_bitmap)):
        saved = Image.open(NOTEBOOK_IMAGES / f"{family}-{text}-{stage}.png")
        assert saved.mode == "1"
        expected = ~np.asarray(saved)  # 1-bit PNG: True = white
        ours = render(text, preset.cell, augment=preset.augment, layout_engine=layout_engine)
        assert ours.shape == expected.shape and np.array_equal(ours, expected), (family, text, stage)


def test_reference_rows_do_not_move_when_rows_are_added():
    texts = [chr(code) for code in range(0x21, 0x800)]
    bits = glyph_bits(texts, cell=16, augment=AUGMENT_CELL_64, workers=1, progress=False)
    extra = glyph_bits([f"<0x{value:02X}>" for value in range(256)], cell=16, augment=AUGMENT_CELL_64, progress=False)
    alone = pca_unit_rows(bits, 48)
    with_extra = pca_unit_rows(np.concatenate([bits, extra]), 48, fit_rows=len(bits))
    assert with_extra[: len(bits)].tobytes() == alone.tobytes()
    refitted = pca_unit_rows(np.concatenate([bits, extra]), 48)  # what fitting over the added rows would do
    assert not np.allclose(refitted[: len(bits)], alone, atol=1e-3)


def test_pca_matches_scikit_learn():
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import normalize

    texts = [chr(code) for code in range(0x21, 0x600) if chr(code).isprintable()]
    bits = glyph_bits(texts, cell=16, augment=AUGMENT_CELL_64, workers=1, progress=False)
    dim = 16
    ours = pca_unit_rows(bits, dim)
    theirs = normalize(PCA(n_components=dim, svd_solver="full").fit_transform(bits.astype(np.float32)))
    signs = np.sign(np.sum(ours * theirs, axis=0))  # align each component's sign
    assert np.all(signs != 0)
    np.testing.assert_allclose(ours, theirs * signs, atol=1e-4)


def recipe_bits(text: str, cell: int, augment) -> list[int]:
    """The recipe written out plainly, the reference's way: fresh global seeds, Pillow calls, pixel loops."""
    import math
    import random

    from PIL import ImageDraw, ImageFilter, ImageFont

    font = ImageFont.truetype(str(DEFAULT_FONT), cell, layout_engine=ImageFont.Layout.BASIC)
    random.seed(42)
    np.random.seed(42)
    image = Image.new("L", (cell * max(len(text), 1), cell), 255)
    draw = ImageDraw.Draw(image)
    for i, char in enumerate(text):
        left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
        draw.text(
            (i * cell + (cell - (right - left)) // 2, (cell - (bottom - top)) // 2 - top), char, font=font, fill=0
        )
    easy = all(0 <= ord(c) <= 0x24F or 0x370 <= ord(c) <= 0x58F for c in text)
    rotate, shift, p = (augment.rotate_deg, augment.shift_px, augment.noise_fraction) if easy else (0, 0, 0.001)
    angle = random.uniform(-rotate, rotate)
    dx, dy = random.randint(-shift, shift), random.randint(-shift, shift)
    if easy:
        rotated = image.rotate(angle, expand=False, fillcolor=255)  # Pillow's default resampling
        image = Image.new("L", image.size, 255)
        image.paste(rotated, (dx, dy))
    noise = np.random.rand(image.height, image.width)
    pixels = image.load()
    for y in range(image.height):
        for x in range(image.width):
            if noise[y, x] < p:
                pixels[x, y] = 0
    if easy:
        image = image.filter(ImageFilter.GaussianBlur(augment.blur_radius))
    image = image.point(lambda value: 0 if value < 128 else 255).convert("1")
    if image.width > cell:
        image = image.resize((cell, cell), Image.Resampling.BILINEAR)  # as the reference asks; "1" samples nearest
    pixels = image.load()
    keyed = []
    for y in range(cell):
        for x in range(cell):
            r, theta = math.hypot(x - cell / 2, y - cell / 2), math.atan2(y - cell / 2, x - cell / 2)
            keyed.append((r, theta, x, y, 1 if pixels[x, y] == 0 else 0))
    return [bit for *_, bit in sorted(keyed)]


def layout_sample(layout, count: int, seed: int = 0) -> list[int]:
    """Ids from every range of a layout: characters of many scripts, n-grams of each length, specials, unused."""
    import random

    rng = random.Random(seed)
    tokens = layout.tokens[: layout.family.layout_size]
    groups: dict[str, list[int]] = {}
    for token_id, token in enumerate(tokens):
        if token.startswith("<unused_"):
            key = "unused"
        elif 0xE000 <= token_id < 0xE100:
            key = "special"
        elif len(token) == 1:
            key = f"char-{token_id >> 11}"  # 2,048-id blocks: many scripts
        else:
            key = f"ngram-{min(len(token), 8)}"
        groups.setdefault(key, []).append(token_id)
    per_group = max(1, count // len(groups))
    ids = {i for members in groups.values() for i in rng.sample(members, min(per_group, len(members)))}
    ids |= set(rng.sample(range(len(tokens)), count - len(ids))) if len(ids) < count else set()
    orders = {f"ngram-{n}" for n in layout.family.ngram_orders}
    assert {"unused", "special", *orders} <= set(groups) and len({k for k in groups if k.startswith("char")}) > 20
    return sorted(ids)


@pytest.mark.parametrize(("family", "count"), [("bvv241-abs", 1000), ("bvv241-2-3", 300)])
def test_bits_match_a_plain_reimplementation_of_the_recipe(reference_dir, family, count):
    from pgt.substrate.layout import build_layout
    from pgt.substrate.ngrams import collect_ngrams

    preset = FAMILIES[family]
    lists = "ngrams-2-3-4-5.txt" if family != "bvv241-2-3" else "ngrams-2-3.txt"
    extra = [reference_dir / "ngrams-intersection.txt"] if preset.extra_token_limit else []
    ngrams = collect_ngrams(preset, ngram_files=[reference_dir / lists], extra_token_files=extra)
    layout = build_layout(preset, ngrams.strings)
    texts = [layout.tokens[i] for i in layout_sample(layout, count)]
    assert len(texts) >= count
    ours = glyph_bits(texts, cell=preset.cell, augment=preset.augment, workers=1, progress=False)
    differing = [
        text
        for text, row in zip(texts, ours, strict=True)
        if row.tolist() != recipe_bits(text, preset.cell, preset.augment)
    ]
    assert differing == []
