"""The study's only door into the rest of pgt: every call into the layers below goes through here.

The study orchestrates; these few functions build, train, merge, tune and score. When a
layer's public API changes (a trimmed substrate, exact validation bits per byte, typed
evaluation records), re-point the function here and nothing else in `pgt.study` changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgt.compose.merge import merge_experts
from pgt.compose.tune import TUNE_FILE, TuneConfig, TuneRecord, tune_merged
from pgt.corpus.fortunes import DEFAULT_LANGUAGES, default_corpus_files
from pgt.corpus.sources import resolve_sources
from pgt.data.loader import TokenData
from pgt.data.manifest import is_token_data
from pgt.data.prepare import prepare_token_data
from pgt.eval.loglik import continuation_logprobs
from pgt.eval.perplexity import score_texts
from pgt.growth import GrowthConfig
from pgt.growth import grow as run_growth
from pgt.growth.metrics import read_metrics as read_run_metrics
from pgt.growth.records import STAGE_FILE, StageRecord
from pgt.growth.run_layout import stage_dirs as run_stage_dirs
from pgt.growth.validation import compressed_bits_per_byte
from pgt.model import load_model
from pgt.options import available_cpus, resolve_device
from pgt.records import Record
from pgt.substrate.build import check_rebuilt, rebuild_substrate
from pgt.substrate.health import SubstrateHealth, inspect_substrate, random_unit_matrix
from pgt.substrate.prepared import ensure_trimmed
from pgt.substrate.store import (
    SUBSTRATE_FILE,
    Substrate,
    SubstrateMeta,
    is_substrate,
    save_substrate,
)
from pgt.substrate.trim import load_trim_record

# ---------------------------------------------------------------- substrate and data


def default_corpus(language: str) -> list[str]:
    """The embedded fortune files of one language."""
    return [str(p) for p in default_corpus_files((language,))]


def default_languages() -> list[str]:
    return list(DEFAULT_LANGUAGES)


def documents(sources: list[str]) -> Iterator[str]:
    """The non-empty documents of `sources`, stripped, read by pgt's one corpus reader (as `pgt data prepare`)."""
    for source in resolve_sources(sources):
        for document in source.documents():
            if document.strip():
                yield document.strip()


def build_substrate(
    out: Path,
    full: Path,
    ngram_corpus: list[str],
    train_corpus: list[str],
    dim: int,
    progress: bool,
    *,
    recentre: bool = False,
) -> Path:
    """A substrate of all arms: `full` trimmed to the study's training text, in `out`.

    A missing `full` is built first (bvv241-2-3, n-grams mined from `ngram_corpus`); a `full`
    that is already trimmed (`pgt substrate trim`) is returned as is. The trim keeps exactly the
    ids the training text encodes to (docs/trimming.md), `recentre`d if asked: the output head
    shrinks from 65,792 rows to a few thousand, and held-out text the training text lacks falls
    back to byte tokens, losslessly, so no held-out document shapes the vocabulary either.
    """
    return ensure_trimmed(
        out, full, ngram_corpus=ngram_corpus, train_corpus=train_corpus, dim=dim, progress=progress, recentre=recentre
    )


def visible_twin(full: Path, out: Path, progress: bool, given: Path | None = None) -> Path:
    """`full` rendered again with invisible characters drawn visibly (the same tokenizer and recipe otherwise):
    `given` once checked to be exactly that, else rendered into `out` (and reused from there)."""
    if given is not None:
        check_rebuilt(full, given, visible_blanks=True)
        return given
    if not is_substrate(out):
        rebuild_substrate(full, out, visible_blanks=True, progress=progress)
    return out


@dataclass
class SubstrateLineage(Record):
    """Which substrate the arms stand on and which full-vocabulary substrate it was trimmed from."""

    WHAT = "study substrate"
    path: str
    fingerprint: str
    vocab_size: int
    dim: int
    parent_fingerprint: str | None  # None: a full substrate (not trimmed)
    parent_vocab_size: int | None

    def describe(self) -> str:
        where = (
            f"trimmed from the full-vocabulary substrate `{self.parent_fingerprint}` ({self.parent_vocab_size:,} ids)"
            if self.parent_fingerprint
            else "a full substrate (not trimmed)"
        )
        return f"`{self.fingerprint}`, {self.vocab_size:,} ids at d = {self.dim}, {where}"


def substrate_lineage(substrate: Path) -> SubstrateLineage:
    meta = SubstrateMeta.load(substrate / SUBSTRATE_FILE)
    trim = load_trim_record(substrate)
    return SubstrateLineage(
        str(substrate),
        meta.fingerprint,
        meta.vocab_size,
        meta.dim,
        meta.parent_fingerprint,
        trim.parent_vocab_size if trim else None,
    )


