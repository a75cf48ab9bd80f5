"""The progressive trainer behind `pgt grow` and `pgt.growth.grow()` (docs/growth.md).

A run is a list of stages. Growth stage k loads the saved stage-(k-1) model, stacks one
new block on it, trains the new block (plus final norm and head; from `lora_from` on
also LoRA adapters on the older blocks) for `tokens_per_stage` tokens or until
validation stops improving, and saves the result as `RUN_DIR/stage-k`. A baseline run
is a single stage that trains all N blocks from scratch for N x tokens_per_stage tokens.

`GrowthRun` checks every setting when it is made (pgt.growth.setup: the first stage's model and
optimizer are built on the meta device); nothing is written and no process group starts, so `--dry-run`
is just that. `run()` then joins torchrun's process group, opens the run directory (pgt.growth.run: lock, resume,
--overwrite) and trains each stage not yet done (pgt.growth.loop). Every process of a torchrun
launch executes this code; rank 0 alone writes files.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pgt.errors import PgtError, one_line
from pgt.growth import checkpoint as ckpt
from pgt.growth import distributed as pdist
from pgt.growth.config import GrowthConfig
from pgt.growth.loop import StageTrainer
from pgt.growth.metrics import MetricsLogger
from pgt.growth.records import STAGE_FILE, StageRecord
from pgt.growth.run import RunDirectory
from pgt.growth.run_layout import stage_dir
from pgt.growth.setup import RunSetup
from pgt.growth.stage import StageModel

PROBE_TOKENS = 16  # window length of the probe step that --overwrite runs before it removes a run


class GrowthRun:
    """One `pgt grow` invocation: its checked settings (made at construction) and its run directory;
    `run()` trains every stage not yet done."""

    def __init__(self, config: GrowthConfig, *, overwrite: bool = False, allow_data_change: bool = False) -> None:
        self.setup = RunSetup(config)
        self.ctx = self.setup.ctx
        self.directory = RunDirectory(
            self.setup, overwrite=overwrite, allow_data_change=allow_data_change, probe=self._probe_step
        )

    def _probe_step(self) -> None:
        """One real forward and backward step of the new settings' first stage on a tiny batch, on this
        process's device, wrapped (DDP/FSDP, compile) as training wraps it: whatever fails only when a
        model trains (a single-process --fsdp, an attention kernel without a backward on this device)
        fails here. Writes nothing; the random state is left as it was."""
        setup, ctx = self.setup, self.ctx
        plan = setup.plans[0]
        tiny = setup.data.train_batch(0, 1, min(setup.config.seq_len, PROBE_TOKENS), seed=setup.config.seed)
        devices = [ctx.device] if ctx.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                probe = StageModel(setup.config, setup.substrate, plan, setup.below(plan), ctx)
                with pdist.autocast(ctx.device, setup.config.autocast):
                    loss = probe.loss(probe.wrapped, tiny.to(ctx.device))
                loss.backward()
                probe.optimizer.zero_grad(set_to_none=True)
        except (ValueError, RuntimeError, TypeError, AssertionError) as exc:  # NotImplementedError included
            raise PgtError(
                f"these settings fail in a training step of stage {plan.stage}, so {setup.run_dir} "
                f"was left as it is: {one_line(exc)}"
            ) from None

    def run(self) -> Path:
        """Train every stage not yet done; return the run directory."""
        from transformers.utils import logging as hf_logging

        hf_bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # per-file load/save bars would drown the stage bars
        pdist.start(self.ctx)
        finished = False
        try:
            with self.directory.session() as opening:
                if opening.finished:
                    pdist.say(
                        self.ctx,
                        f"{self.setup.run_dir} already holds this finished run (pass --overwrite to train it again)",
                    )
                else:
                    self._train(opening.resume)
            finished = True
        finally:
            pdist.shutdown(self.ctx, finished=finished)
            if hf_bars:
                hf_logging.enable_progress_bar()
        return self.setup.run_dir

    def _train(self, resume: ckpt.Checkpoint | None) -> None:
        setup, ctx = self.setup, self.ctx
        state = resume.state if resume else ckpt.TrainState(stage=setup.plans[0].stage)
        with MetricsLogger(
            setup.run_dir,
            resume_offset=state.metrics_offset if resume else None,
            resume_step=state.global_step if resume else None,
            enabled=ctx.is_main,
        ) as logger:
            if logger.repaired:
                pdist.say(ctx, logger.repaired)
            if resume:
                pdist.say(
                    ctx,
                    f"resuming {setup.run_dir} from {resume.path.name}: stage {state.stage}, step "
                    f"{state.step}, {state.tokens_total:,} tokens trained",
                )
            sample = setup.sample
            pdist.say(
                ctx,
                f"validation sample: {len(sample.documents):,} of {sample.split_documents:,} documents, "
                f"{sample.tokens:,} of {sample.split_tokens:,} validation tokens",
            )
            for plan in setup.plans:
                if plan.stage < state.stage or (plan.stage == state.stage and state.stage_complete):
                    continue
                if plan.stage != state.stage:  # the previous stage is complete: carry the counters over
                    state = ckpt.TrainState(
                        stage=plan.stage,
                        global_step=state.global_step,
                        tokens_total=state.tokens_total,
                        data_step=state.data_step,
                        source_tokens=state.source_tokens,
                    )
                    resume = None
                state = StageTrainer(setup, self.directory, logger, plan, state, resume).train()
                resume = None
            if ctx.is_main:
                results = [StageRecord.load(stage_dir(setup.run_dir, p.stage) / STAGE_FILE) for p in setup.plans]
                self.directory.write_run_file(finished=True, stages=results)


def grow(config: GrowthConfig, *, overwrite: bool = False, allow_data_change: bool = False) -> Path:
    """Run (or resume) progressive growth or a baseline as `config` says; return the run directory.

    Rerunning the same config continues from the last checkpoint (on the same token data, unless
    `allow_data_change`); `overwrite` replaces an existing run in `config.out`, once every setting has
    been checked.
    """
    return GrowthRun(config, overwrite=overwrite, allow_data_change=allow_data_change).run()


def check_settings(config: GrowthConfig) -> RunSetup:
    """Every check `grow` makes before it touches the run directory, and nothing else (`--dry-run`)."""
    return RunSetup(config)


__all__ = ["GrowthRun", "check_settings", "grow"]
