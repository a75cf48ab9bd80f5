"""The progressive trainer behind `pgt grow` and `pgt.growth.grow()`.

A run is a list of stages. Growth stage k loads the saved stage-(k-1) model, stacks one
new block on it, trains the new block (plus final norm and head; from `lora_from` on
also LoRA adapters on the older blocks) for `tokens_per_stage` tokens or until
validation stops improving, and saves the result as `RUN_DIR/stage-k`. A baseline run
is a single stage that trains all N blocks from scratch for N x tokens_per_stage tokens.

Every process of a torchrun launch executes this code; rank 0 alone writes files.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributed.tensor import DTensor

from pgt.errors import PgtError
from pgt.growth import checkpoint as ckpt
from pgt.growth import distributed as pdist
from pgt.growth.config import GrowthConfig, config_differences
from pgt.growth.expand import add_block, count_parameters, frozen_prefix, set_trainable
from pgt.growth.lora import attach_lora, merge_lora
from pgt.growth.metrics import MetricsLogger, plot_loss
from pgt.io import atomic_dir, atomic_file, read_json, write_json

RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
STAGE_FILE = "stage.json"
# Other runs that live inside a run directory by convention (docs/architecture.md).
NESTED_DIRS = frozenset({"baselines", "merged"})


@dataclass(frozen=True)
class StagePlan:
    """What one stage builds and trains."""

    stage: int  # stage number = blocks in the model it produces
    tokens: int  # training-token budget
    fresh: bool  # True: a new model from the substrate; False: stage-(k-1) plus one block
    frozen_blocks: int  # bottom blocks that run without autograd
    lora_blocks: range  # blocks adapted through LoRA (empty: none)
    train_embeddings: bool = False


def plan_stages(config: GrowthConfig) -> list[StagePlan]:
    """The stages of a run: 1..N for growth, one N-block stage for a baseline."""
    if config.baseline != "none":
        return [StagePlan(config.stages, config.stages * config.tokens_per_stage, True, 0, range(0),
                          train_embeddings=config.baseline == "trainable-embeddings")]
    plans = []
    for k in range(1, config.stages + 1):
        lora = config.lora_from > 0 and k >= config.lora_from and k > 1
        plans.append(StagePlan(k, config.tokens_per_stage, k == 1, 0 if lora else k - 1,
                               range(k - 1) if lora else range(0)))
    return plans


def stage_dir(run_dir: Path, stage: int) -> Path:
    return run_dir / f"stage-{stage}"


def lr_at(step: int, total_steps: int, config: GrowthConfig) -> float:
    """Linear warmup to `lr`, then cosine decay to `min_lr_ratio * lr` at the stage's last step."""
    warmup = config.warmup_steps * total_steps if config.warmup_steps < 1 else config.warmup_steps
    warmup = min(math.ceil(warmup), max(total_steps - 1, 0))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup - 1)
    floor = config.min_lr_ratio
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def causal_lm_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of a [B, T+1] window batch."""
    logits = model(input_ids=batch[:, :-1], use_cache=False).logits
    return F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())


class GrowthRun:
    """One `pgt grow` invocation: prepares (or resumes) the run directory and trains its stages."""

    def __init__(self, config: GrowthConfig, *, restart: bool = False) -> None:
        from pgt.data.loader import TokenData
        from pgt.substrate.store import Substrate

        config.validate()
        self.config = config
        self.restart = restart
        self.run_dir = Path(config.out)
        self.ctx = pdist.init_distributed(config.device)
        self.substrate = Substrate.load(config.substrate)
        if self.substrate.dim % config.heads:
            raise PgtError(f"--heads {config.heads} does not divide the substrate's dimension {self.substrate.dim}")
        self.data = TokenData(config.data)
        self.data.check_tokenizer(self.substrate.fingerprint)
        self.plans = plan_stages(config)
        self.tokens_per_step = config.batch_size * config.grad_accum * config.seq_len * self.ctx.world_size
        # Batches of the global batch size, so the validation set does not depend on the world size.
        self.validation = self.data.validation_batches(config.batch_size * self.ctx.world_size, config.seq_len,
                                                       config.eval_batches)
        self.logger: MetricsLogger | None = None

    # ------------------------------------------------------------------ run directory

    def _open_run_dir(self) -> ckpt.Checkpoint | None | bool:
        """Start, resume or recognise a finished run. Returns the checkpoint to resume from,
        None for a fresh start, or True when the run is already finished."""
        run_file = self.run_dir / RUN_FILE
        foreign = [p.name for p in self.run_dir.iterdir() if p.name not in NESTED_DIRS] if self.run_dir.is_dir() else []
        if foreign and not run_file.exists():
            raise PgtError(f"{self.run_dir} exists and is not a pgt run directory (it holds {foreign[0]}); "
                           "choose another --out")
        if run_file.exists() and self.restart:
            pdist.barrier(self.ctx)
            if self.ctx.is_main:  # only what a run writes: baselines/ and merged/ inside it survive
                for path in self.run_dir.iterdir():
                    if path.name in NESTED_DIRS:
                        continue
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
            pdist.barrier(self.ctx)
        if run_file.exists():
            saved = read_json(run_file, "run description")
            differences = config_differences(saved.get("config", {}), self.config)
            if differences:
                shown = ", ".join(f"{k}: {saved['config'].get(k)!r} -> {self.config.to_dict().get(k)!r}"
                                  for k in differences[:4])
                raise PgtError(f"{self.run_dir} holds a run with a different configuration ({shown}); "
                               "rerun with the same settings to resume, or pass --restart to discard it")
            if saved.get("tokens_per_step") != self.tokens_per_step:
                raise PgtError(
                    f"{self.run_dir} was trained with {saved.get('tokens_per_step')} tokens per step "
                    f"({saved.get('world_size')} processes); this launch gives {self.tokens_per_step}. Resume with "
                    "the same global batch (batch_size x grad_accum x processes), or pass --restart")
            if saved.get("finished") and saved["config"].get("stages") == self.config.stages:
                return True
            if ckpt.has_checkpoint(self.run_dir):
                self._record_config()  # e.g. a raised stage count
                return ckpt.load_checkpoint(self.run_dir)
        self._record_config()
        return None

    def _record_config(self) -> None:
        """Write run.json (not finished) and config.yaml for the current settings (rank 0)."""
        import yaml

        pdist.barrier(self.ctx)
        if self.ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._write_run_file(finished=False)
            with atomic_file(self.run_dir / CONFIG_FILE, "w", encoding="utf-8") as handle:
                yaml.safe_dump(self.config.to_dict(), handle, sort_keys=True)
        pdist.barrier(self.ctx)

    def _write_run_file(self, *, finished: bool, stages: list[dict[str, Any]] | None = None) -> None:
        write_json(self.run_dir / RUN_FILE, {
            "kind": self.config.kind,
            "config": self.config.to_dict(),
            "world_size": self.ctx.world_size,
            "tokens_per_step": self.tokens_per_step,
            "stages": [p.stage for p in self.plans],
            "finished": finished,
            **({"results": stages} if stages is not None else {}),
        })

    # ------------------------------------------------------------------ the run

    def run(self) -> Path:
        """Train every stage not yet done; return the run directory."""
        from transformers.utils import logging as hf_logging

        hf_bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # per-file load/save bars would drown the stage bars
        try:
            resume = self._open_run_dir()
            if resume is True:
                if self.ctx.is_main:
                    print(f"{self.run_dir} already holds this finished run (pass --restart to train it again)")
                return self.run_dir
            state = resume.state if resume else ckpt.TrainState(stage=self.plans[0].stage)
            self.logger = MetricsLogger(
                self.run_dir,
                resume_offset=state.metrics_offset if resume else None,
                resume_step=state.global_step if resume else None,
                enabled=self.ctx.is_main,
            )
            for plan in self.plans:
                if plan.stage < state.stage or (plan.stage == state.stage and state.stage_complete):
                    continue
                if plan.stage != state.stage:  # the previous stage is complete: carry the counters over
                    state = ckpt.TrainState(stage=plan.stage, global_step=state.global_step,
                                            tokens_total=state.tokens_total, data_step=state.data_step)
                    resume = None
                state = StageTrainer(self, plan, state, resume).train()
                resume = None
            if self.ctx.is_main:
                results = [read_json(stage_dir(self.run_dir, p.stage) / STAGE_FILE, "stage description")
                           for p in self.plans]
                self._write_run_file(finished=True, stages=results)
                plot_loss(self.run_dir)
            return self.run_dir
        finally:
            if self.logger:
                self.logger.close()
            pdist.shutdown(self.ctx)
            if hf_bars:
                hf_logging.enable_progress_bar()


class StageTrainer:
    """Builds the model of one stage, trains it, saves it."""

    def __init__(self, run: GrowthRun, plan: StagePlan, state: ckpt.TrainState,
                 resume: ckpt.Checkpoint | None) -> None:
        self.run = run
        self.config = run.config
        self.ctx = run.ctx
        self.plan = plan
        self.state = state
        self.total_steps = max(1, math.ceil(plan.tokens / run.tokens_per_step))
        self.model = self._build_model()
        self.params_total, self.params_trainable = count_parameters(self.model)
        self.model.to(self.ctx.device)
        bf16 = self.config.autocast == "bf16" or (self.config.autocast == "auto" and self.ctx.device.type == "cuda")
        self.wrapped = pdist.wrap_model(self.model, self.ctx, fsdp=self.config.fsdp, bf16=bf16)
        if self.config.compile:
            self.wrapped = torch.compile(self.wrapped)
        self.trainable_parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = self._optimizer()
        if resume is not None:
            pdist.load_training_state(self.wrapped, self.optimizer, resume.trainable, resume.optimizer_state, self.ctx)
            ckpt.set_rng_state(resume.rng)
        self.checkpoint_path = resume.path if resume else None

    # ------------------------------------------------------------------ model

    def _build_model(self) -> nn.Module:
        from pgt.model.architecture import from_substrate
        from pgt.model.loading import load_model

        config, plan = self.config, self.plan
        seed = config.seed * 1000 + plan.stage  # block init differs per stage, reproducibly
        if plan.fresh:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = from_substrate(
                    self.run.substrate,
                    num_hidden_layers=plan.stage,
                    num_attention_heads=config.heads,
                    intermediate_size=config.intermediate_multiple * self.run.substrate.dim,
                    max_position_embeddings=config.context,
                    hidden_act=config.hidden_act,
                    attn_implementation=config.attn_implementation,
                    freeze_embeddings=not plan.train_embeddings,
                )
                if plan.train_embeddings:  # the conventional baseline: a learned matrix from a random start
                    nn.init.normal_(model.model.embed_tokens.weight, std=model.config.initializer_range)
            model.float()
            set_trainable(model, [model] if plan.train_embeddings else [*model.model.layers, model.model.norm,
                                                                        model.lm_head])
            return model
        model, _ = load_model(stage_dir(self.run.run_dir, plan.stage - 1),
                              attn_implementation=config.attn_implementation)
        new_block = add_block(model, config.init, seed=seed)
        if plan.lora_blocks:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)  # peft draws the A factors from the global generator
                model = attach_lora(model, plan.lora_blocks, rank=config.lora_rank, alpha=config.lora_alpha)
        base = model.get_base_model() if plan.lora_blocks else model
        adapters = [p for n, p in model.named_parameters() if "lora_" in n]
        trainable = [new_block]
        if config.train_norm:
            trainable.append(base.model.norm)
        if config.train_head:
            trainable.append(base.lm_head)
        set_trainable(model, trainable)
        for parameter in adapters:
            parameter.requires_grad_(True)
        return model

    def _optimizer(self) -> torch.optim.Optimizer:
        """AdamW; weight decay on matrices only (not on norms)."""
        decay = [p for p in self.trainable_parameters if p.ndim >= 2]
        no_decay = [p for p in self.trainable_parameters if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": self.config.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=self.config.lr,
                                 betas=self.config.betas, foreach=self.ctx.device.type == "cuda" or None)

    def _base_layers(self) -> nn.ModuleList:
        base = self.model.get_base_model() if self.plan.lora_blocks else self.model
        return base.model.layers

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """Mean validation loss (nats/token) and bits per byte over the fixed validation batches.
        Every rank evaluates the same batches (identical results, no collective needed)."""
        self.model.eval()
        total_nats, predicted = 0.0, 0
        with pdist.autocast(self.ctx.device, self.config.autocast):
            for batch in self.run.validation:
                batch = batch.to(self.ctx.device)
                logits = self.wrapped(input_ids=batch[:, :-1], use_cache=False).logits
                nats = F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten(), reduction="sum")
                total_nats += float(nats)
                predicted += batch[:, 1:].numel()
        self.model.train()
        return total_nats / predicted, self.run.data.bits_per_byte(total_nats, predicted)

    def _log_eval(self) -> float:
        val_loss, val_bpb = self.evaluate()
        s = self.state
        self.run.logger.log("eval", stage=self.plan.stage, step=s.step, global_step=s.global_step,
                            tokens=s.tokens_total, val_loss=val_loss, val_bpb=val_bpb)
        if s.best_val is None or val_loss < s.best_val:
            s.best_val, s.evals_since_best = val_loss, 0
        else:
            s.evals_since_best += 1
        self.last_eval = (s.step, val_loss, val_bpb)
        return val_loss

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint(self, *, final: bool = False) -> None:
        """Collective: every rank gathers; rank 0 writes."""
        s = self.state
        s.stage_complete = final
        s.metrics_offset = self.run.logger.offset() if self.ctx.is_main else 0
        trainable = {} if final else pdist.trainable_state(self.wrapped, self.ctx)
        optimizer = {} if final else pdist.optimizer_state(self.wrapped, self.optimizer, self.ctx)
        if self.ctx.is_main:
            self.checkpoint_path = ckpt.save_checkpoint(self.run.run_dir, s, trainable, optimizer)
        pdist.barrier(self.ctx)

    # ------------------------------------------------------------------ training

    def train(self) -> ckpt.TrainState:
        config, s, plan, ctx = self.config, self.state, self.plan, self.ctx
        self.last_eval: tuple[int, float, float] | None = None
        self.model.train()
        if s.step == 0 and not s.stage_tokens:
            self.run.logger.log("event", event="grow", stage=plan.stage, global_step=s.global_step,
                                tokens=s.tokens_total, init="fresh" if plan.fresh else config.init,
                                params_total=self.params_total, params_trainable=self.params_trainable,
                                lora_blocks=len(plan.lora_blocks), frozen_blocks=plan.frozen_blocks)
            self._log_eval()
        from tqdm.auto import tqdm

        bar = tqdm(total=plan.tokens, initial=s.stage_tokens, unit="tok", unit_scale=True, dynamic_ncols=True,
                   desc=f"stage {plan.stage}/{self.run.plans[-1].stage}", disable=not (ctx.is_main and config.progress))
        window_start, timed_steps = time.perf_counter(), 0  # tokens/s of this process's own steps
        stage_start = time.perf_counter() - s.wall_time
        with frozen_prefix(self._base_layers(), plan.frozen_blocks):
            while s.step < self.total_steps and not s.stopped_early:
                loss = self._optimizer_step()
                bar.update(self.run.tokens_per_step)
                s.window_loss, s.window_steps, timed_steps = s.window_loss + loss, s.window_steps + 1, timed_steps + 1
                if s.step % config.log_every == 0 or s.step == self.total_steps:
                    elapsed = time.perf_counter() - window_start
                    mean_loss = s.window_loss / s.window_steps
                    self.run.logger.log(
                        "train", stage=plan.stage, step=s.step, global_step=s.global_step, tokens=s.tokens_total,
                        loss=mean_loss, lr=self.optimizer.param_groups[0]["lr"], grad_norm=self.last_grad_norm,
                        tokens_per_s=timed_steps * self.run.tokens_per_step / max(elapsed, 1e-9))
                    bar.set_postfix(loss=f"{mean_loss:.3f}")
                    s.window_loss, s.window_steps = 0.0, 0
                    window_start, timed_steps = time.perf_counter(), 0
                paused = time.perf_counter()  # evaluation and checkpoints do not count as training time
                if config.eval_every and s.step % config.eval_every == 0 and s.step < self.total_steps:
                    self._log_eval()
                    s.stopped_early = bool(config.patience) and s.evals_since_best >= config.patience
                if (config.checkpoint_every and s.step % config.checkpoint_every == 0
                        and s.step < self.total_steps and not s.stopped_early):
                    s.wall_time = time.perf_counter() - stage_start
                    self._checkpoint()
                window_start += time.perf_counter() - paused
        bar.close()
        s.wall_time = time.perf_counter() - stage_start
        if self.last_eval is None or self.last_eval[0] != s.step:
            self._log_eval()
        self._finish_stage()
        return s

    def _optimizer_step(self) -> float:
        """One optimizer step over `grad_accum` micro-batches; returns the global mean loss."""
        config, s, ctx = self.config, self.state, self.ctx
        lr = lr_at(s.step, self.total_steps, config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=ctx.device)
        for micro in range(config.grad_accum):
            batch = self.run.data.train_batch(s.data_step + micro, config.batch_size, config.seq_len,
                                              seed=config.seed, rank=ctx.rank, world_size=ctx.world_size)
            batch = batch.to(ctx.device, non_blocking=True)
            with pdist.no_sync(self.wrapped, micro < config.grad_accum - 1):
                with pdist.autocast(ctx.device, config.autocast):
                    loss = causal_lm_loss(self.wrapped, batch) / config.grad_accum
                loss.backward()
            loss_sum += loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable_parameters, config.grad_clip or float("inf"))
        if isinstance(grad_norm, DTensor):  # FSDP2: the norm of sharded gradients
            grad_norm = grad_norm.full_tensor()
        # One collective and one host sync per step: the global mean loss, a stop flag if any rank
        # saw inf/NaN, and the gradient norm (the same on every rank).
        bad = (~torch.isfinite(loss_sum) | ~torch.isfinite(grad_norm)).float()
        report = torch.stack([loss_sum, bad, grad_norm.to(loss_sum.dtype)])
        if ctx.distributed:
            torch.distributed.all_reduce(report)
        loss_total, bad_ranks, grad_norm_total = report.tolist()
        mean_loss, self.last_grad_norm = loss_total / ctx.world_size, grad_norm_total / ctx.world_size
        if bad_ranks > 0:
            self._stop_non_finite(mean_loss, self.last_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        s.step += 1
        s.global_step += 1
        s.data_step += config.grad_accum
        s.stage_tokens += self.run.tokens_per_step
        s.tokens_total += self.run.tokens_per_step
        return mean_loss

    def _stop_non_finite(self, loss: float, grad_norm: float) -> None:
        s = self.state
        self.run.logger.log("event", event="stop", stage=self.plan.stage, global_step=s.global_step,
                            tokens=s.tokens_total, reason="non-finite loss or gradient", loss=loss,
                            grad_norm=grad_norm)
        kept = f"the last good checkpoint {self.checkpoint_path} is intact" if self.checkpoint_path else \
            "no checkpoint of this stage was written yet"
        raise PgtError(
            f"stage {self.plan.stage}, step {s.step + 1}: the loss became non-finite (loss {loss}, gradient norm "
            f"{grad_norm}); training stopped before the update and {kept}; lower --lr or --grad-clip and rerun"
        )

    def _finish_stage(self) -> None:
        """Merge LoRA, save RUN_DIR/stage-k (rank 0), log, and mark the stage complete."""
        s, plan = self.state, self.plan
        model = self._full_cpu_model()
        if self.ctx.is_main:
            _, val_loss, val_bpb = self.last_eval
            info = {
                "stage": plan.stage, "blocks": plan.stage, "kind": self.config.kind,
                "tokens_seen": s.stage_tokens, "tokens_total": s.tokens_total, "steps": s.step,
                "stopped_early": s.stopped_early, "val_loss": val_loss, "val_bpb": val_bpb,
                "best_val_loss": s.best_val, "params_total": count_parameters(model)[0],
                "params_trainable": self.params_trainable,
                "init": "fresh" if plan.fresh else self.config.init,
                "frozen_blocks": plan.frozen_blocks,
                "lora": {"blocks": list(plan.lora_blocks), "rank": self.config.lora_rank,
                         "alpha": self.config.lora_alpha} if plan.lora_blocks else None,
                "embedding_trained": plan.train_embeddings,
                "wall_time_s": round(s.wall_time, 3),
            }
            save_stage_model(model, self.run.substrate, stage_dir(self.run.run_dir, plan.stage), info)
            self.run.logger.log("event", event="stage_end", stage=plan.stage, global_step=s.global_step,
                                tokens=s.tokens_total, val_loss=val_loss, val_bpb=val_bpb,
                                stopped_early=s.stopped_early)
            print(f"stage {plan.stage}: val_loss {val_loss:.4f}, {val_bpb:.4f} bits/byte after "
                  f"{s.stage_tokens:,} tokens -> {stage_dir(self.run.run_dir, plan.stage)}")
        self._checkpoint(final=True)
        if self.ctx.is_main:
            plot_loss(self.run.run_dir)

    def _full_cpu_model(self) -> nn.Module:
        """The trained model, LoRA merged, as a plain ArceeForCausalLM (on rank 0 for FSDP)."""
        if not self.config.fsdp:
            return merge_lora(self.model)
        full = pdist.full_model_state(self.wrapped, self.ctx)  # collective: every rank takes part
        if not self.ctx.is_main:
            return self.model
        model = self._build_model()  # a CPU copy of the same structure to receive the gathered weights
        model.load_state_dict(full)
        return merge_lora(model)


def save_stage_model(model: nn.Module, substrate: Any, out: Path, info: dict[str, Any]) -> None:
    """Write a stage as a standalone model directory (pgt.model.loading.save_model) plus
    `stage.json`, all appearing at once.

    A model whose embedding trained (the trainable-embeddings baseline) no longer holds the
    substrate's matrix, so it must not claim the substrate's fingerprint: its directory
    records the fingerprint of its own matrix, `derived_from` the substrate's, and
    `embedding_trained: true`, which keeps load_model's three-way check meaningful.
    """
    from pgt.model.loading import embedding_fingerprint, save_model

    meta = substrate.meta
    if info.get("embedding_trained"):
        meta = dataclasses.replace(meta, fingerprint=embedding_fingerprint(model, meta),
                                   derived_from=substrate.fingerprint, embedding_trained=True)
        model.config.substrate_fingerprint = meta.fingerprint
        model.config.embedding_trained = True
    with atomic_dir(out, overwrite=True) as tmp:
        save_model(model, substrate.tokenizer, tmp, substrate_meta=meta, overwrite=True)
        write_json(tmp / STAGE_FILE, info)


def grow(config: GrowthConfig, *, restart: bool = False) -> Path:
    """Run (or resume) progressive growth or a baseline as `config` says; return the run directory.

    Rerunning the same config continues from the last checkpoint; `restart` discards an
    existing run in `config.out` first.
    """
    return GrowthRun(config, restart=restart).run()


__all__ = ["GrowthRun", "StagePlan", "causal_lm_loss", "grow", "lr_at", "plan_stages", "save_stage_model"]
