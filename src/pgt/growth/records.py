"""The typed records of a run directory: `stage-K/stage.json` and `run.json` (docs/growth.md).

Every writer (the trainer) and every reader (the trainer on resume, the demo, the report)
goes through these types, so a missing or ill-typed field is a one-line error naming the
file. Checkpoints keep their own record, `TrainState` (pgt.growth.checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pgt.data.manifest import DataFingerprint
from pgt.records import Record

RUN_FILE = "run.json"
STAGE_FILE = "stage.json"


@dataclass
class LoraRecord(Record):
    WHAT = "LoRA description"
    blocks: list[int]  # 0-based blocks adapted (and merged into the saved model)
    rank: int
    alpha: float


@dataclass
class StageRecord(Record):
    """What one finished stage is and how well it did (`RUN_DIR/stage-K/stage.json`)."""

    WHAT = "stage description"
    stage: int
    blocks: int
    kind: str  # growth, monolithic or trainable-embeddings
    tokens_seen: int  # training tokens of this stage
    tokens_total: int  # ... of the whole run up to its end
    steps: int
    stopped_early: bool
    val_loss: float  # nats per predicted token on the validation sample
    val_bpb: float  # bits per UTF-8 byte on the same sample (pgt.growth.validation)
    best_val_loss: float | None
    params_total: int
    params_trainable: int
    init: str  # fresh, or the new block's initialisation
    frozen_blocks: int
    lora: LoraRecord | None
    embedding_trained: bool
    wall_time_s: float
    # The validation sample and the compressors on its bytes (absent in files of older pgt versions).
    val_documents: int | None = None
    val_tokens: int | None = None
    val_bytes: int | None = None
    bz2_bpb: float | None = None
    xz_bpb: float | None = None


@dataclass
class ConfigChange(Record):
    """Settings changed on a resume: optimizer or schedule ones after a non-finite loss, or the token
    data with --allow-data-change."""

    WHAT = "configuration change"
    stage: int  # where the run resumed
    step: int
    reason: str
    changes: dict[str, list[Any]]  # key -> [before, after]


@dataclass
class Halt(Record):
    """Why an unfinished run stopped on its own (the only reason today: a non-finite loss)."""

    WHAT = "halt"
    reason: str
    stage: int
    step: int


@dataclass
class RunRecord(Record):
    """A run directory's description (`RUN_DIR/run.json`): its settings, where it stands, its stages."""

    WHAT = "run description"
    kind: str
    config: dict[str, Any]  # GrowthConfig.to_dict() of the current settings
    world_size: int
    tokens_per_step: int
    stages: list[int]
    finished: bool
    results: list[StageRecord] = field(default_factory=list)
    halted: Halt | None = None
    config_changes: list[ConfigChange] = field(default_factory=list)
    data_fingerprint: DataFingerprint | None = None  # of the token data trained on (None: written before pgt had it)

    @property
    def substrate(self) -> str | None:
        """The substrate directory the run trains on (its config's `substrate`)."""
        return self.config.get("substrate")

    @property
    def data(self) -> str | None:
        """The token data directory the run trains on (its config's `data`)."""
        return self.config.get("data")


__all__ = ["RUN_FILE", "STAGE_FILE", "ConfigChange", "Halt", "LoraRecord", "RunRecord", "StageRecord"]
