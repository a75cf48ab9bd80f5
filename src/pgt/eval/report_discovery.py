"""What `pgt report` shows, gathered from a run directory: its stages, baselines, merged experts and events.

Each record is read once, through its type: `run.json` (RunRecord), every model directory's
`stage.json` (StageRecord: growth stages and baselines) and `eval/*.json` results
(EvalRecord); a model without a stage record (a merge) is described by its `config.json`
and the headers of its weight files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgt.data.loader import TokenData
from pgt.errors import PgtError
from pgt.eval import published as pub
from pgt.eval.results import RESULTS_DIRNAME, EvalRecord
from pgt.growth.metrics import EvalPoint, MetricsRecord, read_metrics
from pgt.growth.records import RUN_FILE, STAGE_FILE, RunRecord, StageRecord
from pgt.growth.run_layout import stage_dirs
from pgt.io import read_json
from pgt.model.loading import stored_parameters
from pgt.substrate.health import SubstrateHealth, inspect_substrate

# The loss-like metrics every model entry can carry; tasks follow them in the tables.
LOSS_METRICS = (("val_loss", "val loss"), ("val_bpb", "bits/byte"))


@dataclass
class ModelEntry:
    """One model on the page: a growth stage, a baseline or a merged expert, with its records read once."""

    name: str
    kind: str
    path: Path
    blocks: int | None
    stage: StageRecord | None  # stage.json where there is one
    params_total: int | None
    evals: dict[str, EvalRecord]  # task -> its `pgt eval` result

    def field(self, key: str) -> Any:
        """A stage.json field (`tokens_total`, `init`, ...), or None where the model has no stage record."""
        if key == "params_total":
            return self.params_total
        return getattr(self.stage, key, None)

    def metric(self, key: str) -> float | None:
        """`val_loss` / `val_bpb` from stage.json, else from a `pgt eval --task perplexity` result."""
        value = self.field(key)
        if value is None:
            short = key.removeprefix("val_")  # perplexity results carry `loss` and `bpb`
            value = next(
                (r.value(short) for r in self.evals.values() if short == r.metric or short in r.other_metrics), None
            )
        return float(value) if isinstance(value, int | float) else None

    def task_score(self, task: str) -> tuple[float, float | None] | None:
        """(mean, 95 % half-interval) of `task`'s primary metric, where it was evaluated."""
        result = self.evals.get(task)
        if result is None:
            return None
        ci = None if result.runs_identical else result.metrics.ci95  # identical runs: no spread to show
        return result.metrics.mean, ci


@dataclass
class RunReport:
    """Everything the page shows, gathered from the run directory and the extra model dirs."""

    run_dir: Path
    run: RunRecord
    stages: list[ModelEntry]
    others: list[ModelEntry]  # baselines, then merged experts
    events: list[MetricsRecord]  # metrics.jsonl
    published: pub.PublishedFigures
    notes: list[str] = field(default_factory=list)
    health: SubstrateHealth | None = None  # the run's substrate on the ids its data uses

    @property
    def tasks(self) -> list[str]:
        """Every task with a mean score in any entry, in name order."""
        return sorted({t for e in self.stages + self.others for t in e.evals if e.task_score(t) is not None})

    def _result_field(self, task: str, key: str) -> Any:
        return next((getattr(e.evals[task], key) for e in self.stages + self.others if task in e.evals), None)

    def task_label(self, task: str) -> str:
        """`task (metric)` as the column header, e.g. `arc_easy (accuracy)`; `perplexity`, not
        `perplexity (perplexity)`."""
        metric = self._result_field(task, "metric")
        return f"{task} ({metric})" if metric and metric != task else task

    def task_unit(self, task: str) -> str:
        """What the task's scores measure (`percent`, `perplexity`, ...), for a plot axis."""
        return str(self._result_field(task, "unit") or "score")


def _read_evals(model_dir: Path, notes: list[str]) -> dict[str, EvalRecord]:
    evals = {}
    for path in sorted((model_dir / RESULTS_DIRNAME).glob("*.json")):
        try:
            result = EvalRecord.load(path)
        except PgtError as exc:
            notes.append(f"skipped {exc}")
            continue
        evals[result.task] = result
    return evals


def _blocks_from_config(model_dir: Path) -> int | None:
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        return None
    blocks = read_json(config_path, "model config").get("num_hidden_layers")
    return blocks if isinstance(blocks, int) else None


