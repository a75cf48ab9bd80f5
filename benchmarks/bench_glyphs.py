"""Glyph rendering speed: pgt against the reference's per-token method, side by side in one run.

The reference renders every token from scratch with Pillow and builds its bit vector with
Python loops over the pixels (it measured 6.4 ms per token for rendering alone). Both
methods run here on the same sample of the family's real token texts; the script checks
that their bits agree, and prints the per-token times, their ratio and the projected
full-vocabulary times.

    .venv/bin/python benchmarks/bench_glyphs.py                    # bvv241-abs, 3,000 tokens
    .venv/bin/python benchmarks/bench_glyphs.py --family bvv241-2-3 --sample 1000

The whole build (rendering + PCA + tokenizer) is measured with the command itself:

    /usr/bin/time -v pgt substrate build --family bvv241-abs --ngrams ngrams-2-3-4-5.txt \\
        --extra-tokens ngrams-intersection.txt --out /tmp/abs
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from pgt.options import available_cpus
from pgt.substrate.font import DEFAULT_FONT
from pgt.substrate.glyphs import COMPLEX_NOISE_FRACTION, glyph_bits, is_easy
from pgt.substrate.layout import (
    FAMILIES,
    AugmentParams,
    Family,
    build_layout,
    get_family,
)
from pgt.substrate.ngrams import collect_ngrams

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def family_texts(family: Family, reference: Path) -> list[str]:
    """The family's token texts in id order, laid out from the reference's published lists."""
    lists = reference / f"ngrams-{'-'.join(map(str, family.ngram_orders))}.txt"
    extra = [reference / "ngrams-intersection.txt"] if family.extra_token_limit else []
    ngrams = collect_ngrams(family, ngram_files=[lists], extra_token_files=extra)
    return list(build_layout(family, ngrams.strings).tokens)


def reference_token_bits(text: str, font: ImageFont.FreeTypeFont, cell: int, augment: AugmentParams) -> list[int]:
    """One token the reference's way: reseeded global generators, a fresh canvas, pixel loops for the bits."""
    random.seed(42)
    np.random.seed(42)
    image = Image.new("L", (cell * max(len(text), 1), cell), 255)
    draw = ImageDraw.Draw(image)
    for index, char in enumerate(text):
        left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
        x = index * cell + (cell - (right - left)) // 2
        draw.text((x, (cell - (bottom - top)) // 2 - top), char, font=font, fill=0)
    easy = is_easy(text)
    rotate, shift = (augment.rotate_deg, augment.shift_px) if easy else (0, 0)
    angle = random.uniform(-rotate, rotate)
    dx, dy = random.randint(-shift, shift), random.randint(-shift, shift)
    if easy:
        rotated = image.rotate(angle, expand=False, fillcolor=255)
        image = Image.new("L", image.size, 255)
        image.paste(rotated, (dx, dy))
    pixels = np.array(image)
    pixels[np.random.rand(*pixels.shape) < (augment.noise_fraction if easy else COMPLEX_NOISE_FRACTION)] = 0
    image = Image.fromarray(pixels)
    if easy:
        image = image.filter(ImageFilter.GaussianBlur(augment.blur_radius))
    image = image.point(lambda value: 0 if value < 128 else 255).convert("1")
    if image.width > cell:
        image = image.resize((cell, cell), Image.Resampling.BILINEAR)
    access = image.load()
    points = []
    for y in range(cell):
        for x in range(cell):
            dx_c, dy_c = x - cell / 2, y - cell / 2
            points.append((math.hypot(dx_c, dy_c), math.atan2(dy_c, dx_c), x, y, 1 if access[x, y] == 0 else 0))
    points.sort()
    return [bit for *_, bit in points]


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="bvv241-abs", choices=[n for n, f in FAMILIES.items() if f.uses_layout])
    parser.add_argument("--sample", type=int, default=3000, help="tokens timed with both methods")
    parser.add_argument("--workers", type=int, default=available_cpus(), help="processes for pgt (default: all CPUs)")
    parser.add_argument("--reference", type=Path, default=REFERENCE, help="directory of the reference's n-gram lists")
    args = parser.parse_args()

    family = get_family(args.family)
    texts = family_texts(family, args.reference)
    cell, augment = family.cell, family.augment
    sample = random.Random(0).sample(texts, min(args.sample, len(texts)))
    font = ImageFont.truetype(str(DEFAULT_FONT), cell, layout_engine=ImageFont.Layout.BASIC)
    print(f"{args.family}: {len(texts):,} tokens, cell {cell}, sample {len(sample):,}, workers {args.workers}")

    reference, reference_s = timed(lambda: [reference_token_bits(text, font, cell, augment) for text in sample])
    ours_1, ours_1_s = timed(glyph_bits, sample, cell=cell, augment=augment, workers=1, progress=False)
    ours_n, ours_n_s = timed(glyph_bits, sample, cell=cell, augment=augment, workers=args.workers, progress=False)
    reference_bits = np.asarray(reference, dtype=np.uint8)
    differing = int((reference_bits != ours_1).any(axis=1).sum())
    print(
        f"tokens whose bits differ, reference vs pgt: {differing} of {len(sample):,}; "
        f"pgt 1 vs {args.workers} workers identical: {np.array_equal(ours_1, ours_n)}"
    )

    per_token = {
        "reference, 1 process": reference_s / len(sample),
        "pgt, 1 process": ours_1_s / len(sample),
        f"pgt, {args.workers} processes": ours_n_s / len(sample),
    }
    print(f"{'rendering':<24}{'ms/token':>10}{'vs reference':>14}{'full vocab':>12}")
    for name, seconds in per_token.items():
        speedup = per_token["reference, 1 process"] / seconds
        print(f"{name:<24}{seconds * 1e3:>10.3f}{speedup:>13.1f}x{seconds * len(texts) / 60:>10.1f} min")


if __name__ == "__main__":
    main()
