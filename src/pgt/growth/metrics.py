"""Observability of a run: `metrics.jsonl`, TensorBoard under `tb/`, and `loss.png`.

Every record is one JSON line with a `kind`:
  train  stage, step, global_step, tokens, loss, lr, grad_norm, tokens_per_s
  eval   stage, step, global_step, tokens, val_loss, val_bpb, bz2_bpb, xz_bpb
  event  stage, global_step, tokens, event (grow | stage_end | stop), details
`tokens` counts training tokens since the start of the run (all stages), so growth
steps line up on one axis. On resume the file is cut back to the length it had at
the checkpoint, so records of the killed tail are not duplicated; a file shorter than that
(truncated, or padded with NUL bytes by a crash) is cut back to its last complete record,
and the log says so. A non-finite number (the loss that stopped a run) is written as null:
every line is valid JSON, and readers refuse NaN and Infinity.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from pgt.errors import PgtError

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"
TB_DIR = "tb"
COUNTERS = ("stage", "global_step", "tokens")  # integers every record holds
KIND_FIELDS = {"train": "loss", "eval": "val_loss", "event": "event"}  # each kind's own field


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

    def offset(self) -> int:
        """Current length of metrics.jsonl in bytes (stored in checkpoints)."""
        if not self.enabled or self._file is None:
            return 0
        self._file.flush()
        return self._file.tell()

    def log(self, kind: str, **record: Any) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, **{k: None if isinstance(v, float) and not math.isfinite(v) else v
                                   for k, v in record.items()}}
        self._file.write(json.dumps(record, sort_keys=True, allow_nan=False) + "\n")
        self._file.flush()
        step = record.get("global_step", 0)
        for key in ("loss", "lr", "grad_norm", "tokens_per_s", "val_loss", "val_bpb"):
            if isinstance(record.get(key), (int, float)):
                tag = f"{'eval' if kind == 'eval' else 'train'}/{key}"
                self._tb.add_scalar(tag, record[key], step)
        if kind == "event":
            self._tb.add_text("events", json.dumps(record, sort_keys=True), step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _record(line: bytes) -> dict[str, Any] | None:
    """One line's record, or None when it is not a complete JSON object (NaN and Infinity refused)."""
    try:
        record = json.loads(line, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError):  # JSONDecodeError is a ValueError
        return None
    if not isinstance(record, dict) or record.get("kind") not in KIND_FIELDS:
        return None
    if any(not isinstance(record.get(key), int) for key in COUNTERS) or KIND_FIELDS[record["kind"]] not in record:
        return None
    return record


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
    return (f"{path} held {len(data):,} of the {offset:,} bytes the checkpoint recorded, or damaged ones: it "
            f"was cut back to its last complete record ({kept:,} bytes); the history after it is lost")


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a run's metrics.jsonl; a torn last line (a kill while writing: no newline, no NUL
    byte) is skipped, any other line that is not a complete record (garbage, NUL padding, NaN or Infinity,
    a missing field) is a one-line PgtError."""
    path = Path(run_dir) / METRICS_FILE
    records: list[dict[str, Any]] = []
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
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    grows = [r for r in records if r["kind"] == "event" and r.get("event") == "grow"]
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=110)
    ax.plot([r["tokens"] for r in train], [r["loss"] for r in train], lw=1, color="tab:blue", label="train loss")
    ax.plot([r["tokens"] for r in evals], [r["val_loss"] for r in evals], "o", ms=4, color="tab:orange",
            label="validation loss")
    for i, event in enumerate(grows):
        if event["stage"] > 1:
            ax.axvline(event["tokens"], ls="--", lw=0.8, color="gray", label="growth step" if i <= 1 else None)
        ax.annotate(f"{event['stage']}", (event["tokens"], 1), xycoords=("data", "axes fraction"),
                    xytext=(3, -12), textcoords="offset points", fontsize=8, color="gray")
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
