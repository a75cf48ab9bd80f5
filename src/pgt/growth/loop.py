"""The training loop of one stage: optimizer steps over `grad_accum` micro-batches (pgt.growth.step, which
`pgt tune` runs too), a log record every `log_every` steps, evaluations and checkpoints when the stage's
`Cadence` asks, and at the end the stage saved as `RUN_DIR/stage-K`. Every rank runs it; collectives are
marked, rank 0 alone writes."""

from __future__ import annotations

import math
from typing import Any, NoReturn

from pgt.errors import PgtError
from pgt.growth import checkpoint as ckpt
from pgt.growth import distributed as pdist
from pgt.growth.expand import frozen_prefix
from pgt.growth.metrics import (
    EvalPoint,
    GrowEvent,
    MetricsLogger,
    SourceDraw,
    SourceScore,
    StageEndEvent,
    StopEvent,
    TrainPoint,
    plot_loss,
)
from pgt.growth.records import LoraRecord, StageRecord, mixture_draws
from pgt.growth.run import RunDirectory
from pgt.growth.run_layout import stage_dir
from pgt.growth.saving import save_stage_model
from pgt.growth.schedule import Cadence, StageClock, StagePlan
from pgt.growth.setup import RunSetup
from pgt.growth.stage import StageModel
from pgt.growth.step import OptimizerStep, non_finite_part
from pgt.growth.validation import TextScore, score_sample, source_scores
from pgt.model.architecture import count_parameters

NON_FINITE = "non-finite loss or gradient"


