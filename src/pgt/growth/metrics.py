"""Observability of a run: `metrics.jsonl`, TensorBoard under `tb/`, and `loss.png`.

Every line of `metrics.jsonl` is one typed record (below), told apart by its `kind` (and an event's `event`):
  train            TrainPoint: stage, step, global_step, tokens, loss, lr, grad_norm, tokens_per_s
  eval             EvalPoint: stage, step, global_step, tokens, val_loss, val_bpb, bz2_bpb, xz_bpb, sources
  event grow       GrowEvent: a stage starts (its model's size, how it was built)
  event stage_end  StageEndEvent: a stage is saved (its validation figures, the tokens drawn per source)
  event stop       StopEvent: a non-finite loss or gradient stopped the run
The writer (the trainer) and every reader (`plot_loss`, `pgt report`, the demo, the study) share these types.
`tokens` counts training tokens since the start of the run (all stages), so growth
steps line up on one axis. On resume the file is cut back to the length it had at
the checkpoint, so records of the killed tail are not duplicated; a file shorter than that
(truncated, or padded with NUL bytes by a crash) is cut back to its last complete record,
and the log says so. A non-finite number (the loss that stopped a run) is written as null:
every line is valid JSON, and readers refuse NaN and Infinity.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from pgt.errors import PgtError
from pgt.records import Record

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"
TB_DIR = "tb"
TB_SCALARS = ("loss", "lr", "grad_norm", "tokens_per_s", "val_loss", "val_bpb")  # mirrored to TensorBoard


@dataclass(kw_only=True)
class MetricsRecord(Record):
    """One line of metrics.jsonl. The counters and each type's own measurement (loss, val_loss) are
    always present (null where non-finite); other fields are None where a line does not hold them,
    and such a None is not written."""

    WHAT: ClassVar[str] = "metrics record"
    KIND: ClassVar[str]
    EVENT: ClassVar[str | None] = None
    stage: int
    global_step: int
    tokens: int  # training tokens since the start of the run

    def to_json(self) -> dict[str, Any]:
        absent = {f.name for f in dataclasses.fields(self) if f.default is None and getattr(self, f.name) is None}
        event = {"event": self.EVENT} if self.EVENT else {}
        return {"kind": self.KIND, **event, **{k: v for k, v in super().to_json().items() if k not in absent}}


@dataclass
class SourceScore(Record):
    """A mixture source's part of an evaluation."""

    WHAT = "metrics source score"
    val_loss: float | None
    val_bpb: float | None


@dataclass
class SourceDraw(Record):
    """The tokens a stage drew from a mixture source."""

    WHAT = "metrics source draw"
    tokens: int
    tokens_total: int
    epochs: float


@dataclass(kw_only=True)
class TrainPoint(MetricsRecord):
    """The mean training loss of the steps since the previous train record."""

    KIND = "train"
    loss: float | None
    step: int | None = None
    lr: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None


@dataclass(kw_only=True)
class EvalPoint(MetricsRecord):
    """The validation sample scored (pgt.growth.validation); `sources`: per source of a mixture."""

    KIND = "eval"
    val_loss: float | None
    step: int | None = None
    val_bpb: float | None = None
    bz2_bpb: float | None = None
    xz_bpb: float | None = None
    sources: dict[str, SourceScore] | None = None


@dataclass(kw_only=True)
class GrowEvent(MetricsRecord):
    """A stage starts: a fresh model or the previous stage plus one block."""

    KIND, EVENT = "event", "grow"
    init: str | None = None
    params_total: int | None = None
    params_trainable: int | None = None
    lora_blocks: int | None = None
    frozen_blocks: int | None = None


@dataclass(kw_only=True)
class StageEndEvent(MetricsRecord):
    """A stage is saved as RUN_DIR/stage-K."""

    KIND, EVENT = "event", "stage_end"
    val_loss: float | None = None
    val_bpb: float | None = None
    stopped_early: bool | None = None
    sources: dict[str, SourceDraw] | None = None


@dataclass(kw_only=True)
class StopEvent(MetricsRecord):
    """The run stopped on its own before an update."""

    KIND, EVENT = "event", "stop"
    reason: str | None = None
    loss: float | None = None
    grad_norm: float | None = None


RECORD_TYPES: dict[tuple[str, str | None], type[MetricsRecord]] = {
    (t.KIND, t.EVENT): t for t in (TrainPoint, EvalPoint, GrowEvent, StageEndEvent, StopEvent)
}


