"""`build_substrate`: n-grams -> tokenizer -> token texts -> glyph matrix -> substrate directory.

Everything that determines the matrix goes into the fingerprinted `BuildParams`: the
rendering recipe's version, family, cell, dim, augmentation, text layout engine, the font
file's sha256, the sha256 of the token texts in id order, the rows that fit the PCA and
the name and sha256 of every n-gram source. Paths do not, so the same inputs built
anywhere give the same fingerprint.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pgt.corpus.sources import local_inputs
from pgt.errors import PgtError
from pgt.io import (
    check_writable,
    file_sha256,
    output_lock,
    refuse_existing,
    refuse_overlap,
    remove_stale_temporaries,
)
from pgt.substrate.font import check_layout_engine, find_font
from pgt.substrate.glyphs import glyph_matrix
from pgt.substrate.layout import (
    BYTE_FALLBACK_COUNT,
    DEFAULT_LAYOUT_ENGINE,
    Family,
    build_layout,
    get_family,
)
from pgt.substrate.ngrams import collect_ngrams
from pgt.substrate.store import (
    RECIPE_VERSION,
    SUBSTRATE_FILE,
    BuildParams,
    FontRecord,
    Substrate,
    SubstrateMeta,
    save_substrate,
)
from pgt.substrate.tokenizer import (
    build_tokenizer,
    load_tokenizer,
    texts_sha256,
    token_texts,
)

ANY_TOKENIZER_FAMILY = "bvv241-nemo"


def _check_request(family: Family, from_tokenizer: object, dim: int, out: Path, overwrite: bool) -> None:
    """Reject a bad request before any expensive work."""
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
    strict: bool = False,
    from_tokenizer: str | os.PathLike | None = None,
    dim: int | None = None,
    font: str | os.PathLike | None = None,
    layout_engine: str = DEFAULT_LAYOUT_ENGINE,
    visible_blanks: bool = False,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Build a substrate directory (tokenizer + frozen glyph embeddings) and return its path.

        A bvv241 family takes its n-grams from any mix of `ngram_files` (the reference's list
        format), `extra_token_files` (one token per line) and `corpus` (files or directories,
        optionally `LANG=PATH`; mined with the reference's rules; invalid UTF-8 in it is replaced
    with a warning, or with `strict` refused). `from_tokenizer` instead
        keeps an existing Hugging Face tokenizer's vocabulary (family `bvv241-nemo`). `dim`
        defaults to the family's; `font` to `$PGT_FONT`, then Debian's GNU Unifont;
        `layout_engine` is Pillow's text layout engine (`basic` or `raqm`); `visible_blanks` (beyond
        the reference) draws invisible characters visibly and distinctly. The output appears
        atomically; bad input (also an output overlapping an input, or one that cannot be
        written) raises PgtError before the long render.
    """
    preset = get_family(family)
    dim = preset.dim if dim is None else dim
    out = Path(out)
    ngram_files, extra_token_files, corpus = list(ngram_files), list(extra_token_files), list(corpus)
    _check_request(preset, from_tokenizer, dim, out, overwrite)
    check_layout_engine(layout_engine)
    font_path = find_font(font)
    corpus_paths = local_inputs(corpus)
    refuse_overlap(out, [*ngram_files, *extra_token_files, *corpus_paths, from_tokenizer, font_path])
    refuse_existing(out, overwrite=overwrite, marker=SUBSTRATE_FILE)  # after the overlap: the clearer refusal
    check_writable(out.parent)

    with output_lock(out):
        remove_stale_temporaries(out.parent, out.name)  # left by a killed build of this --out
        meta: dict[str, Any] = {}
        if from_tokenizer is None:
            ngrams = collect_ngrams(
                preset, ngram_files=ngram_files, extra_token_files=extra_token_files, corpus=corpus, strict=strict
            )
            layout = build_layout(preset, ngrams.strings)
            tokenizer = build_tokenizer(layout)
            texts = list(layout.tokens)
            sources = ngrams.sources
            fit_rows = preset.layout_size
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
            fit_rows = len(texts)
            meta["from_tokenizer"] = str(from_tokenizer)

        params = BuildParams(
            recipe=RECIPE_VERSION,
            family=preset.name,
            cell=preset.cell,
            dim=dim,
            augment=preset.augment,
            layout_engine=layout_engine,
            font=FontRecord(name=font_path.name, sha256=file_sha256(font_path)),
            token_texts_sha256=texts_sha256(texts),
            pca_fit_rows=fit_rows,
            sources=sources,
            visible_blanks=visible_blanks,
        )
        matrix = glyph_matrix(
            texts,
            cell=preset.cell,
            dim=dim,
            augment=preset.augment,
            font=font_path,
            layout_engine=layout_engine,
            visible_blanks=visible_blanks,
            fit_rows=fit_rows,
            workers=workers,
            progress=progress,
        )
        return save_substrate(out, tokenizer, matrix, params, overwrite=overwrite, extra_meta=meta)


