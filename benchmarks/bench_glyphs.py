"""Glyph rendering speed: pgt against the reference's per-token method, side by side in one run.

The reference renders every token from scratch and builds its bit vector with Python loops
over the pixels (it measured 6.4 ms per token for rendering alone). Both methods run here on
the same sample of real token texts; the script checks that they produce the same bits,
prints the per-token times, their ratio and the projected full-vocabulary times, and with
`--full` builds the whole matrix (rendering + PCA) and reports its wall time and peak memory.

    .venv/bin/python benchmarks/bench_glyphs.py                       # bvv241-abs, 3,000 tokens
    .venv/bin/python benchmarks/bench_glyphs.py --sample 1000 --full  # plus the full build
"""

from __future__ import annotations

import argparse
import math
import os
import random
import resource
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pgt.substrate.font import FontChain, find_font
from pgt.substrate.glyphs import (
    COMPLEX_NOISE_FRACTION,
    AugmentParams,
    glyph_bits,
    glyph_matrix,
    is_easy,
)
from pgt.substrate.layout import FAMILIES, Family, build_layout, get_family
from pgt.substrate.ngrams import collect_ngrams

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def family_texts(family: Family) -> list[str]:
    """The family's token texts in id order, laid out from the reference's published lists."""
    lists = REFERENCE / f"ngrams-{'-'.join(map(str, family.ngram_orders))}.txt"
    extra = [REFERENCE / "ngrams-intersection.txt"] if family.extra_token_limit else []
    ngrams = collect_ngrams(family, ngram_files=[lists], extra_token_files=extra)
    return list(build_layout(family, ngrams.strings).tokens)


def reference_token_bits(text: str, fonts: FontChain, augment: AugmentParams) -> list[int]:
    """One token the reference's way: a fresh canvas, PIL augmentation, pixel loops for the bits."""
    cell = fonts.cell
    random.seed(42)
    np.random.seed(42)
    image = Image.new("L", (cell * max(len(text), 1), cell), 255)
    draw = ImageDraw.Draw(image)
    for index, char in enumerate(text):
        font = fonts.font_for(char)
        if font is None:
            continue
        left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
        x = index * cell + (cell - (right - left)) // 2
        draw.text((x, (cell - (bottom - top)) // 2 - top), char, font=font, fill=0)
    easy = is_easy(text)
    if easy:
        angle = random.uniform(-augment.rotate_deg, augment.rotate_deg)
        image = image.rotate(angle, resample=Image.Resampling.BILINEAR, expand=False, fillcolor=255)
        dx = random.randint(-augment.shift_px, augment.shift_px)
        dy = random.randint(-augment.shift_px, augment.shift_px)
        image = image.transform(image.size, Image.Transform.AFFINE, (1, 0, -dx, 0, 1, -dy), fillcolor=255)
    pixels = np.array(image)
    pixels[np.random.rand(*pixels.shape) < (augment.noise_fraction if easy else COMPLEX_NOISE_FRACTION)] = 0
    image = Image.fromarray(pixels)
    if easy:
        image = image.filter(ImageFilter.GaussianBlur(augment.blur_radius))
    image = Image.frombytes("L", image.size, bytes(0 if value < 128 else 255 for value in image.tobytes()))
    if image.width > cell:
        image = image.resize((cell, cell), Image.Resampling.BILINEAR)
    access = image.load()
    points = []
    for y in range(cell):
        for x in range(cell):
            dx_c, dy_c = x - cell / 2, y - cell / 2
            points.append((math.hypot(dx_c, dy_c), math.atan2(dy_c, dx_c), x, y, 1 if access[x, y] < 128 else 0))
    points.sort()
    return [bit for *_, bit in points]


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def peak_rss_gib() -> tuple[float, float]:
    """Peak resident memory of this process and of its largest worker, in GiB."""
    to_gib = 1024**2  # ru_maxrss is in KiB on Linux
    return (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / to_gib,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / to_gib,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="bvv241-abs", choices=[name for name, family in FAMILIES.items() if family.uses_layout])
    parser.add_argument("--sample", type=int, default=3000, help="tokens timed with both methods")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes for pgt (default: all CPUs)")
    parser.add_argument("--full", action="store_true", help="also build the full matrix (rendering + PCA)")
    args = parser.parse_args()

    family = get_family(args.family)
    texts = family_texts(family)
    cell, augment = family.cell, family.augment
    sample = random.Random(0).sample(texts, min(args.sample, len(texts)))
    fonts = FontChain(find_font(), cell)
    print(f"{args.family}: {len(texts):,} tokens, cell {cell}, sample {len(sample):,}, workers {args.workers}")

    reference, reference_s = timed(lambda: [reference_token_bits(text, fonts, augment) for text in sample])
    ours_1, ours_1_s = timed(glyph_bits, sample, cell=cell, augment=augment, workers=1, progress=False)
    ours_n, ours_n_s = timed(glyph_bits, sample, cell=cell, augment=augment, workers=args.workers, progress=False)
    same = np.array_equal(np.asarray(reference, dtype=np.uint8), ours_1) and np.array_equal(ours_1, ours_n)
    print(f"identical bits (reference vs pgt, 1 vs {args.workers} workers): {same}")

    per_token = {
        "reference, 1 process": reference_s / len(sample),
        "pgt, 1 process": ours_1_s / len(sample),
        f"pgt, {args.workers} processes": ours_n_s / len(sample),
    }
    print(f"{'rendering':<24}{'ms/token':>10}{'speed-up':>10}{'full vocab':>12}")
    for name, seconds in per_token.items():
        speedup = per_token["reference, 1 process"] / seconds
        print(f"{name:<24}{seconds * 1e3:>10.3f}{speedup:>9.1f}x{seconds * len(texts) / 60:>10.1f} min")

    if args.full:
        matrix, full_s = timed(
            glyph_matrix, texts, cell=cell, dim=family.dim, augment=augment, workers=args.workers
        )
        main_gib, worker_gib = peak_rss_gib()
        print(
            f"full build {matrix.shape[0]:,} x {matrix.shape[1]:,}: {full_s / 60:.2f} min, "
            f"peak RSS {main_gib:.2f} GiB (main) + {worker_gib:.2f} GiB (largest worker)"
        )


if __name__ == "__main__":
    main()