class StageTrainer:
    """Builds the model of one stage (or loads it from `resume`), trains it, saves it."""

    def __init__(
        self,
        setup: RunSetup,
        directory: RunDirectory,
        logger: MetricsLogger,
        plan: StagePlan,
        state: ckpt.TrainState,
        resume: ckpt.Checkpoint | None,
    ) -> None:
        self.setup, self.directory, self.logger, self.plan, self.state = setup, directory, logger, plan, state
        self.config, self.ctx, self.data = setup.config, setup.ctx, setup.data
        self.tokens_per_step = setup.tokens_per_step
        self.total_steps = max(1, math.ceil(plan.tokens / setup.tokens_per_step))
        self.cadence = Cadence(
            self.total_steps, self.config.log_every, self.config.eval_every, self.config.checkpoint_every
        )
        self.stage = StageModel(self.config, setup.substrate, plan, setup.below(plan), setup.ctx, resume)
        self.stepper = OptimizerStep(
            model=self.stage.wrapped,
            loss=self.stage.loss,
            optimizer=self.stage.optimizer,
            trainable=self.stage.trainable,
            data=self.data,
            ctx=self.ctx,
            batch_size=self.config.batch_size,
            seq_len=self.config.seq_len,
            seed=self.config.seed,
            total_steps=self.total_steps,
            schedule=self.config,
            grad_accum=self.config.grad_accum,
            grad_clip=self.config.grad_clip,
            autocast=self.config.autocast,
            on_non_finite=self._stop_non_finite,
        )
        self.checkpoint_path = resume.path if resume else None  # the last good checkpoint of this stage
        self.last_eval: tuple[int, TextScore] | None = None  # (step, score) of the latest evaluation
        self.last_grad_norm = math.nan  # of the latest optimizer step
        self.progress = self.config.show_progress()  # a bar; without one, a log line at every train record

    @property
    def stage_tokens(self) -> int:
        """Training tokens of this stage so far."""
        return self.state.step * self.tokens_per_step

    def train(self) -> ckpt.TrainState:
        config, s, plan = self.config, self.state, self.plan
        self.stage.model.train()
        if s.step == 0:
            self.logger.log(
                GrowEvent(
                    stage=plan.stage,
                    global_step=s.global_step,
                    tokens=s.tokens_total,
                    init="fresh" if plan.fresh else config.init,
                    params_total=self.stage.params_total,
                    params_trainable=self.stage.params_trainable,
                    lora_blocks=len(plan.lora_blocks),
                    frozen_blocks=plan.frozen_blocks,
                )
            )
            self._evaluate()
        from tqdm.auto import tqdm

        bar = tqdm(
            total=plan.tokens,
            initial=self.stage_tokens,
            unit="tok",
            unit_scale=True,
            dynamic_ncols=True,
            desc=f"stage {plan.stage}/{self.setup.plans[-1].stage}",
            disable=not (self.ctx.is_main and self.progress),
        )
        clock = StageClock(s.wall_time, s.step)
        with frozen_prefix(self.stage.base.model.layers, plan.frozen_blocks):
            while s.step < self.total_steps and not s.stopped_early:
                loss = self._optimizer_step()
                bar.update(self.tokens_per_step)
                s.window_loss, s.window_steps = s.window_loss + loss, s.window_steps + 1
                clock.step_done()
                if self.cadence.should_log(s.step):
                    self._log_train(clock, bar)
                with clock.paused():  # evaluations and checkpoints are not training time
                    if self.cadence.should_evaluate(s.step):
                        self._evaluate()
                        s.stopped_early = bool(config.patience) and s.evals_since_best >= config.patience
                    if self.cadence.should_checkpoint(s.step, stopped=s.stopped_early):
                        s.wall_time = clock.wall_time()
                        self._checkpoint()
        bar.close()
        s.wall_time = clock.wall_time()
        if self.last_eval is None or self.last_eval[0] != s.step:
            self._evaluate()
        self._finish()
        return s

    def _optimizer_step(self) -> float:
        """One optimizer step over `grad_accum` micro-batches and its counters; returns the global mean loss."""
        s = self.state
        result = self.stepper(s.step, s.data_step)
        for name, tokens in result.source_tokens.items():
            s.source_tokens[name] = s.source_tokens.get(name, 0) + tokens
            s.stage_source_tokens[name] = s.stage_source_tokens.get(name, 0) + tokens
        self.last_grad_norm = result.grad_norm
        s.step += 1
        s.global_step += 1
        s.data_step += self.config.grad_accum
        s.tokens_total += self.tokens_per_step
        return result.loss

    def _log_train(self, clock: StageClock, bar: Any) -> None:
        """The mean loss of the steps since the last record, to metrics.jsonl, the bar or a log line."""
        s = self.state
        mean_loss, lr = s.window_loss / s.window_steps, self.stage.optimizer.param_groups[0]["lr"]
        speed = clock.tokens_per_s(self.tokens_per_step)
        self.logger.log(
            TrainPoint(
                stage=self.plan.stage,
                step=s.step,
                global_step=s.global_step,
                tokens=s.tokens_total,
                loss=mean_loss,
                lr=lr,
                grad_norm=self.last_grad_norm,
                tokens_per_s=speed,
            )
        )
        bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:.2e}")
        if not self.progress:  # nanoGPT-style log lines where no bar is drawn
            pdist.say(
                self.ctx,
                f"stage {self.plan.stage} step {s.step}/{self.total_steps} | loss {mean_loss:.4f} | "
                f"lr {lr:.2e} | {speed:,.0f} tok/s | ETA {clock.eta(s.step, self.total_steps)}",
            )
        s.window_loss, s.window_steps = 0.0, 0
        clock.new_window()

    def _score(self) -> TextScore:
        """The validation sample scored as `pgt eval` scores text (pgt.growth.validation.score_sample).
        Every rank scores the same documents (identical results, no gradient reduction). The model, not
        its DDP or compiled wrapper: FSDP2 shards it in place, and the windows' varied lengths would
        only make torch.compile recompile."""
        with pdist.autocast(self.ctx.device, self.config.autocast):
            return score_sample(
                self.stage.model,
                self.setup.substrate.tokenizer,
                self.setup.sample,
                context=self.config.context,
                pad_id=self.data.eos_id,
                device=self.ctx.device,
                batch_size=self.config.batch_size,
            )

    def _evaluate(self) -> None:
        """Score, log, and keep the early-stopping counters."""
        score, s = self._score(), self.state
        per_source = source_scores(score, self.setup.sample)
        self.logger.log(
            EvalPoint(
                stage=self.plan.stage,
                step=s.step,
                global_step=s.global_step,
                tokens=s.tokens_total,
                val_loss=score.nats_per_token,
                val_bpb=score.bits_per_byte,
                bz2_bpb=score.bz2_bpb,
                xz_bpb=score.xz_bpb,
                sources={name: SourceScore(part.val_loss, part.val_bpb) for name, part in per_source.items()} or None,
            )
        )
        pdist.say(
            self.ctx,
            f"stage {self.plan.stage} step {s.step}: val_loss {score.nats_per_token:.4f}, "
            f"{score.describe()}"
            + "".join(
                f"; {name} {part.val_loss:.4f} ({part.val_bpb:.4f} bits/byte)" for name, part in per_source.items()
            ),
        )
        if s.best_val is None or score.nats_per_token < s.best_val:
            s.best_val, s.evals_since_best = score.nats_per_token, 0
        else:
            s.evals_since_best += 1
        self.last_eval = (s.step, score)

    def _checkpoint(self, *, final: bool = False) -> None:
        """Collective: every rank gathers; rank 0 writes. A final one marks the stage complete (its weights are
        RUN_DIR/stage-K), so it holds no tensors."""
        s = self.state
        s.stage_complete = final
        s.metrics_offset = self.logger.offset() if self.ctx.is_main else 0
        trainable = {} if final else self.stage.trainable_state()
        optimizer = {} if final else self.stage.optimizer_state()
        if self.ctx.is_main:
            self.checkpoint_path = ckpt.save_checkpoint(self.setup.run_dir, s, trainable, optimizer)
            self.directory.release_set_aside()
        pdist.barrier(self.ctx)

    def _stop_non_finite(self, step: int, loss: float, grad_norm: float) -> NoReturn:
        s = self.state
        self.logger.log(
            StopEvent(
                stage=self.plan.stage,
                global_step=s.global_step,
                tokens=s.tokens_total,
                reason=NON_FINITE,
                loss=loss,
                grad_norm=grad_norm,
            )
        )
        self.directory.halt(self.plan.stage, step + 1, NON_FINITE)
        kept = (
            f"the last good checkpoint {self.checkpoint_path} is intact"
            if self.checkpoint_path
            else "no checkpoint of this stage was written yet (a rerun starts the stage again)"
        )
        raise PgtError(
            f"stage {self.plan.stage}, step {step + 1}: {non_finite_part(loss)} became non-finite (loss {loss}, "
            f"gradient norm {grad_norm}); training stopped before the update and {kept}. To resume, rerun the same "
            f"command with a lower --lr (or a smaller --grad-clip, longer --warmup-steps, other --betas, "
            f"--weight-decay or --min-lr-ratio): after a non-finite loss these may change, and run.json records "
            f"the change"
        )

    def _finish(self) -> None:
        """Merge LoRA, save RUN_DIR/stage-k (rank 0), log, and mark the stage complete."""
        s, plan, config, setup = self.state, self.plan, self.config, self.setup
        model = self.stage.full_cpu_model()
        if self.ctx.is_main:
            _, score = self.last_eval
            out = stage_dir(setup.run_dir, plan.stage)
            info = StageRecord(
                stage=plan.stage,
                kind=config.kind,
                tokens_seen=self.stage_tokens,
                tokens_total=s.tokens_total,
                steps=s.step,
                stopped_early=s.stopped_early,
                val_loss=score.nats_per_token,
                val_bpb=score.bits_per_byte,
                best_val_loss=s.best_val,
                params_total=count_parameters(model)[0],
                params_trainable=self.stage.params_trainable,
                init="fresh" if plan.fresh else config.init,
                frozen_blocks=plan.frozen_blocks,
                lora=LoraRecord(blocks=list(plan.lora_blocks), rank=config.lora_rank, alpha=config.lora_alpha)
                if plan.lora_blocks
                else None,
                embedding_trained=plan.train_embeddings,
                wall_time_s=round(s.wall_time, 3),
                val_documents=score.n_documents,
                val_tokens=score.n_tokens,
                val_bytes=score.n_bytes,
                bz2_bpb=score.bz2_bpb,
                xz_bpb=score.xz_bpb,
                mixture=mixture_draws(
                    self.data, s.stage_source_tokens, s.source_tokens, source_scores(score, setup.sample)
                ),
                tokens_budget=plan.tokens,
                started_from=setup.lineage,
            )
            save_stage_model(model, setup.substrate, out, info, data=config.data, stages=setup.plans[-1].stage)
            self.logger.log(
                StageEndEvent(
                    stage=plan.stage,
                    global_step=s.global_step,
                    tokens=s.tokens_total,
                    val_loss=info.val_loss,
                    val_bpb=info.val_bpb,
                    stopped_early=s.stopped_early,
                    sources={d.name: SourceDraw(d.tokens, d.tokens_total, d.epochs) for d in info.mixture}
                    if info.mixture
                    else None,
                )
            )
            for draw in info.mixture or []:
                pdist.say(
                    self.ctx,
                    f"stage {plan.stage}: {draw.name} (weight {draw.weight:.3g}) gave {draw.tokens:,} "
                    f"tokens; {draw.epochs:.3f} epochs of its {draw.train_tokens:,} so far",
                )
            pdist.say(
                self.ctx,
                f"stage {plan.stage}: val_loss {info.val_loss:.4f}, {score.describe()} after "
                f"{self.stage_tokens:,} tokens -> {out}",
            )
        self._checkpoint(final=True)
        if self.ctx.is_main and config.plot:
            plot_loss(setup.run_dir)


__all__ = ["NON_FINITE", "StageTrainer"]
