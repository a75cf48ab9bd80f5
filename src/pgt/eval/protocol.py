"""The reference protocol (docs/evaluation.md): continuations, their scoring, statistics over runs.

What a run is. The reference shuffles its example list once (drawing 256 SQuAD and
128 OPUS examples from larger splits) and scores the same list in all 10 runs; the
runs differ only because generation samples. Here the list is drawn once with
`seed`, and run `r` samples example `i` with its own seed (`example_seed`), so a
run's draws depend on neither batch size nor neighbours. Greedy decoding (our
deterministic mode) gives identical runs: it is computed once and σ = 0.

σ is the population standard deviation (`np.std`, ddof 0) and the 95 % interval
1.96·σ/√runs, as the reference computes them.

Log-likelihood mode scores each option of a multiple-choice question as a
continuation of the same prompt and picks the most probable one, so a model
can never answer outside the options (the reason letter scoring falls below
chance). Its `accuracy_text` and `acc_norm` are lm-evaluation-harness 0.4's
`acc` and `acc_norm` over the option texts.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pgt.errors import PgtError
from pgt.eval.generation import SAMPLERS, Sampler, generate_continuations
from pgt.eval.loglik import continuation_logprobs
from pgt.eval.results import Summary
from pgt.eval.tasks import Example, Task

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Mode = Literal["generate", "loglik"]
Z_95 = 1.96
REFERENCE_RUNS = 10
EOS_TEXT = "</S>"  # the end-of-sequence text `</s>` once the hypothesis is upper-cased


def answer_letter(continuation: str) -> str:
    """The reference's answer: `continuation.strip().upper()[:1]` (so `ß` reads as `S`, `<unk>` as `<`)."""
    return continuation.strip().upper()[:1]


def is_correct(task: Task, example: Example, continuation: str) -> bool:
    """Whether a continuation answers the example (letter / True-False / substring scoring)."""
    if task.scoring == "first_char":
        return answer_letter(continuation) == example.target.upper()
    if task.scoring == "substring":
        return example.target.upper() in continuation.strip().upper()
    raise PgtError(f"task {task.name} is not scored by correctness ({task.scoring})")


def bleu_hypothesis(continuation: str) -> str:
    """The reference's hypothesis: the stripped, upper-cased continuation cut at the first `</S>`."""
    return continuation.strip().upper().split(EOS_TEXT, 1)[0]


def sentence_bleu(continuation: str, reference: str) -> float:
    """sacrebleu `corpus_bleu([hypothesis], [[reference]])` of one sentence, both upper-cased."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu([bleu_hypothesis(continuation)], [[reference.upper()]]).score)


def read_answer(task: Task, continuation: str) -> str:
    """What the scorer reads from a continuation: the letter, the BLEU hypothesis or the stripped answer."""
    if task.scoring == "first_char":
        return answer_letter(continuation)
    if task.scoring == "bleu":
        return bleu_hypothesis(continuation)
    return continuation.strip().upper()


def example_score(task: Task, example: Example, continuation: str) -> float:
    """One example's score in percent: 100 or 0 for a correct answer, the sentence BLEU for translation."""
    if task.scoring == "bleu":
        return sentence_bleu(continuation, example.target)
    return 100.0 * is_correct(task, example, continuation)


def summarize(per_run: Sequence[float]) -> Summary:
    """Mean, population standard deviation σ (ddof 0) and the 95 % half-interval 1.96·σ/√runs."""
    runs = len(per_run)
    if runs == 0:
        raise PgtError("no runs to summarize")
    mean = statistics.fmean(per_run)
    std = statistics.pstdev(per_run)  # computed exactly: identical runs give exactly 0
    return Summary(mean=mean, std=std, ci95=Z_95 * std / math.sqrt(runs), per_run=[float(x) for x in per_run])


