"""`pgt report RUN_DIR`: one Markdown page with PNG plots that tells the story of a growth run.

Per stage: parameters (total, trainable), tokens seen, validation loss, bits per byte
and every evaluated task (`stage-K/eval/*.json`), in a table and plotted against depth;
the baselines and merged experts beside the grown model; the loss curve with its
growth steps (redrawn from `metrics.jsonl`); and the reference's published figures
(DESIGN.md §8) beside ours where the task is the same. Missing pieces are noted in
the page, not treated as errors.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pgt.errors import PgtError
from pgt.eval import published as pub
from pgt.eval.plots import Panel, Series, plot_bars, plot_panels
from pgt.growth.metrics import read_metrics
from pgt.io import atomic_file, read_json

EXAMPLES = """examples:
  pgt report runs/demo/run                              # writes runs/demo/run/report.md + PNGs
  pgt report runs/grow --out reports/grow.md
  pgt report runs/grow --baseline runs/mono --merged runs/merged/en-ru+en-de
"""

STAGE_DIR = re.compile(r"stage-(\d+)$")
# The loss-like metrics every model entry can carry; tasks follow them in the tables.
LOSS_METRICS = (("val_loss", "val loss"), ("val_bpb", "bits/byte"))


@dataclass
class ModelEntry:
    """One model on the page: a growth stage, a baseline or a merged expert."""

    name: str
    kind: str
    path: Path
    blocks: int | None
    info: dict[str, Any]  # stage.json where there is one
    evals: dict[str, dict[str, Any]]  # task -> eval result JSON

    def metric(self, key: str) -> float | None:
        """`val_loss` / `val_bpb` from stage.json, else from a `pgt eval --task perplexity` result."""
        value = self.info.get(key)
        if value is None:
            short = key.removeprefix("val_")  # perplexity results carry `loss` and `bpb`
            value = next((r["metrics"]["mean"] if r.get("metric") == short else r["other_metrics"][short]["mean"]
                          for r in self.evals.values() if short in (r.get("metric"), *r.get("other_metrics", {}))), None)
        return float(value) if isinstance(value, int | float) else None

    def task_score(self, task: str) -> tuple[float, float | None] | None:
        """(mean, 95 % half-interval) of `task`'s primary metric, where it was evaluated."""
        result = self.evals.get(task, {})
        metrics = result.get("metrics", {})
        mean = metrics.get("mean")
        ci = None if result.get("runs_identical") else metrics.get("ci95")  # identical runs: no spread to show
        if not isinstance(mean, int | float):
            return None
        return float(mean), float(ci) if isinstance(ci, int | float) else None


@dataclass
class RunReport:
    """Everything the page shows, gathered from the run directory and the extra model dirs."""

    run_dir: Path
    run: dict[str, Any]
    stages: list[ModelEntry]
    others: list[ModelEntry]  # baselines, then merged experts
    events: list[dict[str, Any]]
    published: pub.PublishedFigures
    notes: list[str] = field(default_factory=list)

    @property
    def tasks(self) -> list[str]:
        """Every task with a mean score in any entry, in name order."""
        return sorted({t for e in self.stages + self.others for t in e.evals if e.task_score(t) is not None})

    def _result_field(self, task: str, key: str) -> Any:
        return next((e.evals[task].get(key) for e in self.stages + self.others if task in e.evals), None)

    def task_label(self, task: str) -> str:
        """`task (metric)` as the column header, e.g. `arc_easy (accuracy)`."""
        metric = self._result_field(task, "metric")
        return f"{task} ({metric})" if metric else task

    def task_unit(self, task: str) -> str:
        """What the task's scores measure (`percent`, `perplexity`, ...), for a plot axis."""
        return str(self._result_field(task, "unit") or "score")


# ---------------------------------------------------------------- reading the artefacts


def _read_evals(model_dir: Path, notes: list[str]) -> dict[str, dict[str, Any]]:
    evals = {}
    for path in sorted((model_dir / "eval").glob("*.json")):
        try:
            result = read_json(path, "evaluation result")
        except PgtError as exc:
            notes.append(f"skipped {exc}")
            continue
        if isinstance(result, dict):
            evals[str(result.get("task", path.stem))] = result
    return evals


def _blocks_from_config(model_dir: Path) -> int | None:
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        return None
    blocks = read_json(config_path, "model config").get("num_hidden_layers")
    return blocks if isinstance(blocks, int) else None


