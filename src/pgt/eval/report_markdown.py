"""The Markdown page of `pgt report`, from a gathered `RunReport` and the names of its plots."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from pgt.eval import published as pub
from pgt.eval.report_discovery import LOSS_METRICS, ModelEntry, RunReport, growth_steps
from pgt.substrate.health import SubstrateHealth


def _int(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, int | float) else "–"


def _float(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) and math.isfinite(value) else "–"


def _text(value: Any) -> str:
    return "–" if value is None else str(value)


def _score(score: tuple[float, float | None] | None) -> str:
    if score is None:
        return "–"
    mean, ci = score
    return f"{mean:.2f} ± {ci:.2f}" if ci is not None else f"{mean:.2f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _loss_cell(entry: ModelEntry, key: str) -> str:
    value = entry.metric(key)
    if value is None:
        return "–"
    return _float(value) + ("" if entry.field(key) is not None else EVAL_MARK)


def training_tokens(entry: ModelEntry) -> int | None:
    """Every token that trained the model: the run's total up to this stage, not one stage's share."""
    return entry.stage.tokens_total if entry.stage else None


def scored_on(entry: ModelEntry) -> str:
    """The data the row's losses come from."""
    if entry.stage is not None:
        return "trainer's validation sample"
    result = next((r for r in entry.evals.values() if "bpb" in (r.metric, *r.other_metrics)), None)
    if result is None:
        return "–"
    return f"`pgt eval` perplexity, {result.n_examples} held-out documents of `{result.dataset}`{EVAL_MARK}"


def _entry_row(entry: ModelEntry, tasks: list[str], budget: int | None = None) -> list[str]:
    tokens = training_tokens(entry)
    flag = f" {UNEQUAL_MARK}" if budget is not None and tokens is not None and tokens != budget else ""
    return [
        f"`{entry.name}`",
        entry.kind,
        _int(entry.blocks) if entry.blocks is not None else "– (merge)",
        _int(entry.params_total),
        _int(entry.field("params_trainable")),
        _int(tokens) + flag if tokens is not None else "– (its experts' own)",
        scored_on(entry),
        *(_loss_cell(entry, key) for key, _ in LOSS_METRICS),
        *(_score(entry.task_score(task)) for task in tasks),
    ]


# Marks losses that come from `pgt eval --task perplexity` rather than the trainer's validation sample.
EVAL_MARK = "†"
EVAL_MARK_NOTE = (
    f"{EVAL_MARK} From `pgt eval --task perplexity` (held-out documents), not the trainer's "
    "validation sample, so not strictly comparable with the unmarked values."
)


# Marks a row whose training budget differs from the deepest grown stage's.
UNEQUAL_MARK = "⚠"
UNEQUAL_NOTE = f"{UNEQUAL_MARK} A training budget other than the deepest grown stage's: not a like-for-like comparison."

ENTRY_HEADER = [
    "model",
    "kind",
    "blocks",
    "params total",
    "params trainable",
    "training tokens (total)",
    "losses scored on",
    "val loss",
    "bits/byte",
]


