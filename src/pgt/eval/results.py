"""Evaluation results on disk: one typed `EvalRecord` per task and dataset, written atomically.

`MODEL_DIR/eval/<task>--<dataset>.json` (or `--out DIR/<task>--<dataset>.json`): the
dataset's name is part of the file name, so a second dataset (another held-out
language, another file for the same task) never overwrites the first. Every writer
(`runner.py` for the reference protocol, log-likelihood, `mc` and perplexity;
`harness.py` for lm-evaluation-harness) and every reader (`pgt report`, the demo,
the study) goes through `EvalRecord`. `--log-samples` writes `<same name>.samples.jsonl`
beside it: one line per example. docs/evaluation.md lists the fields.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from pgt import __version__
from pgt.corpus.hub import HF_PREFIX, is_hub_spec
from pgt.errors import PgtError
from pgt.io import (
    atomic_file,
    files_sha256,
    output_lock,
    read_json,
    refuse_existing_file,
)
from pgt.records import Record

WEIGHT_PATTERNS = ("*.safetensors",)
RESULTS_DIRNAME = "eval"
SEPARATOR = "--"  # between task and dataset in a results file name
RESULT = "eval result"  # what an existing results file is called when --overwrite is missing
SAMPLES_SUFFIX = ".samples.jsonl"

Kind = Literal["reference", "loglik", "mc", "perplexity", "lm-eval"]


@dataclass
class Summary(Record):
    """A metric over runs: mean, population σ (ddof 0), 95 % half-interval, and each run's value."""

    WHAT: ClassVar[str] = "metric summary"
    mean: float
    std: float | None
    ci95: float | None
    per_run: list[float]


@dataclass
class ModelFingerprint(Record):
    """Which model was measured: its substrate fingerprint and a hash over its weight files."""

    WHAT: ClassVar[str] = "model fingerprint"
    substrate_fingerprint: str | None
    weights_sha256: str | None
    model_type: str | None


@dataclass
class EvalRecord(Record):
    """One evaluation of one model on one task and dataset."""

    WHAT: ClassVar[str] = "evaluation result"
    task: str  # e.g. arc_easy, arc_easy-loglik, opus100:en-ru, mc-NAME, bpb, harness-hellaswag
    dataset: str  # the dataset's short name, part of the file name
    kind: Kind
    metric: str  # the primary metric, summarised in `metrics`
    unit: str
    metrics: Summary
    other_metrics: dict[str, Summary]
    n_examples: int  # examples per run (documents for perplexity)
    runs: int
    runs_identical: bool
    # True only for a reference benchmark scored under the reference protocol at its published
    # size with a sampler the reference may have used: only then may published figures stand beside it.
    comparable_to_published: bool
    protocol: dict[str, Any]  # how the figure was measured (template, decoding, seed, windows, ...)
    data: dict[str, Any]  # source, split, rows
    model_dir: str
    model_fingerprint: ModelFingerprint
    chance: float | None = None  # uniform guessing among the options, percent
    n_truncated_prompts: int = 0
    by_group: dict[str, Summary] = field(default_factory=dict)  # e.g. MMLU per subject
    details: dict[str, Any] = field(default_factory=dict)  # task-specific facts (token counts, raw harness output)
    samples_file: str | None = None  # the --log-samples JSONL beside this file
    created: str = ""
    pgt_version: str = ""

    def value(self, name: str) -> float:
        """The mean of the metric `name` (the primary one or one of `other_metrics`)."""
        return (self.metrics if name == self.metric else self.other_metrics[name]).mean


def model_fingerprint(model_dir: str | os.PathLike) -> ModelFingerprint:
    """Identify a saved model: its substrate fingerprint and a hash over its weight files."""
    model_dir = Path(model_dir)
    config = read_json(model_dir / "config.json", "model config")
    files = sorted(p for pattern in WEIGHT_PATTERNS for p in model_dir.glob(pattern))
    return ModelFingerprint(
        substrate_fingerprint=config.get("substrate_fingerprint"),
        weights_sha256=files_sha256(files) if files else None,
        model_type=config.get("model_type"),
    )


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "data"


def dataset_name(data: str | os.PathLike) -> str:
    """A short name for a dataset: a file's or folder's name without suffix, or the hub id and config."""
    text = str(data)
    if is_hub_spec(text):
        return _safe(text[len(HF_PREFIX) :].replace("/", "-").replace(":", "-"))
    path = Path(text)
    return _safe(path.name.split(".")[0] if path.suffix else path.name)


def results_path(
    model_dir: str | os.PathLike, task: str, dataset: str, out_dir: str | os.PathLike | None = None
) -> Path:
    """`MODEL_DIR/eval/<task>--<dataset>.json` (or `out_dir/...`); characters unsafe in file names become `-`."""
    directory = Path(out_dir) if out_dir is not None else Path(model_dir) / RESULTS_DIRNAME
    return directory / f"{_safe(task)}{SEPARATOR}{_safe(dataset)}.json"


def samples_path(results: str | os.PathLike) -> Path:
    """The --log-samples file beside a results file."""
    results = Path(results)
    return results.with_name(results.name.removesuffix(".json") + SAMPLES_SUFFIX)


def write_results(path: str | os.PathLike, record: EvalRecord, samples: Iterable[dict[str, Any]] | None = None) -> Path:
    """Stamp `record` (in place) with the time and pgt version; write it (and its samples) atomically."""
    path = Path(path)
    record.created = datetime.now(UTC).isoformat(timespec="seconds")
    record.pgt_version = __version__
    if samples is not None:
        target = samples_path(path)
        with atomic_file(target, "w", encoding="utf-8") as handle:
            for sample in samples:
                handle.write(json.dumps(sample, ensure_ascii=False, default=str) + "\n")
        record.samples_file = target.name
    record.save(path)
    return path


def _is_result(path: Path) -> bool:
    try:
        EvalRecord.load(path)
    except PgtError:
        return False
    return True


def refuse_existing_result(path: str | os.PathLike, *, overwrite: bool) -> None:
    """An existing result file is refused; `overwrite` replaces only a file that reads as a result record."""
    refuse_existing_file(path, overwrite=overwrite, what=RESULT, ours=_is_result)


@contextlib.contextmanager
def result_lock(path: str | os.PathLike, *, overwrite: bool) -> Iterator[None]:
    """Hold the result file's lock, checked against an existing result under it, while it is computed and
    written: a second pgt evaluating the same task into the same directory is refused, never replaces it."""
    with output_lock(path):
        refuse_existing_result(path, overwrite=overwrite)
        yield


def read_results(model_dir: str | os.PathLike) -> list[EvalRecord]:
    """Every evaluation result of a model directory, checked, in file-name order."""
    return [EvalRecord.load(path) for path in sorted((Path(model_dir) / RESULTS_DIRNAME).glob("*.json"))]