def count_parameters(model_dir: Path) -> int | None:
    """Total parameters in a model directory's safetensors files, read from their headers only."""
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        with safe_open(str(path), framework="numpy") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                total += math.prod(handle.get_slice(key).get_shape())
    return total


def stage_dirs(run_dir: str | os.PathLike) -> list[Path]:
    """A run's finished stage directories (`stage-K`), in depth order."""
    found = [(int(m[1]), p) for p in Path(run_dir).glob("stage-*") if (m := STAGE_DIR.search(p.name)) and p.is_dir()]
    return [path for _, path in sorted(found)]


def load_entry(path: Path, name: str, kind: str, notes: list[str]) -> ModelEntry:
    """A model entry from a model directory, or from a run directory (its deepest stage)."""
    if not path.is_dir():
        raise PgtError(f"model directory not found: {path}")
    model_dir = path
    if (path / "run.json").is_file():
        kind = str(read_json(path / "run.json", "run description").get("kind", kind))
        model_dir = next(reversed(stage_dirs(path)), path)
    info = read_json(model_dir / "stage.json", "stage description") if (model_dir / "stage.json").is_file() else {}
    if not info and not (model_dir / "config.json").is_file():
        raise PgtError(f"{path} is neither a model directory nor a run directory "
                       "(no config.json, stage.json or run.json)")
    if "params_total" not in info:
        info = {**info, "params_total": count_parameters(model_dir)}
    blocks = info.get("blocks") or _blocks_from_config(model_dir) or info.get("stage")
    return ModelEntry(name, kind, model_dir, blocks, info, _read_evals(model_dir, notes))