def _published_section(report: RunReport) -> list[str]:
    figures = report.published
    lines = [
        "## Published figures (docs/evaluation.md)",
        "",
        f"Source: {figures.source}. Scores in %, mean over 10 runs (± the 95 % interval where published).",
        "",
    ]
    models = [m for m in figures.scores if m.startswith("abs-bvv-") or m in pub.COUNTERPART_OF_KIND.values()]
    lines += markdown_table(
        ["model", *pub.PUBLISHED_TASKS],
        [[m, *(pub.format_score(figures.score(m, t)) for t in pub.PUBLISHED_TASKS)] for m in models],
    )
    comparable = [t for t in report.tasks if pub.published_task(t)]
    lines.append("")
    if not comparable:
        lines.append(
            "None of our evaluated tasks matches a published one (MMLU, ARC-e, ARC-c, C-SENSE, SQuAD), "
            "so there is nothing to set beside them yet."
        )
        return lines
    lines += [
        "### Ours beside the published models",
        "",
        "Each of our models beside its published counterpart: stage K ↔ `abs-bvv-K`, "
        + ", ".join(f"{kind} ↔ `{model}`" for kind, model in pub.COUNTERPART_OF_KIND.items())
        + ".",
        "",
    ]
    rows = []
    for entry in report.stages + report.others:
        counterpart = (
            pub.growth_counterpart(entry.blocks or 0)
            if entry.kind == "growth"
            else pub.COUNTERPART_OF_KIND.get(entry.kind)
        )
        for task in comparable:
            ours = entry.task_score(task)
            if ours is None:
                continue
            reference = pub.published_task(task)
            theirs = figures.score(counterpart, reference) if counterpart and reference else None
            rows.append([f"`{entry.name}`", task, _score(ours), counterpart or "–", pub.format_score(theirs)])
    lines += markdown_table(["ours", "task", "our score", "published model", "published score"], rows)
    return lines


def health_section(health: SubstrateHealth, groups: int = 6) -> list[str]:
    """`pgt substrate inspect`'s figures for the substrate a run stands on, beside random unit rows."""
    share = "" if health.data_share_in_groups is None else f", carrying {health.data_share_in_groups:.1%} of its tokens"
    return [
        "## Substrate health",
        "",
        f"`{health.substrate}` measured on {health.scope} ({health.glyph.rows:,} rows of d = {health.dim}): "
        f"{len(health.groups):,} groups of ids share one vector ({health.ids_in_groups:,} ids{share}).",
        "",
        *markdown_table(["figure", "these rows", "random unit rows"], [list(row) for row in health.rows()]),
        "",
        f"Largest groups: {health.largest_groups(groups)}.",
    ]


def stopping_section(stages: list[ModelEntry]) -> list[str]:
    """Tokens each stage used against its budget, and where it stopped (`--patience`: convergence)."""
    rows = []
    for entry in stages:
        stage = entry.stage
        if stage is None:
            continue
        budget = stage.tokens_budget
        stopped = f"converged: --patience ended it at step {stage.steps}" if stage.stopped_early else "budget spent"
        rows.append(
            [
                f"`{entry.name}`",
                _int(budget) if budget is not None else "–",
                _int(stage.tokens_seen),
                f"{stage.tokens_seen / budget:.0%}" if budget else "–",
                _int(stage.steps),
                stopped,
                _float(stage.best_val_loss),
            ]
        )
    return ["## Tokens each stage used", ""] + markdown_table(
        ["stage", "token budget", "tokens used", "share", "steps", "stopped", "best val loss"], rows
    )


def mixture_section(stages: list[ModelEntry]) -> list[str]:
    """A weighted mixture's sources per stage: tokens drawn, epochs so far, validation loss and bits per byte."""
    rows = [
        [
            f"`{entry.name}`",
            d.name,
            f"{d.weight:.1%}",
            _int(d.tokens),
            _int(d.tokens_total),
            f"{d.epochs:.3f}",
            _float(d.val_loss),
            _float(d.val_bpb),
        ]
        for entry in stages
        if entry.stage and entry.stage.mixture
        for d in entry.stage.mixture
    ]
    if not rows:
        return []
    return [
        "## Data mixture",
        "",
        "Validation per source is scored on that source's part of the validation "
        "sample (each source gives its weight's share of it).",
        "",
    ] + markdown_table(
        [
            "stage",
            "source",
            "weight",
            "tokens drawn (stage)",
            "tokens drawn (run)",
            "epochs (run)",
            "val loss",
            "bits/byte",
        ],
        rows,
    )