def control_substrate(glyph: Path, out: Path, control: str, seed: int) -> Path:
    """A control on the glyph substrate's tokenizer: `random` unit rows of its shape, or its rows `shuffled`
    across ids (the same multiset of rows, so the same geometry, with no visual content behind each id)."""
    import dataclasses

    import numpy as np

    if is_substrate(out):
        return out
    source = Substrate.load(glyph)
    rows = source.embeddings.numpy()
    if control == "random":
        matrix = random_unit_matrix(rows.shape, seed)
    else:
        matrix = rows[np.random.default_rng(seed).permutation(len(rows))]
    # Recorded among the sources, so the fingerprint says this is not the glyph matrix.
    params = dataclasses.replace(
        source.meta.params, sources=[*source.meta.params.sources, {"control": CONTROLS[control], "seed": seed}]
    )
    return save_substrate(out, source.tokenizer, matrix, params, extra_meta={"derived_from": source.fingerprint})


CONTROLS = {"random": "random unit rows", "shuffled": "glyph rows shuffled across ids"}


def substrate_health(substrate: Path, data: Path, out: Path) -> Any:
    """`pgt substrate inspect SUBSTRATE --data DATA` (a SubstrateHealth), saved at `out` and reused."""
    if out.is_file():
        return SubstrateHealth.load(out)
    health = inspect_substrate(substrate, TokenData(data))
    out.parent.mkdir(parents=True, exist_ok=True)
    health.save(out)
    return health


VALIDATION_BYTES = 60_000  # the data's validation split: the learning-rate sweeps are decided on it


def prepare_data(sources: list[str], substrate: Path, out: Path, progress: bool) -> Path:
    """Token data of `sources` (JSONL files) for `substrate`; an existing directory is reused."""
    if not is_token_data(out):
        prepare_token_data(
            sources, substrate, out, workers=min(2, available_cpus()), min_val_bytes=VALIDATION_BYTES, progress=progress
        )
    return out


# ---------------------------------------------------------------- training, merging, tuning


def grow(settings: dict[str, Any]) -> Path:
    """`pgt grow` with these GrowthConfig fields; resumes or recognises a finished run."""
    return run_growth(GrowthConfig(**settings))


def stage_dirs(run_dir: Path) -> list[Path]:
    return run_stage_dirs(run_dir)


def stage_record(stage_dir: Path) -> Any:
    """The stage's StageRecord: its tokens, validation loss on the training data's validation split, parameters."""
    return StageRecord.load(stage_dir / STAGE_FILE)


def tune_record(out: Path) -> Any:
    return TuneRecord.load(out / TUNE_FILE)


def read_metrics(run_dir: Path) -> list[Any]:
    return read_run_metrics(run_dir)


def merge(experts: list[Path], out: Path, mode: str, seed: int) -> Path:
    """`pgt merge` (equal weights; an adapter drawn from `seed`); an existing merge is reused."""
    if not (out / "config.json").is_file():
        merge_experts([str(e) for e in experts], out, mode=mode, seed=seed)
    return out


def tune(merged: Path, data: Path, out: Path, **settings: Any) -> Any:
    """`pgt tune`; a finished tuning is reused. Returns its TuneRecord."""
    if (out / TUNE_FILE).is_file():
        return TuneRecord.load(out / TUNE_FILE)
    return tune_merged(merged, data, out, TuneConfig(**settings))


# ---------------------------------------------------------------- scoring


def load(model_dir: Path, device: str) -> tuple[Any, Any]:
    return load_model(model_dir, device=resolve_device(device))


def heldout_score(model: Any, tokenizer: Any, texts: list[str]) -> Any:
    """The exact held-out score of `texts` (a TextScore): the bits per byte of `pgt eval` and the trainer's log."""
    return score_texts(model, tokenizer, texts)


def compressors(texts: list[str]) -> dict[str, float]:
    """`bzip2 -9` and `xz -9e` bits per byte of `texts` concatenated, as beside every held-out score."""
    return compressed_bits_per_byte("".join(texts).encode("utf-8"))


def option_logprobs(model: Any, tokenizer: Any, requests: list[tuple[str, str]]) -> list[tuple[float, int]]:
    """(log-probability, UTF-8 bytes) of each (prompt, continuation)."""
    scores, _ = continuation_logprobs(model, tokenizer, requests)
    return [
        (s.logprob, len(continuation.encode("utf-8"))) for s, (_, continuation) in zip(scores, requests, strict=True)
    ]