def check_rebuilt(source_dir: str | os.PathLike, rebuilt_dir: str | os.PathLike, *, visible_blanks: bool) -> None:
    """Refuse `rebuilt_dir` unless it is what `rebuild_substrate(source_dir, visible_blanks=…)` writes: the same
    tokenizer, token texts, font, cell, augmentation, layout engine and PCA rows, only that option as given."""
    source, rebuilt = (SubstrateMeta.load(Path(d) / SUBSTRATE_FILE) for d in (source_dir, rebuilt_dir))
    twin = replace(source.params, visible_blanks=visible_blanks)
    if rebuilt.params != twin or rebuilt.vocab_size != source.vocab_size or rebuilt.parent_fingerprint is not None:
        raise PgtError(
            f"{rebuilt_dir} is not {source_dir} built again with visible_blanks={visible_blanks} (`pgt substrate "
            "build` with the same inputs and options, --visible-blanks as said)"
        )


def rebuild_substrate(
    source_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    visible_blanks: bool,
    font: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """The substrate at `source_dir` rendered again with `visible_blanks` set as given: the same tokenizer,
    token texts, font, cell, augmentation, layout engine and PCA rows, so only that option differs (the
    `pgt study` twin of a substrate). A trimmed or trained substrate is refused: rebuild its full parent."""
    out = Path(out)
    refuse_existing(out, overwrite=False)
    source = Substrate.load(source_dir)
    meta = source.meta
    if meta.parent_fingerprint is not None or meta.derived_from is not None or meta.embedding_trained:
        raise PgtError(f"{source_dir} is not a built substrate (trimmed, derived or trained): rebuild its full parent")
    tokenizer = source.tokenizer
    ids = list(range(len(tokenizer)))
    texts = token_texts(tokenizer) if meta.from_tokenizer else tokenizer.convert_ids_to_tokens(ids)
    if texts_sha256(texts) != meta.params.token_texts_sha256:
        raise PgtError(f"{source_dir}: its tokenizer does not give back the token texts it was rendered from")
    font_path = find_font(font)
    if file_sha256(font_path) != meta.params.font.sha256:
        raise PgtError(f"font {font_path} is not the one {source_dir} was built with ({meta.params.font.name})")
    with output_lock(out):
        matrix = glyph_matrix(
            texts,
            cell=meta.cell,
            dim=meta.dim,
            augment=meta.augment,
            font=font_path,
            layout_engine=meta.layout_engine,
            visible_blanks=visible_blanks,
            fit_rows=meta.params.pca_fit_rows,
            workers=workers,
            progress=progress,
        )
        params = replace(meta.params, visible_blanks=visible_blanks)
        kept = ("reference_vocab_size", "byte_fallback_tokens", "ngrams", "ngrams_dropped", "from_tokenizer")
        return save_substrate(out, tokenizer, matrix, params, extra_meta={k: getattr(meta, k) for k in kept})