def collect(run_dir: str | os.PathLike, *, baselines: tuple[str | os.PathLike, ...] = (),
            merged: tuple[str | os.PathLike, ...] = (), published: pub.PublishedFigures | None = None) -> RunReport:
    """Gather a run's stages, events, baselines and merged experts (auto-discovered plus explicit)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PgtError(f"run directory not found: {run_dir}")
    if not (run_dir / "run.json").is_file():
        raise PgtError(f"{run_dir} is not a growth run directory (no run.json; make one with `pgt grow --out DIR`)")
    run = read_json(run_dir / "run.json", "run description")
    notes: list[str] = []
    stages = [load_entry(path, path.name, "growth", notes) for path in stage_dirs(run_dir)]
    if not stages:
        notes.append("the run has no finished stage yet")

    others: list[ModelEntry] = []
    seen: set[Path] = set()
    for folder, extra, default_kind, option in (("baselines", baselines, "baseline", "--baseline"),
                                                ("merged", merged, "merged", "--merged")):
        found = [p for p in sorted((run_dir / folder).glob("*")) if p.is_dir() and not p.name.startswith(".")]
        paths = [p for p in [*found, *map(Path, extra)] if p.resolve() not in seen]
        seen.update(p.resolve() for p in paths)
        others += [load_entry(p, f"{folder}/{p.name}" if p in found else str(p), default_kind, notes) for p in paths]
        if not paths:
            notes.append(f"no {folder} (looked in {run_dir / folder}/; add more with {option} DIR)")
    events = read_metrics(run_dir)
    if not events:
        notes.append("no training metrics (metrics.jsonl is missing or empty): the loss curve is missing")
    report = RunReport(run_dir, run, stages, others, events, published or pub.load_published(), notes)
    if stages and not report.tasks:
        notes.append("no task evaluations found (run `pgt eval RUN_DIR/stage-K --task T` to add them)")
    return report


# ---------------------------------------------------------------- numbers and text


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


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _loss_cell(entry: ModelEntry, key: str) -> str:
    value = entry.metric(key)
    if value is None:
        return "–"
    return _float(value) + ("" if entry.info.get(key) is not None else EVAL_MARK)


def _entry_row(entry: ModelEntry, tasks: list[str]) -> list[str]:
    info = entry.info
    return [
        f"`{entry.name}`",
        entry.kind,
        _int(entry.blocks),
        _int(info.get("params_total")),
        _int(info.get("params_trainable")),
        _int(info.get("tokens_seen")),
        *(_loss_cell(entry, key) for key, _ in LOSS_METRICS),
        *(_score(entry.task_score(task)) for task in tasks),
    ]


# Marks losses that come from `pgt eval --task perplexity` rather than the trainer's validation batches.
EVAL_MARK = "†"
EVAL_MARK_NOTE = (f"{EVAL_MARK} From `pgt eval --task perplexity` (held-out documents), not the trainer's "
                  "validation batches, so not strictly comparable with the unmarked values.")


ENTRY_HEADER = ["model", "kind", "blocks", "params total", "params trainable", "tokens seen", "val loss", "bits/byte"]


def growth_steps(events: list[dict[str, Any]]) -> list[tuple[int, float, float]]:
    """(stage, validation loss at the end of the previous stage, validation loss with the new block
    before it trains) for every growth step whose two evaluations were logged."""
    evals = [e for e in events if e.get("kind") == "eval"]
    steps = []
    for stage in sorted({e["stage"] for e in evals if e["stage"] > 1}):
        before = [e for e in evals if e["stage"] == stage - 1]
        after = [e for e in evals if e["stage"] == stage and e.get("step") == 0]
        if before and after:
            steps.append((stage, float(before[-1]["val_loss"]), float(after[0]["val_loss"])))
    return steps


# ---------------------------------------------------------------- plots


def plot_loss_curve(report: RunReport, path: Path) -> bool:
    """Train and validation loss against training tokens, a dotted line at every growth step; False if no data.

    Records follow `pgt.growth.metrics`: kind train (tokens, loss), eval (tokens, val_loss),
    event (event `grow`, stage, tokens).
    """
    train = [(e["tokens"], e["loss"]) for e in report.events if e.get("kind") == "train"]
    evals = [(e["tokens"], e["val_loss"]) for e in report.events if e.get("kind") == "eval"]
    if not train and not evals:
        return False
    # Stage 1's `grow` event opens the run; every later one is a growth step.
    growth = [(e["tokens"], f"+block {e['stage']}") for e in report.events
              if e.get("kind") == "event" and e.get("event") == "grow" and e.get("stage", 1) > 1]
    series = []
    if train:
        series.append(Series("train loss", *map(list, zip(*train, strict=True)), style={"linewidth": 1}))
    if evals:
        series.append(Series("validation loss", *map(list, zip(*evals, strict=True)),
                             style={"marker": "o", "linestyle": "none"}))
    panel = Panel("Loss with growth steps", "training tokens", "loss (nats/token)", series, markers_x=growth)
    plot_panels([panel], path, columns=1, panel_size=(9.0, 4.5))
    return True


def plot_depth(report: RunReport, path: Path) -> bool:
    """Loss, bits/byte, parameters and every task against depth; baselines as single points."""
    stages = [e for e in report.stages if e.blocks is not None]
    if not stages:
        return False
    depth = [float(e.blocks) for e in stages]

    def line(label: str, values: list[float | None], errors: list[float | None] | None = None) -> Series:
        errors = errors or [None] * len(values)
        points = [(x, v, e) for x, v, e in zip(depth, values, errors, strict=True) if v is not None]
        err = [e or 0.0 for _, _, e in points] if any(e for _, _, e in points) else None
        return Series(label, [p[0] for p in points], [p[1] for p in points], err=err, style={"marker": "o"})

    def others(getter) -> list[Series]:
        points = [(e, v) for e in report.others if e.blocks is not None and (v := getter(e)) is not None]
        return [Series(e.name, [float(e.blocks)], [v], style={"marker": "s", "linestyle": "none"}) for e, v in points]

    panels = []
    for key, label in LOSS_METRICS:
        values = [e.metric(key) for e in stages]
        if any(v is not None for v in values):
            panels.append(Panel(label, "blocks", label, [line("grown", values), *others(lambda e, k=key: e.metric(k))],
                                  integer_x=True))
    params = [line(label, [e.info.get(key) for e in stages]) for key, label in
              (("params_total", "total"), ("params_trainable", "trainable"))]
    if any(series.y for series in params):
        panels.append(Panel("parameters", "blocks", "parameters", params, log_y=True, integer_x=True))
    for task in report.tasks:
        scores = [e.task_score(task) for e in stages]
        series = [line("grown", [s[0] if s else None for s in scores], [s[1] if s else None for s in scores])]
        reference = pub.published_task(task)
        if reference:
            ref_points = [(x, score.mean) for x in depth if (model := pub.growth_counterpart(int(x)))
                          and (score := report.published.score(model, reference))]
            if ref_points:
                series.append(Series(f"published abs-bvv ({reference})", [p[0] for p in ref_points],
                                     [p[1] for p in ref_points], style={"linestyle": "--", "marker": "x"}))
        series += others(lambda e, t=task: (s[0] if (s := e.task_score(t)) else None))
        panels.append(Panel(report.task_label(task), "blocks", report.task_unit(task), series, integer_x=True))
    if not panels:
        return False
    plot_panels(panels, path, columns=2, title="Metrics against depth")
    return True


def plot_comparison(report: RunReport, path: Path) -> bool:
    """Validation loss and bits/byte of the deepest stage beside every baseline and merged expert."""
    if not report.others or not report.stages:
        return False
    entries = [report.stages[-1], *report.others]
    groups = [label for key, label in LOSS_METRICS if any(e.metric(key) is not None for e in entries)]
    if not groups:
        return False
    keys = [key for key, label in LOSS_METRICS if label in groups]
    bars = {e.name: [v if (v := e.metric(k)) is not None else math.nan for k in keys] for e in entries}
    plot_bars(groups, bars, path, ylabel="lower is better", title="Grown model against baselines and merged experts")
    return True


# ---------------------------------------------------------------- the page


def _published_section(report: RunReport) -> list[str]:
    figures = report.published
    lines = ["## Published figures (DESIGN.md §8)", "",
             f"Source: {figures.source}. Scores in %, mean over 10 runs (± the 95 % interval where published).", ""]
    models = [m for m in figures.scores if m.startswith("abs-bvv-") or m in pub.COUNTERPART_OF_KIND.values()]
    lines += _table(["model", *pub.PUBLISHED_TASKS],
                    [[m, *(pub.format_score(figures.score(m, t)) for t in pub.PUBLISHED_TASKS)] for m in models])
    comparable = [t for t in report.tasks if pub.published_task(t)]
    lines.append("")
    if not comparable:
        lines.append("None of our evaluated tasks matches a published one (MMLU, ARC-e, ARC-c, C-SENSE, SQuAD), "
                     "so there is nothing to set beside them yet.")
        return lines
    lines += ["### Ours beside the published models", "",
              "Each of our models beside its published counterpart: stage K ↔ `abs-bvv-K`, "
              + ", ".join(f"{kind} ↔ `{model}`" for kind, model in pub.COUNTERPART_OF_KIND.items()) + ".", ""]
    rows = []
    for entry in report.stages + report.others:
        counterpart = (pub.growth_counterpart(entry.blocks or 0) if entry.kind == "growth"
                       else pub.COUNTERPART_OF_KIND.get(entry.kind))
        for task in comparable:
            ours = entry.task_score(task)
            if ours is None:
                continue
            reference = pub.published_task(task)
            theirs = figures.score(counterpart, reference) if counterpart and reference else None
            rows.append([f"`{entry.name}`", task, _score(ours), counterpart or "–", pub.format_score(theirs)])
    lines += _table(["ours", "task", "our score", "published model", "published score"], rows)
    return lines


def render_markdown(report: RunReport, plots: dict[str, str]) -> str:
    """The page's Markdown; `plots` maps a plot role (loss, depth, comparison) to its file name."""
    run_name = report.run_dir.resolve().name
    config = report.run.get("config", {})
    lines = [f"# Growth run report: `{run_name}`", "",
             f"Run directory `{report.run_dir}`, kind **{report.run.get('kind', 'growth')}**, "
             f"{len(report.stages)} finished stage(s). Generated by `pgt report` on "
             f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.", ""]
    if config:
        shown = json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False, default=str)
        lines += ["<details><summary>resolved run configuration</summary>", "", "```json", shown, "```", "</details>", ""]

    tasks = report.tasks
    lines += ["## Stages", ""]
    if report.stages:
        lines += _table([h for h in ENTRY_HEADER if h != "kind"] + ["init", "LoRA", *map(report.task_label, tasks)],
                        [[c for i, c in enumerate(_entry_row(e, [])) if i != 1]
                         + [_text(e.info.get("init")), _text(e.info.get("lora"))]
                         + [_score(e.task_score(t)) for t in tasks] for e in report.stages])
        lines += ["", "Task scores are mean ± the 95 % interval over runs, as `pgt eval` reports them.", ""]
    else:
        lines += ["No stage has finished yet.", ""]
    if "depth" in plots:
        lines += [f"![metrics against depth]({plots['depth']})", ""]

    lines += ["## Loss curve", ""]
    if "loss" in plots:
        lines += ["Training loss and validation loss; each dotted line is a growth step (a new block added).", "",
                  f"![loss curve with growth steps]({plots['loss']})", ""]
        steps = growth_steps(report.events)
        if steps:
            lines += ["What adding a block does to the validation loss, before the new block trains:", ""]
            lines += _table(["growth step", "end of previous stage", "new block added", "change"],
                            [[f"+block {k}", f"{before:.4f}", f"{after:.4f}", f"{after - before:+.4f}"]
                             for k, before, after in steps])
            lines.append("")
    else:
        lines += ["No training metrics were recorded.", ""]

    lines += ["## Baselines and merged experts", ""]
    if report.others:
        deepest = report.stages[-1:] if report.stages else []
        rows = [_entry_row(e, tasks) for e in deepest + report.others]
        lines += _table(ENTRY_HEADER + [report.task_label(t) for t in tasks], rows)
        lines.append("")
        if any(cell.endswith(EVAL_MARK) for row in rows for cell in row[6:8]):
            lines += [EVAL_MARK_NOTE, ""]
        if "comparison" in plots:
            lines += [f"![grown model against baselines]({plots['comparison']})", ""]
    else:
        lines += ["None found. Train them with `pgt grow --baseline monolithic|trainable-embeddings` into "
                  "`RUN_DIR/baselines/<name>/`, merge experts into `RUN_DIR/merged/<name>/`, or pass "
                  "`--baseline DIR` / `--merged DIR`.", ""]

    lines += [*_published_section(report), ""]
    if report.notes:
        lines += ["## Missing pieces", "", *(f"- {note}" for note in report.notes), ""]
    return "\n".join(lines)


