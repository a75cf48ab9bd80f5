"""The typed records of a run directory: `stage-K/stage.json` and `run.json` (docs/growth.md).

Every writer (the trainer) and every reader (the trainer on resume, the demo, the report)
goes through these types, so a missing or ill-typed field is a one-line error naming the
file. Checkpoints keep their own record, `TrainState` (pgt.growth.checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pgt.data.manifest import DataFingerprint
from pgt.records import Record

if TYPE_CHECKING:
    from pgt.data.mixture import TokenMixture
    from pgt.growth.validation import SourceScore

RUN_FILE = "run.json"
STAGE_FILE = "stage.json"


@dataclass
class LoraRecord(Record):
    WHAT = "LoRA description"
    blocks: list[int]  # 0-based blocks adapted (and merged into the saved model)
    rank: int
    alpha: float


@dataclass
class Lineage(Record):
    """The saved model a run started from (`pgt grow --from`, pgt.growth.lineage)."""

    WHAT = "lineage"
    path: str  # where the source model was (resolved)
    weights_sha256: str  # sha256 of its model.safetensors
    blocks: int  # its depth: the run grows stages blocks + 1 …
    substrate_fingerprint: str
    tokens_total: int | None = None  # the source's own training tokens, where its stage.json says

    def describe(self) -> str:
        """`runs/a/stage-2 (2 blocks, 40,960 tokens, model.safetensors sha256 1a2b3c4d5e6f…)`."""
        tokens = f", {self.tokens_total:,} tokens" if self.tokens_total is not None else ""
        return f"`{self.path}` ({self.blocks} blocks{tokens}, model.safetensors sha256 {self.weights_sha256[:12]}…)"


@dataclass
class MixtureDraw(Record):
    """One source of a weighted mixture (`--data NAME=DIR:WEIGHT`): what the run drew from it and how it scores."""

    WHAT = "mixture source record"
    name: str
    path: str
    weight: float  # normalised share of the training rows
    train_tokens: int  # tokens in the source's train split
    tokens: int  # training tokens drawn from it in this stage (run.json: in the whole run)
    tokens_total: int  # ... in the run up to this point
    epochs: float  # tokens_total / train_tokens: passes over the source so far
    val_loss: float | None = None  # on the source's part of the validation sample
    val_bpb: float | None = None


def mixture_draws(
    mixture: TokenMixture,
    tokens: dict[str, int],
    tokens_total: dict[str, int],
    scores: dict[str, SourceScore] | None = None,
) -> list[MixtureDraw] | None:
    """The records of a mixture's sources (None for one plain --data DIR): weights, tokens drawn, epochs, scores."""
    if mixture.bare:
        return None
    epochs = mixture.epochs(tokens_total)
    scores = scores or {}
    return [
        MixtureDraw(
            name=source.name,
            path=source.path,
            weight=source.weight,
            train_tokens=data.train_tokens,
            tokens=tokens.get(source.name, 0),
            tokens_total=tokens_total.get(source.name, 0),
            epochs=epochs[source.name],
            val_loss=scores[source.name].val_loss if source.name in scores else None,
            val_bpb=scores[source.name].val_bpb if source.name in scores else None,
        )
        for source, data in zip(mixture.sources, mixture.data, strict=True)
    ]


@dataclass
class StageRecord(Record):
    """What one finished stage is and how well it did (`RUN_DIR/stage-K/stage.json`)."""

    WHAT = "stage description"
    stage: int  # = blocks in the stage's model (a `blocks` key that older files hold is ignored)
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
    # A weighted mixture's sources (None for one plain --data DIR); the tokens budget the stage was allowed.
    mixture: list[MixtureDraw] | None = None
    tokens_budget: int | None = None
    started_from: Lineage | None = None  # `pgt grow --from`: the saved model the run grew on (pgt.growth.lineage)

    @property
    def blocks(self) -> int:
        """Blocks in the stage's model: stage K has K (a baseline's single stage has all N)."""
        return self.stage


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
    # Of the token data trained on, every source of a mixture (None: written before pgt had it).
    data_fingerprint: DataFingerprint | None = None
    mixture: list[MixtureDraw] | None = None  # a weighted mixture's sources and the tokens drawn from each so far
    started_from: Lineage | None = None  # `pgt grow --from`: the saved model the run grew on

    @property
    def substrate(self) -> str | None:
        """The substrate directory the run trains on (its config's `substrate`)."""
        return self.config.get("substrate")

    @property
    def data(self) -> str | None:
        """The token data directory the run trains on (its config's `data`; the first source of a mixture)."""
        from pgt.data.mixture import parse_mixture

        data = self.config.get("data")
        return parse_mixture(data)[0].path if data else None


__all__ = [
    "RUN_FILE",
    "STAGE_FILE",
    "ConfigChange",
    "Halt",
    "LoraRecord",
    "MixtureDraw",
    "RunRecord",
    "StageRecord",
    "mixture_draws",
]
