"""The progressive trainer behind `pgt grow` and `pgt.growth.grow()` (docs/growth.md).

A run is a list of stages. Growth stage k loads the saved stage-(k-1) model, stacks one
new block on it, trains the new block (plus final norm and head; from `lora_from` on
also LoRA adapters on the older blocks) for `tokens_per_stage` tokens or until
validation stops improving, and saves the result as `RUN_DIR/stage-k`. A baseline run
is a single stage that trains all N blocks from scratch for N x tokens_per_stage tokens.

Every setting is checked (the first stage's model and optimizer are built on the meta
device) before the run directory is touched; the run then holds `RUN_DIR/.lock` to the end.
Every process of a torchrun launch executes this code; rank 0 alone writes files.
"""

from __future__ import annotations

import contextlib
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

from pgt.errors import PgtError, one_line
from pgt.growth import checkpoint as ckpt
from pgt.growth import distributed as pdist
from pgt.growth.config import OPTIMIZER_KEYS, GrowthConfig, config_differences
from pgt.growth.expand import add_block, frozen_prefix, set_trainable
from pgt.growth.lineage import check_source_model, check_unchanged
from pgt.growth.lora import attach_lora, merge_lora
from pgt.growth.metrics import MetricsLogger, plot_loss
from pgt.growth.records import (
    RUN_FILE,
    STAGE_FILE,
    ConfigChange,
    Halt,
    LoraRecord,
    RunRecord,
    StageRecord,
    mixture_draws,
)
from pgt.growth.run_layout import stage_dir, stage_dirs
from pgt.growth.validation import (
    TextScore,
    decoder,
    mixture_validation_sample,
    score_documents,
    source_scores,
)
from pgt.io import (
    LOCK_FILE,
    atomic_dir,
    atomic_file,
    refuse_foreign,
    refuse_overlap,
    remove_stale_temporaries,
    run_lock,
)
from pgt.model.architecture import check_heads, count_parameters

CONFIG_FILE = "config.yaml"
# Other runs that live inside a run directory by convention (docs/growth.md).
NESTED_DIRS = frozenset({"baselines", "merged"})
NON_FINITE = "non-finite loss or gradient"
SET_ASIDE_DIR = ".overwritten"  # the run an --overwrite replaces, until the new run's first checkpoint
OWN_NEIGHBOURS = NESTED_DIRS | {SET_ASIDE_DIR}  # what a run directory may hold besides the run
PROBE_TOKENS = 16  # window length of the probe step that --overwrite runs before it removes a run


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
        return [StagePlan(stage=config.stages, tokens=config.stages * config.tokens_per_stage, fresh=True,
                          train_embeddings=config.baseline == "trainable-embeddings")]
    plans = []
    for k in range(start + 1, config.stages + 1):
        lora = config.lora_from > 0 and k >= config.lora_from and k > 1
        plans.append(StagePlan(stage=k, tokens=config.tokens_per_stage, fresh=k == 1,
                               frozen_blocks=0 if lora else k - 1, lora_blocks=range(k - 1) if lora else range(0)))
    return plans


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


def check_budget(tokens: int, tokens_per_step: int, budget: str, step: str) -> None:
    """Refuse a token budget smaller than one optimizer step (it would train a whole step anyway, maybe
    many times the budget); `budget` names the budget's option, `step` spells out what a step is."""
    if tokens < tokens_per_step:
        raise PgtError(f"{budget} {tokens:,} is less than one optimizer step of {tokens_per_step:,} tokens ({step}); "
                       f"lower the batch or raise {budget.split()[0]}")