def example_list(n_examples: int, limit: int | None, seed: int) -> list[int]:
    """The one list every run scores: the examples shuffled once with `seed`, the first `limit` of them."""
    import numpy as np

    if limit is not None and limit < 1:
        raise PgtError(f"--limit must be at least 1, got {limit}")
    order = np.random.default_rng(seed).permutation(n_examples).tolist()
    return order[:limit] if limit is not None else order


def example_seed(seed: int, run: int, index: int) -> int:
    """The sampling seed of example `index` in run `run` (independent streams per pair)."""
    import numpy as np

    return int(np.random.SeedSequence([seed, run, index]).generate_state(1)[0])


@dataclass
class TaskOutcome:
    """What one task evaluation measured, ready to be written as an EvalRecord."""

    metrics: dict[str, Summary]
    primary_metric: str
    n_examples: int  # examples per run (the same list in every run)
    runs: int
    runs_identical: bool
    n_truncated: int
    chance: float | None = None  # expected score of uniform guessing among the options, percent
    by_group: dict[str, Summary] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)  # one per example, for --log-samples


def _group_summaries(
    examples: Sequence[Example], chosen: list[int], scores: list[dict[int, float]]
) -> dict[str, Summary]:
    """Per group (MMLU subject): the summary over runs of the group's mean score; {} without groups."""
    groups: dict[str, list[int]] = {}
    for i in chosen:
        if examples[i].group is not None:
            groups.setdefault(examples[i].group, []).append(i)
    return {
        name: summarize([sum(run[i] for i in members) / len(members) for run in scores])
        for name, members in sorted(groups.items())
    }


def _chance(examples: Sequence[Example], chosen: list[int]) -> float | None:
    if not all(examples[i].options for i in chosen):
        return None
    return 100.0 * sum(1 / len(examples[i].options) for i in chosen) / len(chosen)


