"""Resumable checkpoints: trainable weights, optimizer state, counters and RNG states.

Layout under `RUN_DIR/checkpoints/`:
  stage-02-step-000120/          one complete checkpoint, written with pgt.io.atomic_dir
    trainable.safetensors        the parameters that train in this stage (LoRA factors included)
    optimizer.safetensors        AdamW moments and step counts, keyed `<param name>/<slot>`
    rng.safetensors              torch CPU (and CUDA) generator states
    state.json                   stage, counters, best validation loss, sha256 of the files
  latest.json                    {"name": ...}: written atomically after the directory is complete

A kill at any moment leaves either the previous or the new checkpoint named by
`latest.json`, never a half-written one; older directories are removed only after
the pointer moved. Should `latest.json` itself be lost, the newest checkpoint whose
checksums verify is found by scanning (docs/growth.md, "Resume"). Frozen weights are not
stored: they are the previous stage's saved model (`RUN_DIR/stage-(K-1)`), rebuilt exactly on resume. Tensors go to
safetensors and scalars to JSON, never pickle. What follows from the rest is not stored: the stage's
tokens (steps x the run's tokens per step) and the optimizer's groups (this run's settings; fields that
checkpoints of older pgt versions hold are ignored).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import torch

from pgt.errors import PgtError
from pgt.io import atomic_dir, file_sha256, read_json, write_json
from pgt.records import Record

CHECKPOINT_DIR = "checkpoints"
POINTER_FILE = "latest.json"
STATE_FILE = "state.json"
FORMAT_VERSION = 1
TENSOR_FILES = ("trainable.safetensors", "optimizer.safetensors", "rng.safetensors")


@dataclass
class TrainState(Record):
    """The counters that, with the weights and optimizer, define where a run stands (a checkpoint's
    `state.json`, beside its format version and file checksums)."""

    WHAT: ClassVar[str] = "checkpoint state"
    stage: int = 1  # stage being trained (1-based)
    step: int = 0  # optimizer steps done in this stage
    stage_complete: bool = False  # stage weights saved as RUN_DIR/stage-K; the next stage starts fresh
    global_step: int = 0  # optimizer steps over all stages (TensorBoard x-axis)
    tokens_total: int = 0  # training tokens over all stages
    data_step: int = 0  # micro-batches drawn so far: the data loader's step argument
    best_val: float | None = None  # best validation loss in this stage
    evals_since_best: int = 0  # evaluations without improvement (early stopping)
    stopped_early: bool = False  # the stage ended by patience
    metrics_offset: int = 0  # length of metrics.jsonl at this checkpoint
    window_loss: float = 0.0  # summed loss of the steps since the last train record
    window_steps: int = 0  # ... and their number (a resumed run logs the same means)
    wall_time: float = 0.0  # seconds spent training in this stage (summed over resumes)
    # Training tokens drawn from each source of a weighted mixture: in the whole run, and in this stage.
    source_tokens: dict[str, int] = field(default_factory=dict)
    stage_source_tokens: dict[str, int] = field(default_factory=dict)

    def check(self, where: str) -> None:
        counters = {f.name: getattr(self, f.name) for f in fields(self) if f.type in ("int", "float")}
        negative = [f"{name} {value}" for name, value in counters.items() if value < 0]
        if negative or self.stage < 1:
            raise PgtError(
                f"{where}: {', '.join(negative) or f'stage {self.stage}'} is impossible (damaged); {START_OVER}"
            )


def rng_state() -> dict[str, torch.Tensor]:
    """The torch generator states (CPU and each CUDA device)."""
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            states[f"cuda{index}"] = state
    return states


def set_rng_state(states: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(states["cpu"])
    cuda = [states[k] for k in sorted(states) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def flatten_optimizer_state(state: dict[str, dict[str, Any]]) -> dict[str, torch.Tensor]:
    """{param: {slot: tensor}} -> {"param/slot": tensor} for safetensors."""
    flat = {}
    for name, slots in state.items():
        for slot, value in slots.items():
            flat[f"{name}/{slot}"] = torch.as_tensor(value).detach().contiguous().cpu()
    return flat


def unflatten_optimizer_state(flat: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    state: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        name, _, slot = key.rpartition("/")
        state.setdefault(name, {})[slot] = value
    return state


def save_checkpoint(
    run_dir: Path,
    train_state: TrainState,
    trainable: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
) -> Path:
    """Write a complete checkpoint, move `latest.json` to it, then drop older ones (rank 0 only)."""
    from safetensors.torch import save_file

    root = run_dir / CHECKPOINT_DIR
    name = f"stage-{train_state.stage:02d}-step-{train_state.step:06d}" + (
        "-done" if train_state.stage_complete else ""
    )
    with atomic_dir(root / name, overwrite=True) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in trainable.items()}, str(tmp / TENSOR_FILES[0]))
        save_file(flatten_optimizer_state(optimizer_state.get("state", {})), str(tmp / TENSOR_FILES[1]))
        save_file(rng_state(), str(tmp / TENSOR_FILES[2]))
        files = {f: file_sha256(tmp / f) for f in TENSOR_FILES}
        write_json(tmp / STATE_FILE, {"format_version": FORMAT_VERSION, "files": files, **train_state.to_json()})
    write_json(root / POINTER_FILE, {"name": name})
    for old in root.iterdir():
        if old.is_dir() and old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return root / name


@dataclass
class Checkpoint:
    """A loaded checkpoint."""

    path: Path
    state: TrainState
    trainable: dict[str, torch.Tensor]
    optimizer_state: dict[str, dict[str, torch.Tensor]]  # the moments and step counts, keyed by parameter name
    rng: dict[str, torch.Tensor]


START_OVER = "pass --overwrite to discard the run and start over"


def has_checkpoint(run_dir: Path) -> bool:
    return (run_dir / CHECKPOINT_DIR / POINTER_FILE).exists()


def load_checkpoint(run_dir: Path) -> Checkpoint:
    """Load the checkpoint `latest.json` names; any damage is a PgtError, never a fresh start."""
    root = run_dir / CHECKPOINT_DIR
    pointer = read_json(root / POINTER_FILE, "checkpoint pointer")
    if not isinstance(pointer, dict) or not isinstance(pointer.get("name"), str):
        raise PgtError(f"checkpoint pointer {root / POINTER_FILE} is corrupt; {START_OVER}")
    path = root / pointer["name"]
    if not path.is_dir():
        raise PgtError(f"checkpoint {path} named by {POINTER_FILE} is missing; {START_OVER}")
    return load_checkpoint_dir(path)


def newest_verified_checkpoint(run_dir: Path) -> Checkpoint | None:
    """Without `latest.json`: the newest checkpoint directory whose files verify, or None.

    Names sort by stage, then step, then `-done` after the steps of its stage."""
    root = run_dir / CHECKPOINT_DIR
    candidates = sorted((p for p in root.glob("stage-*-step-*") if p.is_dir()), reverse=True) if root.is_dir() else []
    for path in candidates:
        try:
            return load_checkpoint_dir(path)
        except PgtError:
            continue
    return None


def load_checkpoint_dir(path: Path) -> Checkpoint:
    """Load one checkpoint directory, verifying every file's sha256."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_json(path / STATE_FILE, "checkpoint state")
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
        raise PgtError(f"checkpoint state {path / STATE_FILE} is damaged (no file checksums); {START_OVER}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise PgtError(f"checkpoint {path} has format {meta.get('format_version')}, expected {FORMAT_VERSION}")
    tensors = {}
    for file in TENSOR_FILES:
        expected = meta.get("files", {}).get(file)
        if not (path / file).is_file():
            raise PgtError(f"checkpoint {path} lacks {file}; it is damaged ({START_OVER})")
        if file_sha256(path / file) != expected:
            raise PgtError(f"checkpoint file {path / file} is corrupt (checksum mismatch); {START_OVER}")
        try:
            tensors[file] = load_file(str(path / file))
        except (SafetensorError, OSError) as exc:
            raise PgtError(f"checkpoint file {path / file} is corrupt: {exc}") from None
    state = TrainState.from_json(meta, path / STATE_FILE)
    optimizer_state = unflatten_optimizer_state(tensors[TENSOR_FILES[1]])
    return Checkpoint(path, state, tensors[TENSOR_FILES[0]], optimizer_state, tensors[TENSOR_FILES[2]])