def duration(seconds: float) -> str:
    """`1h02m`, `3m05s`, `42s`."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s" if rest >= 60 else f"{rest}s"


class GrowthRun:
    """One `pgt grow` invocation: checks every setting, then starts, resumes or overwrites the run directory."""

    def __init__(self, config: GrowthConfig, *, overwrite: bool = False, allow_data_change: bool = False) -> None:
        from pgt.data.mixture import TokenMixture
        from pgt.substrate.store import Substrate

        config.validate()
        self.config = config
        self.overwrite = overwrite
        self.allow_data_change = allow_data_change
        self.run_dir = Path(config.out)
        self.data = TokenMixture(config.data)
        refuse_overlap(self.run_dir, [config.substrate, *self.data.paths, *filter(None, [config.from_model])])
        refuse_foreign(self.run_dir, RUN_FILE, what="run directory", ignore=OWN_NEIGHBOURS)
        self.ctx = pdist.init_distributed(config.device)
        self.substrate = Substrate.load(config.substrate)
        self._check_shape()
        self.data.check_tokenizer(self.substrate.fingerprint)
        self.data_fingerprint = self.data.fingerprint()
        self.lineage = check_source_model(config.from_model, self.substrate, config) if config.from_model else None
        self.plans = plan_stages(config, start=self.lineage.blocks if self.lineage else 0)
        self.tokens_per_step = config.batch_size * config.grad_accum * config.seq_len * self.ctx.world_size
        self.data.train_batch(0, config.batch_size, config.seq_len, seed=config.seed)  # enough training text?
        check_budget(config.tokens_per_stage, self.tokens_per_step, "--tokens-per-stage",
                     f"--batch-size {config.batch_size} x --grad-accum {config.grad_accum} x --seq-len "
                     f"{config.seq_len} x {self.ctx.world_size} process(es)")
        self.sample = mixture_validation_sample(self.data, config.eval_tokens)
        StageTrainer.check_buildable(self, dataclasses.replace(self.plans[0], fresh=True, frozen_blocks=0,
                                                               lora_blocks=range(0)))
        # The deepest model the run makes, as one fresh N-block stage: the size it must fit in.
        self.final_parameters = StageTrainer.check_buildable(
            self, StagePlan(stage=self.plans[-1].stage, tokens=self.plans[-1].tokens, fresh=True))
        self.logger: MetricsLogger | None = None
        self.history: list[ConfigChange] = []
        self.set_aside: Path | None = None  # the run an --overwrite replaces, until the new one's first checkpoint

    def _check_shape(self) -> None:
        """Heads that split the substrate's width into even head dimensions; a preset's width and vocabulary."""
        config, dim = self.config, self.substrate.dim
        check_heads(dim, config.heads)
        if config.preset:
            from pgt.model.presets import get_preset

            preset = get_preset(config.preset)
            if (preset.hidden_size, preset.vocab_size) != (dim, self.substrate.vocab_size):
                raise PgtError(
                    f"--preset {preset.name} is {preset.hidden_size} wide over {preset.vocab_size:,} ids, but the "
                    f"substrate {config.substrate} is {dim} wide over {self.substrate.vocab_size:,}; build a "
                    f"{preset.family} substrate with --dim {preset.hidden_size}")

    # ------------------------------------------------------------------ run directory

    def _open_run_dir(self) -> ckpt.Checkpoint | None | bool:
        """Start, resume or recognise a finished run (rank 0 holds the lock). Returns the checkpoint
        to resume from, None for a fresh start, or True when the run is already finished."""
        run_file = self.run_dir / RUN_FILE
        pdist.barrier(self.ctx)  # rank 0 holds the lock (and has created the directory)
        refuse_foreign(self.run_dir, RUN_FILE, what="run directory", ignore=OWN_NEIGHBOURS)  # under the lock
        if run_file.exists() and self.overwrite:
            self._probe_step()  # a setting that fails only when training fails here, before anything is removed
            pdist.barrier(self.ctx)
            if self.ctx.is_main:
                self._set_aside()
            pdist.barrier(self.ctx)
        if not run_file.exists():
            self._record_config()
            return None
        saved = RunRecord.load(run_file)
        self._check_resumable(saved)
        if saved.finished and saved.config.get("stages") == self.config.stages:
            return True
        resume = self._find_checkpoint()
        self._check_same_data(saved, resume)
        self._record_config()  # e.g. a raised stage count, changed optimizer settings, the data's fingerprint
        return resume

    def _check_resumable(self, saved: RunRecord) -> None:
        """The same settings as the run on disk, but optimizer/schedule ones after a non-finite stop."""
        differences = config_differences(saved.config, self.config)
        now = self.config.to_dict()
        self.history = list(saved.config_changes)
        if saved.halted and differences and set(differences) <= OPTIMIZER_KEYS:
            self.history.append(ConfigChange(
                stage=saved.halted.stage, step=saved.halted.step, reason=f"resumed after a {saved.halted.reason}",
                changes={k: [saved.config.get(k), now.get(k)] for k in differences}))
        elif differences:
            shown = ", ".join(f"{k}: {saved.config.get(k)!r} -> {now.get(k)!r}" for k in differences[:4])
            allowed = ("; only optimizer and schedule settings may change when resuming after a non-finite loss"
                       if saved.halted else "")
            raise PgtError(f"{self.run_dir} holds a run with a different configuration ({shown}){allowed}; "
                           "rerun with the same settings to resume, or pass --overwrite to discard it")
        if saved.started_from and self.lineage:
            check_unchanged(saved.started_from, self.lineage)
        if saved.tokens_per_step != self.tokens_per_step:
            raise PgtError(
                f"{self.run_dir} was trained with {saved.tokens_per_step} tokens per step "
                f"({saved.world_size} processes); this launch gives {self.tokens_per_step}. Resume with "
                "the same global batch (batch_size x grad_accum x processes), or pass --overwrite")

    def _check_same_data(self, saved: RunRecord, resume: ckpt.Checkpoint | None) -> None:
        """A resume trains on the data the run trained on: another manifest (the data prepared again) or a
        shard edited in place is refused, or with --allow-data-change recorded in run.json's config_changes."""
        recorded = saved.data_fingerprint
        if recorded is None:  # a run.json written before pgt recorded its data
            return
        if recorded.sha256 != self.data_fingerprint.sha256:
            what = "was prepared again since (its manifest differs)"
        elif changed := self.data.changed_shards(recorded):
            what = f"changed since: {', '.join(changed[:3])} no longer match their checksums"
        else:
            return
        if not self.allow_data_change:
            raise PgtError(f"{self.run_dir} was trained on other data: {', '.join(self.data.paths)} {what}. Resume "
                           "on the data it was trained on, pass --allow-data-change to go on with this data (run.json and "
                           "the report record the change), or --overwrite to start again")
        state = resume.state if resume else ckpt.TrainState(stage=self.plans[0].stage)
        self.history.append(ConfigChange(stage=state.stage, step=state.step, reason=f"the token data {what}",
                                         changes={"data_fingerprint": [recorded.sha256, self.data_fingerprint.sha256]}))
        self.say(f"{self.run_dir}: the token data {what}; going on with it (--allow-data-change), recorded in run.json")

    def _find_checkpoint(self) -> ckpt.Checkpoint | None:
        """The checkpoint to resume from. Never a silent fresh start over trained work: without
        `latest.json`, the newest checkpoint that verifies; without any, an error if stages exist."""
        if ckpt.has_checkpoint(self.run_dir):
            return ckpt.load_checkpoint(self.run_dir)
        found = ckpt.newest_verified_checkpoint(self.run_dir)
        if found is not None:
            if self.ctx.is_main:
                print(f"{self.run_dir}: {ckpt.CHECKPOINT_DIR}/{ckpt.POINTER_FILE} is missing; resuming from the "
                      f"newest checkpoint that verifies, {found.path.name}")
            return found
        trained = [p.name for p in stage_dirs(self.run_dir)]
        checkpoints = self.run_dir / ckpt.CHECKPOINT_DIR
        if trained or (checkpoints.is_dir() and any(checkpoints.iterdir())):
            held = ", ".join(trained) or f"{checkpoints} (none of them verifies)"
            raise PgtError(f"{self.run_dir} holds trained work ({held}) but no usable checkpoint to resume from "
                           f"({ckpt.CHECKPOINT_DIR}/{ckpt.POINTER_FILE} is missing); {ckpt.START_OVER}")
        return None

    def _probe_step(self) -> None:
        """One real forward and backward step of the new settings' first stage on a tiny batch, on this
        process's device, wrapped (DDP/FSDP, compile) as training wraps it: whatever fails only when a
        model trains (a single-process --fsdp, an attention kernel without a backward on this device)
        fails here. Writes nothing; the random state is left as it was."""
        plan = self.plans[0]
        tiny = self.data.train_batch(0, 1, min(self.config.seq_len, PROBE_TOKENS), seed=self.config.seed)
        devices = [self.ctx.device] if self.ctx.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                probe = StageTrainer(self, plan, ckpt.TrainState(stage=plan.stage), None)
                with pdist.autocast(self.ctx.device, self.config.autocast):
                    loss = probe.loss(probe.wrapped, tiny.to(self.ctx.device))
                loss.backward()
                probe.optimizer.zero_grad(set_to_none=True)
        except (ValueError, RuntimeError, TypeError, AssertionError) as exc:  # NotImplementedError included
            raise PgtError(f"these settings fail in a training step of stage {plan.stage}, so {self.run_dir} "
                           f"was left as it is: {one_line(exc)}") from None

    def _own_entries(self) -> list[Path]:
        """What the run itself wrote: all but its lock, the runs nested by convention and a set-aside run."""
        return [path for path in self.run_dir.iterdir() if path.name not in OWN_NEIGHBOURS | {LOCK_FILE}]

    def _set_aside(self) -> None:
        """--overwrite (rank 0): move the old run into RUN_DIR/.overwritten (a rename: no disk space needed).
        It comes back if the new run fails (or is killed) before its first checkpoint and goes at that
        checkpoint, so a full disk or a crash early in the new run loses nothing."""
        aside = self.run_dir / SET_ASIDE_DIR
        shutil.rmtree(aside, ignore_errors=True)
        aside.mkdir()
        for path in self._own_entries():
            path.rename(aside / path.name)
        self.set_aside = aside

    def _restore_set_aside(self) -> None:
        """The new run wrote no checkpoint: remove what it wrote and put the old run back (rank 0)."""
        aside = self.run_dir / SET_ASIDE_DIR
        for path in self._own_entries():
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        for path in aside.iterdir():
            path.rename(self.run_dir / path.name)
        aside.rmdir()
        self.set_aside = None

    def release_set_aside(self) -> None:
        """The new run has its first checkpoint: the run it replaced goes (rank 0)."""
        if self.set_aside is not None:
            shutil.rmtree(self.set_aside, ignore_errors=True)
            self.set_aside = None

    def _recover_set_aside(self) -> None:
        """A run set aside by an --overwrite that was killed (rank 0, under the lock): back in place when the
        new run got no checkpoint, else removed as the overwrite asked."""
        aside = self.run_dir / SET_ASIDE_DIR
        if not aside.is_dir():
            return
        self.set_aside = aside
        if (self.run_dir / ckpt.CHECKPOINT_DIR).is_dir():
            self.release_set_aside()
        else:
            self._restore_set_aside()
            self.say(f"{self.run_dir}: an interrupted --overwrite had set the previous run aside; it is back in place")

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

    def _write_run_file(self, *, finished: bool, stages: list[StageRecord] | None = None,
                        halted: Halt | None = None) -> None:
        drawn = {d.name: d.tokens_total for d in stages[-1].mixture or []} if stages else {}
        RunRecord(kind=self.config.kind, config=self.config.to_dict(), world_size=self.ctx.world_size,
                  tokens_per_step=self.tokens_per_step, stages=[p.stage for p in self.plans], finished=finished,
                  results=stages or [], halted=halted, config_changes=self.history,
                  data_fingerprint=self.data_fingerprint, mixture=mixture_draws(self.data, drawn, drawn),
                  started_from=self.lineage).save(self.run_dir / RUN_FILE)

    def halt(self, stage: int, step: int, reason: str) -> None:
        """Record in run.json that the run stopped on its own, so a resume may change optimizer settings."""
        if self.ctx.is_main:
            self._write_run_file(finished=False, halted=Halt(reason=reason, stage=stage, step=step))

    def say(self, message: str) -> None:
        """A line of the run's log (rank 0), printed even when stdout is a pipe."""
        if self.ctx.is_main:
            print(message, flush=True)

    # ------------------------------------------------------------------ the run

    def run(self) -> Path:
        """Train every stage not yet done; return the run directory."""
        from transformers.utils import logging as hf_logging

        hf_bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # per-file load/save bars would drown the stage bars
        created = not self.run_dir.exists()
        started = False  # True once this invocation's run directory holds work worth keeping
        try:
            with run_lock(self.run_dir) if self.ctx.is_main else contextlib.nullcontext():
                if self.ctx.is_main:  # leftovers of killed writes; safe only under the lock
                    for directory in (self.run_dir, self.run_dir / ckpt.CHECKPOINT_DIR):
                        remove_stale_temporaries(directory)
                    self._recover_set_aside()
                resume = self._open_run_dir()
                started = resume is not None or not created
                if resume is True:
                    self.say(f"{self.run_dir} already holds this finished run (pass --overwrite to train it again)")
                    return self.run_dir
                self._train(resume)
                return self.run_dir
        except BaseException:
            if self.set_aside is not None and self.ctx.is_main:
                if self.logger:
                    self.logger.close()
                self._restore_set_aside()
            # A first attempt that failed before its first checkpoint leaves nothing that blocks the corrected command.
            if (created and not started and self.ctx.is_main and self.run_dir.is_dir()
                    and not (self.run_dir / ckpt.CHECKPOINT_DIR).exists() and not stage_dirs(self.run_dir)):
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise
        finally:
            if self.logger:
                self.logger.close()
            pdist.shutdown(self.ctx)
            if hf_bars:
                hf_logging.enable_progress_bar()

    def _train(self, resume: ckpt.Checkpoint | None) -> None:
        state = resume.state if resume else ckpt.TrainState(stage=self.plans[0].stage)
        self.logger = MetricsLogger(
            self.run_dir,
            resume_offset=state.metrics_offset if resume else None,
            resume_step=state.global_step if resume else None,
            enabled=self.ctx.is_main,
        )
        if self.logger.repaired:
            self.say(self.logger.repaired)
        if resume:
            self.say(f"resuming {self.run_dir} from {resume.path.name}: stage {state.stage}, step {state.step}, "
                     f"{state.tokens_total:,} tokens trained")
        self.say(f"validation sample: {len(self.sample.documents):,} of {self.sample.split_documents:,} documents, "
                 f"{self.sample.tokens:,} of {self.sample.split_tokens:,} validation tokens")
        for plan in self.plans:
            if plan.stage < state.stage or (plan.stage == state.stage and state.stage_complete):
                continue
            if plan.stage != state.stage:  # the previous stage is complete: carry the counters over
                state = ckpt.TrainState(stage=plan.stage, global_step=state.global_step,
                                        tokens_total=state.tokens_total, data_step=state.data_step,
                                        source_tokens=state.source_tokens)
                resume = None
            state = StageTrainer(self, plan, state, resume).train()
            resume = None
        if self.ctx.is_main:
            results = [StageRecord.load(stage_dir(self.run_dir, p.stage) / STAGE_FILE) for p in self.plans]
            self._write_run_file(finished=True, stages=results)
            plot_loss(self.run_dir)


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
        if self.config.gradient_checkpointing:  # recompute activations in backward: memory for time
            base = self.model.get_base_model() if plan.lora_blocks else self.model
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.params_total, self.params_trainable = count_parameters(self.model)
        self.model.to(self.ctx.device)
        bf16 = self.config.autocast == "bf16" or (self.config.autocast == "auto" and self.ctx.device.type == "cuda")
        self.wrapped = pdist.wrap_model(self.model, self.ctx, fsdp=self.config.fsdp, bf16=bf16)
        self.loss = causal_lm_loss
        if self.config.compile and self.ctx.distributed:  # DDP/FSDP wrappers are compiled as modules
            self.wrapped = torch.compile(self.wrapped)
        elif self.config.compile:  # the loss too: log-softmax fuses with the head (+50 % tokens/s on CPU)
            self.loss = torch.compile(causal_lm_loss)
        self.trainable_parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = self._optimizer()
        if resume is not None:
            pdist.load_training_state(self.wrapped, self.optimizer, resume.trainable, resume.optimizer_state, self.ctx)
            self._apply_optimizer_settings()  # the checkpoint's groups carry the settings they were saved with
            ckpt.set_rng_state(resume.rng)
        self.checkpoint_path = resume.path if resume else None

    @classmethod
    def check_buildable(cls, run: GrowthRun, plan: StagePlan) -> tuple[int, int]:
        """Build a fresh stage's model and optimizer on the meta device (no memory, no files): settings
        that cannot train fail here, before the run directory is touched. Returns (total, trainable)
        parameters."""
        probe = cls.__new__(cls)
        probe.run, probe.config, probe.ctx, probe.plan = run, run.config, run.ctx, plan
        try:
            with torch.device("meta"):
                probe.model = probe._build_model()
                probe.trainable_parameters = [p for p in probe.model.parameters() if p.requires_grad]
                probe._optimizer()
        except (ValueError, RuntimeError, TypeError, AssertionError) as exc:
            raise PgtError(f"these settings cannot build stage {plan.stage}'s model: {one_line(exc)}") \
                from None
        return count_parameters(probe.model)

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
        lineage = self.run.lineage
        below = Path(lineage.path) if lineage and lineage.blocks == plan.stage - 1 else \
            stage_dir(self.run.run_dir, plan.stage - 1)
        model, _ = load_model(below, attn_implementation=config.attn_implementation)
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
        groups = [{"params": decay, "weight_decay": self.config.weight_decay, "decays": True},
                  {"params": no_decay, "weight_decay": 0.0, "decays": False}]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=self.config.lr,
                                 betas=self.config.betas, foreach=self.ctx.device.type == "cuda" or None)

    def _apply_optimizer_settings(self) -> None:
        """This run's betas and weight decay on every group (they may change after a non-finite stop)."""
        for group in self.optimizer.param_groups:
            group["betas"] = self.config.betas
            group["weight_decay"] = self.config.weight_decay if group.get("decays") else 0.0

    def _base_layers(self) -> nn.ModuleList:
        base = self.model.get_base_model() if self.plan.lora_blocks else self.model
        return base.model.layers

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self) -> TextScore:
        """The validation sample scored as `pgt eval` scores text (pgt.growth.validation.score_documents).
        Every rank scores the same documents (identical results, no gradient reduction). The model, not
        its DDP or compiled wrapper: FSDP2 shards it in place, and the windows' varied lengths would
        only make torch.compile recompile."""
        tokenizer = self.run.substrate.tokenizer
        self.model.eval()
        with pdist.autocast(self.ctx.device, self.config.autocast):
            score = score_documents(
                lambda ids: self.model(input_ids=ids, use_cache=False).logits, self.run.sample.documents,
                decoder(tokenizer), context=self.config.context, bos_id=tokenizer.bos_token_id,
                pad_id=self.run.data.eos_id, device=self.ctx.device, batch_size=self.config.batch_size)
        self.model.train()
        return score

    def _log_eval(self) -> float:
        score = self.evaluate()
        s = self.state
        per_source = source_scores(score, self.run.sample)
        sources = {"sources": {name: {"val_loss": part.val_loss, "val_bpb": part.val_bpb}
                               for name, part in per_source.items()}} if per_source else {}
        self.run.logger.log("eval", stage=self.plan.stage, step=s.step, global_step=s.global_step,
                            tokens=s.tokens_total, val_loss=score.nats_per_token, val_bpb=score.bits_per_byte,
                            bz2_bpb=score.bz2_bpb, xz_bpb=score.xz_bpb, **sources)
        self.run.say(f"stage {self.plan.stage} step {s.step}: val_loss {score.nats_per_token:.4f}, "
                     f"{score.describe()}" + "".join(f"; {name} {part.val_loss:.4f} ({part.val_bpb:.4f} bits/byte)"
                                                      for name, part in per_source.items()))
        if s.best_val is None or score.nats_per_token < s.best_val:
            s.best_val, s.evals_since_best = score.nats_per_token, 0
        else:
            s.evals_since_best += 1
        self.last_eval = (s.step, score)
        return score.nats_per_token

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
            self.run.release_set_aside()
        pdist.barrier(self.ctx)

    # ------------------------------------------------------------------ training

    def train(self) -> ckpt.TrainState:
        config, s, plan, ctx = self.config, self.state, self.plan, self.ctx
        self.last_eval: tuple[int, TextScore] | None = None
        self.model.train()
        if s.step == 0 and not s.stage_tokens:
            self.run.logger.log("event", event="grow", stage=plan.stage, global_step=s.global_step,
                                tokens=s.tokens_total, init="fresh" if plan.fresh else config.init,
                                params_total=self.params_total, params_trainable=self.params_trainable,
                                lora_blocks=len(plan.lora_blocks), frozen_blocks=plan.frozen_blocks)
            self._log_eval()
        from tqdm.auto import tqdm

        progress = config.show_progress()
        bar = tqdm(total=plan.tokens, initial=s.stage_tokens, unit="tok", unit_scale=True, dynamic_ncols=True,
                   desc=f"stage {plan.stage}/{self.run.plans[-1].stage}", disable=not (ctx.is_main and progress))
        window_start, timed_steps = time.perf_counter(), 0  # tokens/s of this process's own steps
        steps_start, session_start = s.step, time.perf_counter()  # for the ETA of this session's pace
        stage_start = time.perf_counter() - s.wall_time
        with frozen_prefix(self._base_layers(), plan.frozen_blocks):
            while s.step < self.total_steps and not s.stopped_early:
                loss = self._optimizer_step()
                bar.update(self.run.tokens_per_step)
                s.window_loss, s.window_steps, timed_steps = s.window_loss + loss, s.window_steps + 1, timed_steps + 1
                if s.step % config.log_every == 0 or s.step == self.total_steps:
                    elapsed = time.perf_counter() - window_start
                    mean_loss, lr = s.window_loss / s.window_steps, self.optimizer.param_groups[0]["lr"]
                    speed = timed_steps * self.run.tokens_per_step / max(elapsed, 1e-9)
                    self.run.logger.log(
                        "train", stage=plan.stage, step=s.step, global_step=s.global_step, tokens=s.tokens_total,
                        loss=mean_loss, lr=lr, grad_norm=self.last_grad_norm, tokens_per_s=speed)
                    bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:.2e}")
                    if not progress:  # nanoGPT-style log lines where no bar is drawn
                        pace = (time.perf_counter() - session_start) / max(1, s.step - steps_start)
                        self.run.say(f"stage {plan.stage} step {s.step}/{self.total_steps} | loss {mean_loss:.4f} | "
                                     f"lr {lr:.2e} | {speed:,.0f} tok/s | "
                                     f"ETA {duration(pace * (self.total_steps - s.step))}")
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
                    loss = self.loss(self.wrapped, batch) / config.grad_accum
                loss.backward()
            loss_sum += loss.detach()
            if not self.run.data.bare:  # tokens drawn per source: the same on every rank (global rows)
                counts = self.run.data.rows_per_source(s.data_step + micro, config.batch_size * ctx.world_size,
                                                       seed=config.seed)
                for name, rows in zip(self.run.data.names, counts, strict=True):
                    s.source_tokens[name] = s.source_tokens.get(name, 0) + rows * config.seq_len
                    s.stage_source_tokens[name] = s.stage_source_tokens.get(name, 0) + rows * config.seq_len
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
                            tokens=s.tokens_total, reason=NON_FINITE, loss=loss, grad_norm=grad_norm)
        self.run.halt(self.plan.stage, s.step + 1, NON_FINITE)
        kept = f"the last good checkpoint {self.checkpoint_path} is intact" if self.checkpoint_path else \
            "no checkpoint of this stage was written yet (a rerun starts the stage again)"
        which = "the loss" if not math.isfinite(loss) else "the gradient norm"  # a finite loss can overflow it
        raise PgtError(
            f"stage {self.plan.stage}, step {s.step + 1}: {which} became non-finite (loss {loss}, gradient norm "
            f"{grad_norm}); training stopped before the update and {kept}. To resume, rerun the same command with a "
            f"lower --lr (or a smaller --grad-clip, longer --warmup-steps, other --betas, --weight-decay or "
            f"--min-lr-ratio): after a non-finite loss these may change, and run.json records the change"
        )

    def _finish_stage(self) -> None:
        """Merge LoRA, save RUN_DIR/stage-k (rank 0), log, and mark the stage complete."""
        s, plan = self.state, self.plan
        model = self._full_cpu_model()
        if self.ctx.is_main:
            _, score = self.last_eval
            info = StageRecord(
                stage=plan.stage, blocks=plan.stage, kind=self.config.kind, tokens_seen=s.stage_tokens,
                tokens_total=s.tokens_total, steps=s.step, stopped_early=s.stopped_early,
                val_loss=score.nats_per_token, val_bpb=score.bits_per_byte, best_val_loss=s.best_val,
                params_total=count_parameters(model)[0], params_trainable=self.params_trainable,
                init="fresh" if plan.fresh else self.config.init, frozen_blocks=plan.frozen_blocks,
                lora=LoraRecord(blocks=list(plan.lora_blocks), rank=self.config.lora_rank,
                                alpha=self.config.lora_alpha) if plan.lora_blocks else None,
                embedding_trained=plan.train_embeddings, wall_time_s=round(s.wall_time, 3),
                val_documents=score.n_documents, val_tokens=score.n_tokens, val_bytes=score.n_bytes,
                bz2_bpb=score.bz2_bpb, xz_bpb=score.xz_bpb,
                mixture=mixture_draws(self.run.data, s.stage_source_tokens, s.source_tokens,
                                      source_scores(score, self.run.sample)),
                tokens_budget=plan.tokens, started_from=self.run.lineage,
            )
            save_stage_model(model, self.run.substrate, stage_dir(self.run.run_dir, plan.stage), info,
                             data=self.config.data, stages=self.run.plans[-1].stage)
            drawn = {"sources": {d.name: {"tokens": d.tokens, "tokens_total": d.tokens_total, "epochs": d.epochs}
                                 for d in info.mixture}} if info.mixture else {}
            self.run.logger.log("event", event="stage_end", stage=plan.stage, global_step=s.global_step,
                                tokens=s.tokens_total, val_loss=info.val_loss, val_bpb=info.val_bpb,
                                stopped_early=s.stopped_early, **drawn)
            for draw in info.mixture or []:
                self.run.say(f"stage {plan.stage}: {draw.name} (weight {draw.weight:.3g}) gave {draw.tokens:,} tokens; "
                             f"{draw.epochs:.3f} epochs of its {draw.train_tokens:,} so far")
            self.run.say(f"stage {plan.stage}: val_loss {info.val_loss:.4f}, {score.describe()} after "
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


def stage_card(model: nn.Module, meta: Any, name: str, info: StageRecord, *, data: str | list[str] | None,
               stages: int) -> str:
    """The model card of a stage, from its record: data (a mixture's sources), tokens, how it grew, where
    it stopped, what it started from, and its validation figures (overall and per source)."""
    from pgt.model.card import DataSourceFact, EvalFigure, facts_of, model_card

    if info.mixture:
        training_data = "a weighted mixture of token data: " + ", ".join(
            f"{d.name} {d.weight:.1%}" for d in info.mixture)
    else:
        training_data = f"token data `{data}`" if data else None
    stop = (f"stopped by --patience at {info.tokens_seen:,} of {info.tokens_budget or info.tokens_seen:,} tokens "
            "(validation loss stopped improving: trained to convergence)" if info.stopped_early else
            f"the full budget of {info.tokens_seen:,} tokens")
    if info.kind == "growth":
        lora = f", LoRA (rank {info.lora.rank}) on blocks {', '.join(str(b + 1) for b in info.lora.blocks)}"             if info.lora else ""
        growth = (f"stage {info.stage} of {stages}: block {info.blocks} added ({info.init}) on "
                  f"{info.frozen_blocks} frozen block(s){lora}; {stop}")
    else:
        growth = f"the {info.kind} baseline: all {info.blocks} blocks trained together; {stop}"
    protocol = f"trainer's validation sample ({info.val_documents or 0:,} documents)"
    evaluations = [EvalFigure("validation", "loss (nats/token)", info.val_loss, protocol),
                   EvalFigure("validation", "bits/byte", info.val_bpb, protocol)]
    evaluations += [EvalFigure(f"validation: {d.name}", metric, value, f"{d.name}'s part of the sample")
                    for d in info.mixture or [] for metric, value in (("loss (nats/token)", d.val_loss),
                                                                       ("bits/byte", d.val_bpb)) if value is not None]
    sources = [DataSourceFact(d.name, d.path, d.weight, d.tokens_total, d.epochs) for d in info.mixture or []]
    return model_card(**facts_of(model, meta, name), stage=info.stage, training_data=training_data,
                      training_tokens=info.tokens_total, growth=growth, evaluations=evaluations,
                      data_sources=sources,
                      lineage=info.started_from.describe() if info.started_from else None)


def save_stage_model(model: nn.Module, substrate: Any, out: Path, info: StageRecord, *,
                     data: str | list[str] | None = None, stages: int | None = None) -> None:
    """Write a stage as a standalone model directory (pgt.model.loading.save_model) plus
    `stage.json`, all appearing at once; its model card comes from `info` (`stage_card`).

    A model whose embedding trained (the trainable-embeddings baseline) no longer holds the
    substrate's matrix, so it must not claim the substrate's fingerprint: its directory
    records the fingerprint of its own matrix, `derived_from` the substrate's, and
    `embedding_trained: true`, which keeps load_model's three-way check meaningful.
    """
    from pgt.model.loading import embedding_fingerprint, save_model

    meta = substrate.meta
    if info.embedding_trained:
        meta = dataclasses.replace(meta, fingerprint=embedding_fingerprint(model, meta),
                                   derived_from=substrate.fingerprint, embedding_trained=True)
        model.config.substrate_fingerprint = meta.fingerprint
        model.config.embedding_trained = True
    with atomic_dir(out, overwrite=True) as tmp:
        card = stage_card(model, meta, out.name, info, data=data, stages=stages or info.stage)
        save_model(model, substrate.tokenizer, tmp, substrate_meta=meta, card=card, overwrite=True)
        info.save(tmp / STAGE_FILE)


def grow(config: GrowthConfig, *, overwrite: bool = False, allow_data_change: bool = False) -> Path:
    """Run (or resume) progressive growth or a baseline as `config` says; return the run directory.

    Rerunning the same config continues from the last checkpoint (on the same token data, unless
    `allow_data_change`); `overwrite` replaces an existing run in `config.out`, once every setting has
    been checked.
    """
    return GrowthRun(config, overwrite=overwrite, allow_data_change=allow_data_change).run()


def check_settings(config: GrowthConfig) -> GrowthRun:
    """Every check `grow` makes before it touches the run directory, and nothing else (`--dry-run`)."""
    run = GrowthRun(config)
    pdist.shutdown(run.ctx)
    return run


__all__ = ["GrowthRun", "StagePlan", "causal_lm_loss", "check_settings", "grow", "lr_at", "plan_stages",
           "save_stage_model", "stage_card"]