def evaluate_generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    examples: Sequence[Example],
    chosen: list[int],
    *,
    runs: int,
    sampler: Sampler,
    seed: int,
    batch_size: int,
) -> TaskOutcome:
    """Continuations of the chosen examples in every run, scored as the reference scores them."""
    if task.scoring == "loglik":
        raise PgtError(f"task {task.name} is scored by log-likelihood only: use --protocol loglik")
    computed = 1 if sampler.kind == "greedy" else runs  # greedy runs are identical
    pairs = [(run, i) for run in range(computed) for i in chosen]
    out = generate_continuations(
        model,
        tokenizer,
        [examples[i].prompt for _, i in pairs],
        [examples[i].new_tokens for _, i in pairs],
        sampler=sampler,
        seeds=[example_seed(seed, run, i) for run, i in pairs],
        batch_size=batch_size,
    )
    texts: list[dict[int, str]] = [{} for _ in range(computed)]
    for (run, i), text in zip(pairs, out.texts, strict=True):
        texts[run][i] = text
    scores = [{i: example_score(task, examples[i], run[i]) for i in chosen} for run in texts]
    per_run = [sum(run.values()) / len(chosen) for run in scores] * (runs // computed)
    metrics = {task.metric: summarize(per_run)}
    if task.scoring == "first_char" and all(examples[i].options for i in chosen):
        # Answers outside the option labels count as wrong: this is why letter scoring can fall below chance.
        valid = [
            100.0 * sum(answer_letter(run[i]) in dict(examples[i].options) for i in chosen) / len(chosen)
            for run in texts
        ]
        metrics["valid_answer_rate"] = summarize(valid * (runs // computed))
    samples = [
        {
            "index": i,
            "prompt": examples[i].prompt,
            "target": examples[i].target,
            "continuations": [run[i] for run in texts],
            "answers": [read_answer(task, run[i]) for run in texts],
            ("scores" if task.scoring == "bleu" else "correct"): [
                run[i] if task.scoring == "bleu" else run[i] == 100.0 for run in scores
            ],
        }
        for i in chosen
    ]
    return TaskOutcome(
        metrics=metrics,
        primary_metric=task.metric,
        n_examples=len(chosen),
        runs=runs,
        runs_identical=computed == 1,
        n_truncated=sum(out.truncated[: len(chosen)]),
        chance=_chance(examples, chosen) if task.scoring == "first_char" else None,
        by_group=_group_summaries(examples, chosen, scores * (runs // computed)),
        details={"n_new_tokens_capped": out.n_capped // computed},
        samples=samples,
    )


def option_continuations(task: Task, example: Example) -> dict[str, list[str]]:
    """The continuations log-likelihood mode scores, per variant: `" A"`-style labels and option texts.

    True/False questions and a user's `mc` file have only their option texts (`" True"`, `" False"`).
    """
    texts = [f" {text}" for _, text in example.options]
    if task.loglik_options == "text":
        return {"text": texts}
    return {"label": [f" {label}" for label, _ in example.options], "text": texts}


def evaluate_loglik(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    examples: Sequence[Example],
    chosen: list[int],
    *,
    batch_size: int,
) -> TaskOutcome:
    """Pick the most probable option by its label (`accuracy`), its text, and lm-eval's `acc_norm`.

    `acc_norm` divides each option's summed log-probability by the characters of the option
    text (without the leading space), as lm-evaluation-harness 0.4 does (`completion_len`).
    """
    if task.loglik_options == "none":
        raise PgtError(f"task {task.name} has no answer options: log-likelihood mode is for multiple-choice tasks")
    plans = {i: option_continuations(task, examples[i]) for i in chosen}
    requests = [(examples[i].prompt, text) for i in chosen for texts in plans[i].values() for text in texts]
    scores, n_truncated = continuation_logprobs(model, tokenizer, requests, batch_size)
    remaining = iter(scores)
    picks: dict[str, dict[int, float]] = {}
    samples = []
    for i in chosen:
        labels = [label for label, _ in examples[i].options]
        lengths = [len(text) for _, text in examples[i].options]
        scored = {variant: [next(remaining).logprob for _ in texts] for variant, texts in plans[i].items()}
        ranked = {
            "accuracy": scored.get("label", scored["text"]),
            "acc_norm": [lp / n for lp, n in zip(scored["text"], lengths, strict=True)],
        }
        if "label" in scored:
            ranked["accuracy_text"] = scored["text"]
        chosen_labels = {name: labels[max(range(len(v)), key=v.__getitem__)] for name, v in ranked.items()}
        for name, label in chosen_labels.items():
            picks.setdefault(name, {})[i] = 100.0 * (label == examples[i].target.upper())
        samples.append(
            {
                "index": i,
                "prompt": examples[i].prompt,
                "target": examples[i].target,
                "options": [text for _, text in examples[i].options],
                "logprobs": scored,
                "answers": chosen_labels,
                "correct": {n: picks[n][i] == 100.0 for n in chosen_labels},
            }
        )
    metrics = {name: summarize([sum(values.values()) / len(chosen)]) for name, values in picks.items()}
    return TaskOutcome(
        metrics=metrics,
        primary_metric="accuracy",
        n_examples=len(chosen),
        runs=1,
        runs_identical=True,
        n_truncated=n_truncated,
        chance=_chance(examples, chosen),
        by_group=_group_summaries(examples, chosen, [picks["accuracy"]]),
        samples=samples,
    )


def evaluate_task(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    examples: Sequence[Example],
    *,
    mode: Mode = "generate",
    runs: int = REFERENCE_RUNS,
    limit: int | None = None,
    sampler: Sampler = SAMPLERS["sample"],
    seed: int = 0,
    batch_size: int = 8,
) -> TaskOutcome:
    """Evaluate one fixed list of `examples` (the first `limit` after one shuffle) over `runs` runs."""
    if runs < 1:
        raise PgtError(f"--runs must be at least 1, got {runs}")
    chosen = example_list(len(examples), limit, seed)
    if mode == "loglik":
        return evaluate_loglik(model, tokenizer, task, examples, chosen, batch_size=batch_size)
    return evaluate_generate(
        model, tokenizer, task, examples, chosen, runs=runs, sampler=sampler, seed=seed, batch_size=batch_size
    )