PLOTTERS = {"loss": ("loss-curve", plot_loss_curve), "depth": ("depth", plot_depth),
            "comparison": ("comparison", plot_comparison)}


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
                 baselines: tuple[str | os.PathLike, ...] = (), merged: tuple[str | os.PathLike, ...] = (),
                 published: pub.PublishedFigures | None = None) -> Path:
    """Write the report page (default RUN_DIR/report.md) and its PNGs beside it; return the page's path.

    Each file is written atomically; the plots come first so the page never links a missing one.
    """
    report = collect(run_dir, baselines=baselines, merged=merged, published=published)
    out = Path(out) if out is not None else Path(run_dir) / "report.md"
    if out.suffix.lower() != ".md":
        raise PgtError(f"report output must be a Markdown file ending in .md, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    plots = {}
    for role, (suffix, plotter) in PLOTTERS.items():
        png = out.with_name(f"{out.stem}-{suffix}.png")
        if plotter(report, png):
            plots[role] = png.name
        else:
            png.unlink(missing_ok=True)  # a stale plot from an earlier report would mislead
    with atomic_file(out, "w", encoding="utf-8") as handle:
        handle.write(render_markdown(report, plots))
    return out


# ---------------------------------------------------------------- command line (via pgt.eval.cli)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `pgt report` (the eval area's CLI registers the command and calls `run`)."""
    parser.epilog = EXAMPLES  # the options are defined here, so are their examples
    parser.add_argument("run_dir", metavar="RUN_DIR", help="growth run directory (from `pgt grow --out`)")
    parser.add_argument("--out", metavar="FILE.md", help="Markdown page to write (default RUN_DIR/report.md); "
                        "its PNGs go beside it")
    parser.add_argument("--baseline", metavar="DIR", action="append", default=[],
                        help="extra baseline run or model directory (RUN_DIR/baselines/* are found on their own)")
    parser.add_argument("--merged", metavar="DIR", action="append", default=[],
                        help="extra merged-expert model directory (RUN_DIR/merged/* are found on their own)")
    parser.add_argument("--published", metavar="FILE", help="the reference's published-benchmarks.txt "
                        "(default: the figures embedded in pgt)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of `pgt report`."""
    figures = pub.load_published(args.published) if args.published else None
    page = write_report(args.run_dir, args.out, baselines=tuple(args.baseline), merged=tuple(args.merged),
                        published=figures)
    print(f"report: {page}")
    return 0
