"""`build_substrate`: n-grams -> tokenizer -> token texts -> glyph matrix -> substrate directory.

Everything that determines the matrix goes into the fingerprinted `params`: the family,
cell, dim and augmentation, the font files' sha256, the sha256 of the token texts in id
order and the name and sha256 of every n-gram source. Paths do not, so the same inputs
built anywhere give the same fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pgt.errors import PgtError
from pgt.io import file_sha256
from pgt.substrate.layout import BYTE_FALLBACK_COUNT, Family, build_layout, get_family
from pgt.substrate.ngrams import collect_ngrams
from pgt.substrate.tokenizer import build_tokenizer, load_tokenizer, token_texts

ANY_TOKENIZER_FAMILY = "bvv241-nemo"


def _check_request(family: Family, from_tokenizer: object, dim: int, out: Path, overwrite: bool) -> None:
    """Reject a bad request before any expensive work."""
    if out.exists() and not overwrite:
        raise PgtError(f"output directory {out} already exists (choose another --out or pass --overwrite)")
    if from_tokenizer is None and not family.uses_layout:
        raise PgtError(f"family {family.name} keeps another tokenizer's vocabulary: give --from-tokenizer DIR")
    if from_tokenizer is not None and family.uses_layout:
        raise PgtError(
            f"--from-tokenizer keeps that tokenizer's vocabulary; use --family {ANY_TOKENIZER_FAMILY} "
            f"instead of {family.name}"
        )
    if not 1 <= dim <= family.cell**2:
        raise PgtError(
            f"embedding dim {dim} must be between 1 and the {family.cell}x{family.cell} cell's {family.cell**2} bits"
        )


def build_substrate(
    out: str | os.PathLike,
    *,
    family: str,
    ngram_files: Iterable[str | os.PathLike] = (),
    extra_token_files: Iterable[str | os.PathLike] = (),
    corpus: Iterable[str | os.PathLike] = (),
    from_tokenizer: str | os.PathLike | None = None,
    dim: int | None = None,
    font: str | os.PathLike | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Build a substrate directory (tokenizer + frozen glyph embeddings) and return its path.

    A bvv241 family takes its n-grams from any mix of `ngram_files` (the reference's list
    format), `extra_token_files` (one token per line) and `corpus` (files or directories,
    optionally `LANG=PATH`; mined with the reference's rules). `from_tokenizer` instead
    keeps an existing Hugging Face tokenizer's vocabulary (family `bvv241-nemo`). `dim`
    defaults to the family's; `font` to `$PGT_FONT`, then Debian's GNU Unifont. The output
    appears atomically; bad input raises PgtError before anything is written.
    """
    from pgt.substrate.font import find_font, font_chain_paths
    from pgt.substrate.glyphs import glyph_matrix
    from pgt.substrate.store import save_substrate

    preset = get_family(family)
    dim = preset.dim if dim is None else dim
    out = Path(out)
    _check_request(preset, from_tokenizer, dim, out, overwrite)
    fonts = font_chain_paths(find_font(font))

    meta: dict[str, Any] = {"family": preset.name, "cell": preset.cell}
    if from_tokenizer is None:
        ngrams = collect_ngrams(
            preset, ngram_files=ngram_files, extra_token_files=extra_token_files, corpus=corpus
        )
        layout = build_layout(preset, ngrams.strings)
        tokenizer = build_tokenizer(layout)
        texts = list(layout.tokens)
        sources = ngrams.sources
        meta |= {
            "reference_vocab_size": preset.layout_size,
            "byte_fallback_tokens": BYTE_FALLBACK_COUNT,
            "ngrams": len(layout.ngrams),
            "ngrams_dropped": len(layout.dropped),
        }
    else:
        tokenizer = load_tokenizer(from_tokenizer)
        texts = token_texts(tokenizer)
        sources = [{"kind": "tokenizer", "name": Path(from_tokenizer).name}]
        meta["from_tokenizer"] = str(from_tokenizer)

    augment = preset.augment
    params = {
        "family": preset.name,
        "cell": preset.cell,
        "dim": dim,
        "augment": asdict(augment),
        "fonts": [{"name": path.name, "sha256": file_sha256(path)} for path in fonts],
        "token_texts_sha256": hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode()).hexdigest(),
        "sources": sources,
    }
    matrix = glyph_matrix(
        texts, cell=preset.cell, dim=dim, augment=augment, font=fonts[0], workers=workers, progress=progress
    )
    return save_substrate(out, tokenizer, matrix, params, overwrite=overwrite, extra_meta=meta)
