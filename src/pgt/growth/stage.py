"""One stage's model and optimizer: built from the substrate (stage 1, a baseline) or as the saved
stage below plus one new block, with only what the stage trains left trainable; wrapped (DDP/FSDP2,
compile) as training runs it; checked on the meta device before a run touches its directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pgt.errors import PgtError, one_line
from pgt.growth import distributed as pdist
from pgt.growth.checkpoint import Checkpoint, set_rng_state
from pgt.growth.config import GrowthConfig
from pgt.growth.expand import add_block, set_trainable
from pgt.growth.lora import attach_lora, merge_lora
from pgt.growth.schedule import StagePlan
from pgt.model.architecture import count_parameters


def causal_lm_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of a [B, T+1] window batch."""
    logits = model(input_ids=batch[:, :-1], use_cache=False).logits
    return F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())


def build_model(config: GrowthConfig, substrate: Any, plan: StagePlan, below: Path | None) -> nn.Module:
    """The stage's model with only what it trains left trainable: a fresh one from `substrate`, or the saved
    model in `below` (the stage under it) plus one new block (and LoRA adapters where the plan says)."""
    from pgt.model.architecture import from_substrate
    from pgt.model.loading import load_model

    seed = config.seed * 1000 + plan.stage  # block init differs per stage, reproducibly
    if plan.fresh:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = from_substrate(
                substrate,
                num_hidden_layers=plan.stage,
                num_attention_heads=config.heads,
                intermediate_size=config.intermediate_multiple * substrate.dim,
                max_position_embeddings=config.context,
                hidden_act=config.hidden_act,
                attn_implementation=config.attn_implementation,
                freeze_embeddings=not plan.train_embeddings,
            )
            if plan.train_embeddings:  # the conventional baseline: a learned matrix from a random start
                nn.init.normal_(model.model.embed_tokens.weight, std=model.config.initializer_range)
        model.float()
        set_trainable(
            model, [model] if plan.train_embeddings else [*model.model.layers, model.model.norm, model.lm_head]
        )
        return model
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


def build_optimizer(model: nn.Module, config: GrowthConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; weight decay on matrices only (not on norms)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay, "decays": True},
        {"params": no_decay, "weight_decay": 0.0, "decays": False},
    ]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=config.lr, betas=config.betas, foreach=device.type == "cuda" or None
    )


def check_buildable(config: GrowthConfig, substrate: Any, plan: StagePlan, device: torch.device) -> tuple[int, int]:
    """Build a fresh stage's model and optimizer on the meta device (no memory, no files): settings that
    cannot train fail here, before the run directory is touched. Returns (total, trainable) parameters."""
    try:
        with torch.device("meta"):
            model = build_model(config, substrate, plan, below=None)
            build_optimizer(model, config, device)
    except (ValueError, RuntimeError, TypeError, AssertionError) as exc:
        raise PgtError(f"these settings cannot build stage {plan.stage}'s model: {one_line(exc)}") from None
    return count_parameters(model)


class StageModel:
    """A stage's model on this process's device, its training wrapper, loss and optimizer; `resume` loads a
    checkpoint's trainable weights, optimizer moments and random state into them."""

    def __init__(
        self,
        config: GrowthConfig,
        substrate: Any,
        plan: StagePlan,
        below: Path | None,
        ctx: pdist.DistContext,
        resume: Checkpoint | None = None,
    ) -> None:
        self.config, self.substrate, self.plan, self.below, self.ctx = config, substrate, plan, below, ctx
        self.model = build_model(config, substrate, plan, below)
        if config.gradient_checkpointing:  # recompute activations in backward: memory for time
            self.base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.params_total, self.params_trainable = count_parameters(self.model)
        self.model.to(ctx.device)
        bf16 = config.autocast == "bf16" or (config.autocast == "auto" and ctx.device.type == "cuda")
        self.wrapped = pdist.wrap_model(self.model, ctx, fsdp=config.fsdp, bf16=bf16)
        self.loss = causal_lm_loss
        if config.compile and ctx.distributed:  # DDP/FSDP wrappers are compiled as modules
            self.wrapped = torch.compile(self.wrapped)
        elif config.compile:  # the loss too: log-softmax fuses with the head (+50 % tokens/s on CPU)
            self.loss = torch.compile(causal_lm_loss)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.model, config, ctx.device)
        if resume is not None:
            pdist.load_training_state(self.wrapped, self.optimizer, resume.trainable, resume.optimizer_state, ctx)
            set_rng_state(resume.rng)

    @property
    def base(self) -> nn.Module:
        """The model without its LoRA wrapper."""
        return self.model.get_base_model() if self.plan.lora_blocks else self.model

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The trainable weights as full CPU tensors (collective)."""
        return pdist.trainable_state(self.wrapped, self.ctx)

    def optimizer_state(self) -> dict[str, Any]:
        """The optimizer state keyed by parameter names, full CPU tensors (collective)."""
        return pdist.optimizer_state(self.wrapped, self.optimizer, self.ctx)

    def full_cpu_model(self) -> nn.Module:
        """The trained model, LoRA merged, as a plain ArceeForCausalLM (collective; on rank 0 for FSDP)."""
        if not self.config.fsdp:
            return merge_lora(self.model)
        full = pdist.full_model_state(self.wrapped, self.ctx)
        if not self.ctx.is_main:
            return self.model
        model = build_model(self.config, self.substrate, self.plan, self.below)  # receives the gathered weights
        model.load_state_dict(full)
        return merge_lora(model)


__all__ = ["StageModel", "build_model", "build_optimizer", "causal_lm_loss", "check_buildable"]
