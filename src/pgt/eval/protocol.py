"""The reference protocol (DESIGN.md §7): greedy answers, their scoring, and statistics over runs.

What a run is. The reference reports the mean of 10 runs with σ and a 95 %
interval, but greedy decoding is deterministic, so repeated runs over the same
examples are identical. Here run `r` evaluates a random subset of `limit`
examples drawn without replacement with seed `seed + r`; the runs therefore
measure how much the score depends on which questions are asked. Without a
limit (or with one at least the number of examples) every run is the whole
split: the score is computed once, repeated per run, σ is 0, and the results
say `runs_identical: true`.

Log-likelihood mode scores each option of a multiple-choice question as a
continuation of the same prompt and picks the most probable one, so a model
can never answer outside the options (the reason letter scoring falls below
chance).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pgt.errors import PgtError
from pgt.eval.generation import greedy_continuations
from pgt.eval.loglik import continuation_logprobs
from pgt.eval.tasks import Example, Task

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Mode = Literal["generate", "loglik"]
Z_95 = 1.96
N_SAMPLES = 3  # continuations kept in the results to show what the model answered


def first_answer_char(continuation: str) -> str:
    """The reference's answer: the first non-space character of the continuation, upper-cased."""
    stripped = continuation.lstrip()
    return stripped[:1].upper()


def is_correct(task: Task, example: Example, continuation: str) -> bool:
    """Whether a continuation answers the example (letter / True-False / substring scoring)."""
    if task.scoring == "first_char":
        return first_answer_char(continuation) == example.target.upper()
    if task.scoring == "substring":
        return example.target.upper() in continuation.upper()
    raise PgtError(f"task {task.name} is scored over the whole corpus ({task.scoring}), not per example")


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu corpus BLEU of upper-cased hypotheses against one upper-cased reference each."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu([h.upper() for h in hypotheses], [[r.upper() for r in references]]).score)