class MetricsLogger:
    """Appends records to JSONL and mirrors the numeric ones to TensorBoard (rank 0 only)."""

    def __init__(self, run_dir: Path, *, resume_offset: int | None, resume_step: int | None, enabled: bool = True):
        self.run_dir = run_dir
        self.path = run_dir / METRICS_FILE
        self.enabled = enabled
        self._file = None
        self._tb = None
        self.repaired: str | None = None  # what resuming had to cut beyond the killed tail, for the log
        if not enabled:
            return
        if resume_offset is not None and self.path.exists():
            self.repaired = _cut_back(self.path, resume_offset)
        elif resume_offset is None:  # a fresh start: drop what an earlier attempt logged
            self.path.unlink(missing_ok=True)
            shutil.rmtree(run_dir / TB_DIR, ignore_errors=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops TensorBoard events the killed run wrote after the checkpoint.
        self._tb = SummaryWriter(str(run_dir / TB_DIR), purge_step=resume_step)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def offset(self) -> int:
        """Current length of metrics.jsonl in bytes (stored in checkpoints)."""
        if not self.enabled or self._file is None:
            return 0
        self._file.flush()
        return self._file.tell()

    def log(self, record: MetricsRecord) -> None:
        if not self.enabled:
            return
        data = record.to_json()  # non-finite numbers become null
        self._file.write(json.dumps(data, sort_keys=True, allow_nan=False) + "\n")
        self._file.flush()
        for key in TB_SCALARS:
            if isinstance(data.get(key), (int, float)):
                self._tb.add_scalar(
                    f"{'eval' if isinstance(record, EvalPoint) else 'train'}/{key}", data[key], record.global_step
                )
        if record.EVENT:
            self._tb.add_text("events", json.dumps(data, sort_keys=True), record.global_step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _record(line: bytes) -> MetricsRecord | None:
    """One line's record, or None when it is not a complete one (NaN and Infinity refused)."""
    try:
        data = json.loads(line, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError):  # JSONDecodeError is a ValueError
        return None
    if not isinstance(data, dict):
        return None
    kind = RECORD_TYPES.get((data.get("kind"), data.get("event") if data.get("kind") == "event" else None))
    try:
        return kind.from_json(data) if kind else None
    except PgtError:
        return None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number metrics.jsonl may hold")


def _cut_back(path: Path, offset: int) -> str | None:
    """Cut metrics.jsonl back to `offset` bytes (the checkpoint's), or, where the file is shorter or damaged
    before it, to its last complete record; return what was cut beyond the killed tail, for the log."""
    with open(path, "r+b") as handle:
        data = handle.read(offset)
        kept = 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n") or _record(line) is None:
                break
            kept += len(line)
        handle.truncate(kept)
    if kept == offset:
        return None
    return (
        f"{path} held {len(data):,} of the {offset:,} bytes the checkpoint recorded, or damaged ones: it "
        f"was cut back to its last complete record ({kept:,} bytes); the history after it is lost"
    )


def read_metrics(run_dir: str | os.PathLike) -> list[MetricsRecord]:
    """All records of a run's metrics.jsonl; a torn last line (a kill while writing: no newline, no NUL
    byte) is skipped, any other line that is not a complete record (garbage, NUL padding, NaN or Infinity,
    a missing field) is a one-line PgtError."""
    path = Path(run_dir) / METRICS_FILE
    records: list[MetricsRecord] = []
    if not path.exists():
        return records
    lines = path.read_bytes().splitlines(keepends=True)
    for number, line in enumerate(lines, 1):
        record = _record(line)
        if record is not None:
            records.append(record)
        elif number < len(lines) or line.endswith(b"\n") or b"\0" in line:  # NUL bytes: padding, not a torn write
            raise PgtError(f"{path} line {number} is not a complete metrics record: {line[:60]!r}")
    return records


def plot_loss(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Draw train loss (and validation points) against tokens, a dashed line at every growth step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pgt.io import atomic_file

    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    train = [r for r in records if isinstance(r, TrainPoint)]
    evals = [r for r in records if isinstance(r, EvalPoint)]
    grows = [r for r in records if isinstance(r, GrowEvent)]
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=110)
    ax.plot([r.tokens for r in train], [r.loss for r in train], lw=1, color="tab:blue", label="train loss")
    ax.plot(
        [r.tokens for r in evals], [r.val_loss for r in evals], "o", ms=4, color="tab:orange", label="validation loss"
    )
    for i, event in enumerate(grows):
        if event.stage > 1:
            ax.axvline(event.tokens, ls="--", lw=0.8, color="gray", label="growth step" if i <= 1 else None)
        ax.annotate(
            f"{event.stage}",
            (event.tokens, 1),
            xycoords=("data", "axes fraction"),
            xytext=(3, -12),
            textcoords="offset points",
            fontsize=8,
            color="gray",
        )
    ax.set_xlabel("training tokens")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_title(f"{run_dir.name}: loss by stage (numbers = blocks)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    out = Path(out) if out else run_dir / PLOT_FILE
    with atomic_file(out, "wb") as handle:
        fig.savefig(handle, format="png")
    plt.close(fig)
    return out
