"""LoRA on the older blocks of a deep stage, through `peft`, merged into the weights at stage end."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from peft import PeftModel

# Attention and MLP projections of an ArceeDecoderLayer (the norms stay frozen).
LORA_PROJECTIONS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)


def lora_target_pattern(blocks: range) -> str:
    """A regex (peft matches it against full module names) for the projections of `blocks` only."""
    indices = "|".join(str(i) for i in blocks)
    projections = "|".join(p.replace(".", r"\.") for p in LORA_PROJECTIONS)
    return rf"model\.layers\.({indices})\.({projections})"


def attach_lora(model: nn.Module, blocks: range, *, rank: int, alpha: float) -> PeftModel:
    """Wrap `model` with LoRA adapters on the projections of `blocks`.

    peft freezes every non-adapter parameter; the caller re-enables the ones that train
    alongside (the new block, final norm, head). The adapters start as a no-op (B = 0).
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=0.0, bias="none", target_modules=lora_target_pattern(blocks)
    )
    with warnings.catch_warnings():  # peft calls an attribute transformers 5 deprecated; not ours to fix
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold the adapters into the base weights and return the plain model (no-op without adapters)."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        return model.merge_and_unload()
    return model