def summarize(per_run: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation σ and the 95 % half-interval 1.96·σ/√runs of per-run scores."""
    runs = len(per_run)
    if runs == 0:
        raise PgtError("no runs to summarize")
    mean = sum(per_run) / runs
    std = math.sqrt(sum((x - mean) ** 2 for x in per_run) / (runs - 1)) if runs > 1 else 0.0
    return {"mean": mean, "std": std, "ci95": Z_95 * std / math.sqrt(runs), "per_run": list(per_run)}


def run_subsets(n_examples: int, runs: int, limit: int | None, seed: int) -> tuple[list[list[int]], bool]:
    """The example indices of each run, and whether all runs are the same (the whole split)."""
    import numpy as np

    if runs < 1:
        raise PgtError(f"--runs must be at least 1, got {runs}")
    if limit is not None and limit < 1:
        raise PgtError(f"--limit must be at least 1, got {limit}")
    if limit is None or limit >= n_examples:
        return [list(range(n_examples))] * runs, True
    subsets = [
        sorted(np.random.default_rng(seed + run).choice(n_examples, limit, replace=False).tolist())
        for run in range(runs)
    ]
    return subsets, False


@dataclass
class TaskOutcome:
    """What one task evaluation measured, ready to be written as results JSON."""

    metrics: dict[str, dict[str, Any]]
    primary_metric: str
    n_examples: int  # examples per run
    n_evaluated: int  # distinct examples scored over all runs
    runs_identical: bool
    n_truncated: int
    extra: dict[str, Any] = field(default_factory=dict)


def _per_run(subsets: list[list[int]], correct: dict[int, bool]) -> list[float]:
    return [100.0 * sum(correct[i] for i in subset) / len(subset) for subset in subsets]


def accuracy_by_group(examples: Sequence[Example], correct: dict[int, bool]) -> dict[str, float]:
    """Accuracy in percent per example group (MMLU subject) over every scored example; {} without groups."""
    groups: dict[str, list[bool]] = {}
    for i, right in correct.items():
        if examples[i].group is not None:
            groups.setdefault(examples[i].group, []).append(right)
    return {group: 100.0 * sum(values) / len(values) for group, values in sorted(groups.items())}


def evaluate_generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    examples: Sequence[Example],
    subsets: list[list[int]],
    batch_size: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], int]:
    """Greedy continuations scored as the reference does: metrics, extra facts, truncated prompts."""
    needed = sorted(set().union(*subsets))
    out = greedy_continuations(
        model, tokenizer, [examples[i].prompt for i in needed], [examples[i].new_tokens for i in needed], batch_size
    )
    continuation = dict(zip(needed, out.texts, strict=True))
    extra: dict[str, Any] = {
        "n_new_tokens_capped": out.n_capped,
        "samples": [
            {"prompt_end": examples[i].prompt[-80:], "continuation": continuation[i], "target": examples[i].target}
            for i in needed[:N_SAMPLES]
        ],
    }
    if task.scoring == "bleu":
        per_run = [
            corpus_bleu([continuation[i].strip() for i in subset], [examples[i].target for i in subset])
            for subset in subsets
        ]
        return {task.metric: summarize(per_run)}, extra, out.n_truncated
    correct = {i: is_correct(task, examples[i], continuation[i]) for i in needed}
    metrics = {task.metric: summarize(_per_run(subsets, correct))}
    if groups := accuracy_by_group(examples, correct):
        extra["accuracy_by_group"] = groups
    if task.scoring == "first_char" and examples[needed[0]].options:
        # Answers outside the option labels count as wrong: this is why letter scoring can fall below chance.
        valid = {i: first_answer_char(continuation[i]) in {label for label, _ in examples[i].options} for i in needed}
        metrics["valid_answer_rate"] = summarize(_per_run(subsets, valid))
    return metrics, extra, out.n_truncated


def option_continuations(task: Task, example: Example) -> dict[str, list[str]]:
    """The continuations log-likelihood mode scores, per variant: `" A"`-style labels and option texts.

    True/False questions have only the words `" True"` and `" False"`.
    """
    texts = [f" {text}" for _, text in example.options]
    if task.loglik_options == "boolean":
        return {"text": texts}
    return {"label": [f" {label}" for label, _ in example.options], "text": texts}


def evaluate_loglik(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    examples: Sequence[Example],
    subsets: list[list[int]],
    batch_size: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], int]:
    """Pick the most probable option by its label (`accuracy`), its text, and its text per byte."""
    if task.loglik_options == "none":
        raise PgtError(f"task {task.name} has no answer options: log-likelihood mode is for multiple-choice tasks")
    needed = sorted(set().union(*subsets))
    plans = {i: option_continuations(task, examples[i]) for i in needed}
    requests = [(examples[i].prompt, text) for i in needed for texts in plans[i].values() for text in texts]
    scores, n_truncated = continuation_logprobs(model, tokenizer, requests, batch_size)
    remaining = iter(scores)
    picks: dict[str, dict[int, bool]] = {"accuracy": {}}
    for i in needed:
        labels = [label for label, _ in examples[i].options]
        scored = {variant: [next(remaining) for _ in texts] for variant, texts in plans[i].items()}

        def right(values: list[float], labels: list[str] = labels, key: str = examples[i].target.upper()) -> bool:
            return labels[max(range(len(values)), key=values.__getitem__)] == key

        picks["accuracy"][i] = right([s.logprob for s in scored.get("label", scored["text"])])
        if "label" in scored:
            picks.setdefault("accuracy_text", {})[i] = right([s.logprob for s in scored["text"]])
            picks.setdefault("accuracy_text_norm", {})[i] = right([s.logprob / s.n_bytes for s in scored["text"]])
    metrics = {name: summarize(_per_run(subsets, correct)) for name, correct in picks.items()}
    groups = accuracy_by_group(examples, picks["accuracy"])
    return metrics, {"accuracy_by_group": groups} if groups else {}, n_truncated


def evaluate_task(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    examples: Sequence[Example],
    *,
    mode: Mode = "generate",
    runs: int = 10,
    limit: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
) -> TaskOutcome:
    """Evaluate `examples` of `task` over `runs` runs (see the module docstring for what a run is)."""
    subsets, identical = run_subsets(len(examples), runs, limit, seed)
    evaluate = evaluate_loglik if mode == "loglik" else evaluate_generate
    metrics, extra, n_truncated = evaluate(model, tokenizer, task, examples, subsets, batch_size)
    return TaskOutcome(
        metrics=metrics,
        primary_metric=task.metric,
        n_examples=len(subsets[0]),
        n_evaluated=len(set().union(*subsets)),
        runs_identical=identical,
        n_truncated=n_truncated,
        extra=extra,
    )