def load_entry(path: Path, name: str, kind: str, notes: list[str]) -> ModelEntry:
    """A model entry from a model directory, or from a run directory (its deepest stage)."""
    if not path.is_dir():
        raise PgtError(f"model directory not found: {path}")
    model_dir = path
    if (path / RUN_FILE).is_file():
        kind = RunRecord.load(path / RUN_FILE).kind
        model_dir = next(reversed(stage_dirs(path)), path)
    stage = StageRecord.load(model_dir / STAGE_FILE) if (model_dir / STAGE_FILE).is_file() else None
    if stage is None and not (model_dir / "config.json").is_file():
        raise PgtError(
            f"{path} is neither a model directory nor a run directory (no config.json, stage.json or run.json)"
        )
    # A model without a stage record (a merge) has only its config and weights to say what it is.
    params = stage.params_total if stage else stored_parameters(model_dir)
    # A merge is not a deeper model: its config's layer count is its experts' together.
    blocks = None if kind == "merged" else stage.blocks if stage else _blocks_from_config(model_dir)
    return ModelEntry(name, kind, model_dir, blocks, stage, params, _read_evals(model_dir, notes))


def collect(
    run_dir: str | os.PathLike,
    *,
    baselines: tuple[str | os.PathLike, ...] = (),
    merged: tuple[str | os.PathLike, ...] = (),
    published: pub.PublishedFigures | None = None,
) -> RunReport:
    """Gather a run's stages, events, baselines and merged experts (auto-discovered plus explicit)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PgtError(f"run directory not found: {run_dir}")
    if not (run_dir / RUN_FILE).is_file():
        raise PgtError(f"{run_dir} is not a growth run directory (no run.json; make one with `pgt grow --out DIR`)")
    run = RunRecord.load(run_dir / RUN_FILE)
    notes: list[str] = []
    stages = [load_entry(path, path.name, "growth", notes) for path in stage_dirs(run_dir)]
    if not stages:
        notes.append("the run has no finished stage yet")

    others: list[ModelEntry] = []
    seen: set[Path] = set()
    for folder, extra, default_kind, option in (
        ("baselines", baselines, "baseline", "--baseline"),
        ("merged", merged, "merged", "--merged"),
    ):
        found = [p for p in sorted((run_dir / folder).glob("*")) if p.is_dir() and not p.name.startswith(".")]
        paths = [p for p in [*found, *map(Path, extra)] if p.resolve() not in seen]
        seen.update(p.resolve() for p in paths)
        others += [load_entry(p, f"{folder}/{p.name}" if p in found else str(p), default_kind, notes) for p in paths]
        if not paths:
            notes.append(f"no {folder} (looked in {run_dir / folder}/; add more with {option} DIR)")
    events = read_metrics(run_dir)
    if not events:
        notes.append("no training metrics (metrics.jsonl is missing or empty): the loss curve is missing")
    report = RunReport(
        run_dir, run, stages, others, events, published or pub.load_published(), notes, run_substrate_health(run, notes)
    )
    if stages and not report.tasks:
        notes.append("no task evaluations found (run `pgt eval RUN_DIR/stage-K --task T` to add them)")
    return report


def run_substrate_health(run: RunRecord, notes: list[str]) -> SubstrateHealth | None:
    """`pgt substrate inspect` of the run's substrate on the ids its data uses; None (with a note) where
    either directory is gone or no longer matches."""
    try:
        return inspect_substrate(run.substrate, TokenData(run.data)) if run.substrate and run.data else None
    except PgtError as exc:
        notes.append(f"substrate health not measured: {exc}")
        return None


def growth_steps(events: list[MetricsRecord]) -> list[tuple[int, float, float]]:
    """(stage, validation loss at the end of the previous stage, validation loss with the new block
    before it trains) for every growth step whose two evaluations were logged."""
    evals = [e for e in events if isinstance(e, EvalPoint)]
    steps = []
    for stage in sorted({e.stage for e in evals if e.stage > 1}):
        before = [e for e in evals if e.stage == stage - 1]
        after = [e for e in evals if e.stage == stage and e.step == 0]
        if before and after:
            steps.append((stage, float(before[-1].val_loss), float(after[0].val_loss)))
    return steps