def render_markdown(report: RunReport, plots: dict[str, str]) -> str:
    """The page's Markdown; `plots` maps a plot role (loss, depth, comparison) to its file name."""
    run_name = report.run_dir.resolve().name
    config = report.run.config
    lines = [
        f"# Growth run report: `{run_name}`",
        "",
        f"Run directory `{report.run_dir}`, kind **{report.run.kind}**, "
        f"{len(report.stages)} finished stage(s). Generated by `pgt report` on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.",
        "",
    ]
    if config:
        shown = json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False, default=str)
        lines += [
            "<details><summary>resolved run configuration</summary>",
            "",
            "```json",
            shown,
            "```",
            "</details>",
            "",
        ]
    if report.run.started_from:
        lines += [
            f"Started from the saved model {report.run.started_from.describe()} (`pgt grow --from`): its blocks "
            "are the first blocks of every stage below.",
            "",
        ]
    if report.run.config_changes:  # settings or data that changed when the run was resumed
        lines += ["## Changes on resume", ""]
        lines += markdown_table(
            ["stage", "step", "reason", "changed"],
            [
                [str(c.stage), str(c.step), c.reason, "; ".join(f"{k}: {a} → {b}" for k, (a, b) in c.changes.items())]
                for c in report.run.config_changes
            ],
        )
        lines += [""]

    tasks = report.tasks
    lines += ["## Stages", ""]
    if report.stages:
        lines += markdown_table(
            [h for h in ENTRY_HEADER if h != "kind"] + ["init", "LoRA", *map(report.task_label, tasks)],
            [
                [c for i, c in enumerate(_entry_row(e, [])) if i != 1]
                + [_text(e.field("init")), _text(e.stage.lora.to_json() if e.stage and e.stage.lora else None)]
                + [_score(e.task_score(t)) for t in tasks]
                for e in report.stages
            ],
        )
        lines += ["", "Task scores are mean ± the 95 % interval over runs, as `pgt eval` reports them.", ""]
    else:
        lines += ["No stage has finished yet.", ""]
    if "depth" in plots:
        lines += [f"![metrics against depth]({plots['depth']})", ""]
    if report.health is not None:
        lines += [*health_section(report.health), ""]
    if report.stages:
        lines += [*stopping_section(report.stages), ""]
        mixture = mixture_section(report.stages)
        if mixture:
            lines += [*mixture, ""]

    lines += ["## Loss curve", ""]
    if "loss" in plots:
        lines += [
            "Training loss and validation loss; each dotted line is a growth step (a new block added).",
            "",
            f"![loss curve with growth steps]({plots['loss']})",
            "",
        ]
        steps = growth_steps(report.events)
        if steps:
            lines += ["What adding a block does to the validation loss, before the new block trains:", ""]
            lines += markdown_table(
                ["growth step", "end of previous stage", "new block added", "change"],
                [
                    [f"+block {k}", f"{before:.4f}", f"{after:.4f}", f"{after - before:+.4f}"]
                    for k, before, after in steps
                ],
            )
            lines.append("")
    else:
        lines += ["No training metrics were recorded.", ""]

    lines += ["## Baselines and merged experts", ""]
    if report.others:
        deepest = report.stages[-1:] if report.stages else []
        budget = training_tokens(deepest[0]) if deepest else None
        rows = [_entry_row(e, tasks, budget) for e in deepest + report.others]
        lines += markdown_table(ENTRY_HEADER + [report.task_label(t) for t in tasks], rows)
        lines.append("")
        if any(EVAL_MARK in cell for row in rows for cell in row):
            lines += [EVAL_MARK_NOTE, ""]
        if any(UNEQUAL_MARK in cell for row in rows for cell in row):
            lines += [UNEQUAL_NOTE, ""]
        if "comparison" in plots:
            lines += [f"![grown model against baselines]({plots['comparison']})", ""]
    else:
        lines += [
            "None found. Train them with `pgt grow --baseline monolithic|trainable-embeddings` into "
            "`RUN_DIR/baselines/<name>/`, merge experts into `RUN_DIR/merged/<name>/`, or pass "
            "`--baseline DIR` / `--merged DIR`.",
            "",
        ]

    lines += [*_published_section(report), ""]
    if report.notes:
        lines += ["## Missing pieces", "", *(f"- {note}" for note in report.notes), ""]
    return "\n".join(lines)
