"""Scores of one model on the study's held-out text: exact bits per byte and cloze accuracy per language.

Bits per byte are pgt's one figure (pgt.growth.validation, as in the trainer's log and
`pgt eval`): every token of every whole held-out document predicted once; cloze options are scored by the
evaluation layer's log-likelihood of each continuation, normalised by its UTF-8 bytes (the
options differ in length). This module only assembles them: no scoring code of its own.
The result is saved as MODEL_DIR/study/<scoring id>.json (beside, not among, `pgt eval`'s
results), so a model scored on other held-out text keeps both files, and a rerun reuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pgt.records import Record
from pgt.study import adapter
from pgt.study.cloze import ClozeItem, build_cloze
from pgt.study.corpus import StudyCorpus

SCORES_DIR = "study"


@dataclass
class ModelScore(Record):
    """MODEL_DIR/study/<scoring id>.json."""

    WHAT = "study score"
    model: str
    scoring_id: str
    bits_per_byte: dict[str, float]  # language -> held-out bits per UTF-8 byte
    heldout_bytes: dict[str, int]
    cloze_accuracy: dict[str, float]  # language -> fraction correct
    cloze_items: dict[str, int]
    validation_bits_per_byte: dict[str, float]  # on the validation documents: chooses between models


def score_path(model_dir: Path, corpus: StudyCorpus) -> Path:
    return model_dir / SCORES_DIR / f"{corpus.scoring_id}.json"


def cloze_items(corpus: StudyCorpus, count: int) -> dict[str, list[ClozeItem]]:
    """Each language's cloze items (the same for every model: seeded by nothing but the text)."""
    return {split.language: build_cloze(split.heldout, count, seed=0) for split in corpus.languages}


def cloze_accuracy(model, tokenizer, items: list[ClozeItem]) -> float:
    """Fraction of items whose true option has the highest log-likelihood per byte."""
    requests = [(item.prompt, option) for item in items for option in item.options]
    scores = adapter.option_logprobs(model, tokenizer, requests)
    correct, at = 0, 0
    for item in items:
        per_byte = [logprob / max(1, n_bytes) for logprob, n_bytes in scores[at : at + len(item.options)]]
        at += len(item.options)
        correct += max(range(len(per_byte)), key=per_byte.__getitem__) == item.answer
    return correct / len(items)


def score_model(model_dir: Path, corpus: StudyCorpus, items: dict[str, list[ClozeItem]], device: str) -> ModelScore:
    """Score `model_dir` (or reuse its saved score on the same held-out text)."""
    path = score_path(model_dir, corpus)
    if path.is_file():
        return ModelScore.load(path)
    model, tokenizer = adapter.load(model_dir, device)
    bpb, n_bytes, cloze, n_items, validation = {}, {}, {}, {}, {}
    for split in corpus.languages:
        heldout = adapter.heldout_score(model, tokenizer, split.heldout)
        bpb[split.language], n_bytes[split.language] = heldout.bits_per_byte, heldout.n_bytes
        validation[split.language] = adapter.heldout_score(model, tokenizer, split.validation).bits_per_byte
        language_items = items[split.language]
        n_items[split.language] = len(language_items)
        if language_items:
            cloze[split.language] = cloze_accuracy(model, tokenizer, language_items)
    score = ModelScore(str(model_dir), corpus.scoring_id, bpb, n_bytes, cloze, n_items, validation)
    score.save(path)
    return score
