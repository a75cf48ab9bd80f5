"""One optimizer step, the one training step of pgt: `pgt grow`'s StageTrainer and `pgt tune` both run it.

It sets the learning rate of the schedule (`lr_at`), draws `grad_accum` micro-batches from a TokenMixture
(counting the tokens drawn from each source), runs their loss and backward, clips the gradient, checks
once for a non-finite loss or gradient, and updates. In a torchrun launch all but the last micro-batch
skip the gradient reduction and [loss, bad, grad norm] travel in one collective; a single process
(`pgt tune`, a one-process `pgt grow`) runs the same code without either.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from pgt.growth import distributed as pdist
from pgt.growth.schedule import LrSchedule, lr_at

if TYPE_CHECKING:
    from pgt.data.mixture import TokenMixture


@dataclass(frozen=True)
class StepResult:
    loss: float  # mean over the micro-batches and the ranks
    grad_norm: float  # before clipping (the same on every rank)
    source_tokens: dict[str, int]  # tokens drawn from each mixture source by all ranks; empty for one plain directory


def non_finite_part(loss: float) -> str:
    """What became non-finite: the loss, or else the gradient norm (a finite loss can overflow it)."""
    return "the gradient norm" if math.isfinite(loss) else "the loss"


@dataclass(frozen=True, kw_only=True)
class OptimizerStep:
    """Called as `step(i, data_step)`: optimizer step `i` of `total_steps` on micro-batches `data_step`,
    `data_step + 1`, … of `data`."""

    model: nn.Module  # what runs forward and backward: the DDP/FSDP2/compiled wrapper, or the model itself
    loss: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # mean loss of a [B, T+1] window batch
    optimizer: torch.optim.Optimizer
    trainable: list[nn.Parameter]
    data: TokenMixture
    ctx: pdist.DistContext
    batch_size: int  # rows per rank and micro-batch
    seq_len: int
    seed: int  # data order
    total_steps: int
    schedule: LrSchedule
    grad_accum: int = 1
    grad_clip: float = 0.0  # 0: no clipping (the norm is still measured)
    autocast: str = "off"  # pdist.autocast's mode
    # Called with (step, loss, grad_norm) when a rank saw inf/NaN, before the update; it raises.
    on_non_finite: Callable[[int, float, float], NoReturn]

    def __call__(self, step: int, data_step: int) -> StepResult:
        ctx, data = self.ctx, self.data
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(step, self.total_steps, self.schedule)
        loss_sum = torch.zeros((), device=ctx.device)
        drawn: dict[str, int] = {}
        for micro in range(self.grad_accum):
            batch = data.train_batch(
                data_step + micro,
                self.batch_size,
                self.seq_len,
                seed=self.seed,
                rank=ctx.rank,
                world_size=ctx.world_size,
            ).to(ctx.device, non_blocking=True)
            with pdist.no_sync(self.model, micro < self.grad_accum - 1):
                with pdist.autocast(ctx.device, self.autocast):
                    loss = self.loss(self.model, batch) / self.grad_accum
                loss.backward()
            loss_sum += loss.detach()
            if not data.bare:  # tokens drawn per source: the same on every rank (global rows)
                counts = data.rows_per_source(data_step + micro, self.batch_size * ctx.world_size, seed=self.seed)
                for name, rows in zip(data.names, counts, strict=True):
                    drawn[name] = drawn.get(name, 0) + rows * self.seq_len
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, self.grad_clip or math.inf)
        if isinstance(grad_norm, DTensor):  # FSDP2: the norm of sharded gradients
            grad_norm = grad_norm.full_tensor()
        # One collective and one host sync per step: the global mean loss, a stop flag if any rank
        # saw inf/NaN, and the gradient norm (the same on every rank).
        bad = (~torch.isfinite(loss_sum) | ~torch.isfinite(grad_norm)).float()
        report = torch.stack([loss_sum, bad, grad_norm.to(loss_sum.dtype)])
        if ctx.distributed:
            torch.distributed.all_reduce(report)
        loss_total, bad_ranks, grad_norm_total = report.tolist()
        result = StepResult(loss_total / ctx.world_size, grad_norm_total / ctx.world_size, drawn)
        if bad_ranks > 0:
            self.on_non_finite(step, result.loss, result.grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return result


__all__ = ["OptimizerStep", "StepResult", "non_finite_part"]
