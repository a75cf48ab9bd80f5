"""What a run trains and when: its stages, the learning-rate schedule, and a stage's cadence of logs,
evaluations and checkpoints (with the clock behind its tokens/s and ETA)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from pgt.errors import PgtError
from pgt.growth.config import GrowthConfig


@dataclass(frozen=True, kw_only=True)
class StagePlan:
    """What one stage builds and trains."""

    stage: int  # stage number = blocks in the model it produces
    tokens: int  # training-token budget
    fresh: bool  # True: a new model from the substrate; False: stage-(k-1) plus one block
    frozen_blocks: int = 0  # bottom blocks that run without autograd
    lora_blocks: range = range(0)  # blocks adapted through LoRA (empty: none)
    train_embeddings: bool = False


def plan_stages(config: GrowthConfig, start: int = 0) -> list[StagePlan]:
    """The stages of a run: 1..N for growth (start+1..N on a saved `start`-block model), one N-block stage
    for a baseline."""
    if config.baseline != "none":
        return [
            StagePlan(
                stage=config.stages,
                tokens=config.stages * config.tokens_per_stage,
                fresh=True,
                train_embeddings=config.baseline == "trainable-embeddings",
            )
        ]
    plans = []
    for k in range(start + 1, config.stages + 1):
        lora = config.lora_from > 0 and k >= config.lora_from and k > 1
        plans.append(
            StagePlan(
                stage=k,
                tokens=config.tokens_per_stage,
                fresh=k == 1,
                frozen_blocks=0 if lora else k - 1,
                lora_blocks=range(k - 1) if lora else range(0),
            )
        )
    return plans


class LrSchedule(Protocol):
    """The settings of `lr_at` (`pgt grow`'s GrowthConfig, `pgt tune`'s TuneConfig)."""

    lr: float
    warmup_steps: float  # below 1: a fraction of the steps
    min_lr_ratio: float


def lr_at(step: int, total_steps: int, config: LrSchedule) -> float:
    """Linear warmup to `lr`, then cosine decay to `min_lr_ratio * lr` at the stage's last step."""
    warmup = config.warmup_steps * total_steps if config.warmup_steps < 1 else config.warmup_steps
    warmup = min(math.ceil(warmup), max(total_steps - 1, 0))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup - 1)
    floor = config.min_lr_ratio
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def check_budget(tokens: int, tokens_per_step: int, budget: str, step: str) -> None:
    """Refuse a token budget smaller than one optimizer step (it would train a whole step anyway, maybe
    many times the budget); `budget` names the budget's option, `step` spells out what a step is."""
    if tokens < tokens_per_step:
        raise PgtError(
            f"{budget} {tokens:,} is less than one optimizer step of {tokens_per_step:,} tokens ({step}); "
            f"lower the batch or raise {budget.split()[0]}"
        )


@dataclass(frozen=True)
class Cadence:
    """After which optimizer steps a stage logs, evaluates and checkpoints. The stage's last step always
    logs; its final evaluation and checkpoint belong to the end of the stage, not to the cadence."""

    total_steps: int
    log_every: int
    eval_every: int  # 0: only before the first and after the last step
    checkpoint_every: int  # 0: only at the end of the stage

    def should_log(self, step: int) -> bool:
        return step % self.log_every == 0 or step == self.total_steps

    def should_evaluate(self, step: int) -> bool:
        return bool(self.eval_every) and step % self.eval_every == 0 and step < self.total_steps

    def should_checkpoint(self, step: int, *, stopped: bool) -> bool:
        return (
            bool(self.checkpoint_every)
            and step % self.checkpoint_every == 0
            and step < self.total_steps
            and not stopped
        )


class StageClock:
    """A stage's clocks: its wall time (summed over resumes), the tokens/s of the steps since the last log
    line (evaluations and checkpoints excluded), and the ETA at this session's pace."""

    def __init__(self, wall_time: float, step: int) -> None:
        now = time.perf_counter()
        self.stage_start = now - wall_time  # wall time includes evaluations and checkpoints
        self.session_start, self.session_step = now, step
        self.window_start, self.window_steps = now, 0

    def step_done(self) -> None:
        self.window_steps += 1

    def tokens_per_s(self, tokens_per_step: int) -> float:
        """This process's speed over the window since the last call to `new_window`."""
        return self.window_steps * tokens_per_step / max(time.perf_counter() - self.window_start, 1e-9)

    def new_window(self) -> None:
        self.window_start, self.window_steps = time.perf_counter(), 0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leave what runs inside (an evaluation, a checkpoint) out of the current window's speed."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.window_start += time.perf_counter() - start

    def eta(self, step: int, total_steps: int) -> str:
        pace = (time.perf_counter() - self.session_start) / max(1, step - self.session_step)
        return duration(pace * (total_steps - step))

    def wall_time(self) -> float:
        return time.perf_counter() - self.stage_start


def duration(seconds: float) -> str:
    """`1h02m`, `3m05s`, `42s`."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s" if rest >= 60 else f"{rest}s"


__all__ = ["Cadence", "LrSchedule", "StageClock", "StagePlan", "check_budget", "duration", "lr_at", "plan_stages"]
