"""The reference's published benchmark figures (docs/evaluation.md, "Published figures"), in the package.

`pgt report` puts them beside our own scores only where the result is the same
benchmark under the same protocol (`EvalRecord.comparable_to_published`). The five
headline tasks of the `abs-bvv-*` and `best_bvv_*` models are embedded here; a copy
of the reference's own `published-benchmarks.txt`, given explicitly
(`pgt report --published FILE`), is parsed instead and adds σ, the 95 % interval,
the parameter counts and the other model families.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pgt.errors import PgtError

# The reference's task names, in the order of its tables. Scores are percentages.
PUBLISHED_TASKS = ("MMLU", "ARC-e", "ARC-c", "C-SENSE", "SQuAD")

# Our task names (normalised: lower case, letters and digits only) -> the reference's.
_TASK_ALIASES = {
    "mmlu": "MMLU",
    "arce": "ARC-e",
    "arceasy": "ARC-e",
    "arcc": "ARC-c",
    "arcchallenge": "ARC-c",
    "csense": "C-SENSE",
    "commonsenseqa": "C-SENSE",
    "csqa": "C-SENSE",
    "squad": "SQuAD",
    "squadv2": "SQuAD",
}

# The published table (docs/evaluation.md), row by row: MMLU, ARC-e, ARC-c, C-SENSE, SQuAD (mean % over 10 runs).
_EMBEDDED_MEANS = {
    "abs-bvv-1": (18.08, 19.21, 19.83, 19.36, 1.21),
    "abs-bvv-2": (19.43, 21.04, 21.71, 19.66, 0.82),
    "abs-bvv-3": (20.63, 21.81, 24.78, 19.50, 3.75),
    "abs-bvv-4": (21.03, 21.14, 24.78, 19.99, 3.16),
    "abs-bvv-5": (20.33, 20.42, 23.24, 19.80, 2.30),
    "abs-bvv-6": (21.63, 23.42, 25.62, 19.51, 5.55),
    "best_bvv_ru": (22.29, 23.04, 24.62, 20.13, 14.84),
    "best_bvv_unfrozen_ru": (11.37, 20.56, 24.18, 18.79, 13.55),
    "best_bvv_moe": (23.44, 23.74, 25.28, 19.69, 19.73),
}

# Which published model stands beside each of our run kinds (run.json `kind`, or `merged`).
COUNTERPART_OF_KIND = {
    "monolithic": "best_bvv_ru",
    "trainable-embeddings": "best_bvv_unfrozen_ru",
    "merged": "best_bvv_moe",
}

BENCHMARKS_FILE = "published-benchmarks.txt"

# One figure: `abs-bvv-1 MMLU [virology]: 17.41% ± 1.53% (σ=2.46%)` or
# `abs-bvv-1 Total parameters:     1.3B`. The file has lines run together, so match anywhere.
_SCORE = re.compile(
    r"(?P<model>[A-Za-z][\w.-]*) (?P<task>[A-Za-z][\w-]*(?: \[[^\]]+\])?): "
    r"(?P<mean>\d+(?:\.\d+)?)% ± (?P<ci>\d+(?:\.\d+)?)% \(σ=(?P<std>\d+(?:\.\d+)?)%\)"
)
_PARAMS = re.compile(r"(?P<model>[A-Za-z][\w.-]*) Total parameters:\s+(?P<value>\d+(?:\.\d+)?)(?P<unit>[MB])")


@dataclass(frozen=True)
class PublishedScore:
    """One published figure in percent; σ and the 95 % interval where the source gives them."""

    mean: float
    ci95: float | None = None
    std: float | None = None


@dataclass
class PublishedFigures:
    """Published scores per model and task, parameter counts, and where they came from."""

    scores: dict[str, dict[str, PublishedScore]]
    params: dict[str, float]
    source: str

    def score(self, model: str, task: str) -> PublishedScore | None:
        """The figure of `model` on the reference task `task`, or None."""
        return self.scores.get(model, {}).get(task)


def published_task(task: str) -> str | None:
    """The reference's name for our task `task` (e.g. `arc_easy` -> `ARC-e`), or None if it has none."""
    return _TASK_ALIASES.get(re.sub(r"[^a-z0-9]", "", task.lower()))


def growth_counterpart(stage: int) -> str | None:
    """The published grown model with `stage` blocks (`abs-bvv-K`), where one exists."""
    return f"abs-bvv-{stage}" if 1 <= stage <= 6 else None


def embedded_figures() -> PublishedFigures:
    """The published table as shipped with the package (means only)."""
    scores = {
        model: {task: PublishedScore(mean) for task, mean in zip(PUBLISHED_TASKS, means, strict=True)}
        for model, means in _EMBEDDED_MEANS.items()
    }
    return PublishedFigures(scores, {}, "the abs-bvv papers' published figures (embedded in pgt; docs/evaluation.md)")


def parse_published_benchmarks(text: str, source: str = BENCHMARKS_FILE) -> PublishedFigures:
    """Parse the reference's `published-benchmarks.txt` (subject-level MMLU lines are skipped)."""
    scores: dict[str, dict[str, PublishedScore]] = {}
    for match in _SCORE.finditer(text):
        task = match["task"]
        if task.startswith("MMLU ["):
            continue
        task = "SQuAD" if task == "SQUAD" else task
        scores.setdefault(match["model"], {})[task] = PublishedScore(
            float(match["mean"]), float(match["ci"]), float(match["std"])
        )
    params = {
        match["model"]: float(match["value"]) * (1e9 if match["unit"] == "B" else 1e6)
        for match in _PARAMS.finditer(text)
    }
    if not scores:
        raise PgtError(f"{source} holds no published figures in the reference's format")
    return PublishedFigures(scores, params, source)


def load_published(path: str | os.PathLike | None = None) -> PublishedFigures:
    """The reference's figures from a `published-benchmarks.txt` at `path`, else the embedded table."""
    if path is None:
        return embedded_figures()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PgtError(f"cannot read published figures {path}: {exc.strerror}") from None
    return parse_published_benchmarks(text, str(path))


def format_score(score: PublishedScore | None) -> str:
    """`21.63 ± 0.14` (the 95 % interval) or just the mean; `–` where there is no figure."""
    if score is None or math.isnan(score.mean):
        return "–"
    return f"{score.mean:.2f} ± {score.ci95:.2f}" if score.ci95 is not None else f"{score.mean:.2f}"
