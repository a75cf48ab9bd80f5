"""Growing a model by one block, choosing what trains, and running the frozen prefix without autograd.

A stage-k model has k blocks. Blocks below the new one are frozen (requires_grad False)
and, unless LoRA adapts them, run under `torch.no_grad()`: autograd records nothing for
them, so the backward pass starts at the new block from a detached hidden state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import nn

from pgt.errors import PgtError
from pgt.model.architecture import BLOCK_INITS, check_choice

if TYPE_CHECKING:
    from transformers import ArceeForCausalLM


def _residual_output_projections(block: nn.Module) -> list[nn.Linear]:
    """The projections whose output is added to the residual stream (attention out, MLP down)."""
    return [block.self_attn.o_proj, block.mlp.down_proj]


def new_block(model: ArceeForCausalLM, init: str, *, seed: int) -> nn.Module:
    """A block to stack on top of `model`, initialised by `init`, deterministic in `seed`.

    random: the model's own initialisation (the reference; the loss spikes).
    identity: random, then the residual output projections zeroed, so the block adds
        nothing to the residual stream and the model's outputs are unchanged.
    copy-top: a copy of the current top block.
    """
    from pgt.model.architecture import new_decoder_layer

    check_choice("block initialisation", init, BLOCK_INITS)
    layers = model.model.layers
    reference = next(layers[-1].parameters()) if len(layers) else model.lm_head.weight
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        block = new_decoder_layer(model.config, layer_idx=len(layers))
        block.apply(model._init_weights)
    block.to(device=reference.device, dtype=reference.dtype)
    if init == "copy-top":
        if not len(layers):
            raise PgtError("copy-top initialisation needs an existing block to copy")
        block.load_state_dict(layers[-1].state_dict())
    elif init == "identity":
        with torch.no_grad():
            for projection in _residual_output_projections(block):
                projection.weight.zero_()
                if projection.bias is not None:
                    projection.bias.zero_()
    return block


def add_block(model: ArceeForCausalLM, init: str, *, seed: int) -> nn.Module:
    """Append a new top block (before the final norm) and return it."""
    block = new_block(model, init, seed=seed)
    model.model.layers.append(block)
    model.config.num_hidden_layers = len(model.model.layers)
    return block


def set_trainable(
    model: nn.Module,
    trainable: list[nn.Module],
) -> list[str]:
    """Freeze every parameter, then unfreeze those of `trainable`; return the trainable names."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for module in trainable:
        for parameter in module.parameters():
            parameter.requires_grad_(True)
    return [name for name, p in model.named_parameters() if p.requires_grad]


@contextlib.contextmanager
def frozen_prefix(layers: nn.ModuleList, n_frozen: int) -> Iterator[None]:
    """Run `layers[:n_frozen]` under torch.no_grad() for the duration of the block.

    Hooks switch grad mode off when the first layer starts and restore it when layer
    `n_frozen - 1` returns; the hidden state handed to the next layer therefore has no
    autograd history and nothing below it can receive gradients.
    """
    if n_frozen <= 0:
        yield
        return
    if n_frozen > len(layers):
        raise PgtError(f"cannot freeze {n_frozen} blocks of a {len(layers)}-block model")
    saved_modes: list[bool] = []

    def enter(module: nn.Module, args: tuple) -> None:
        saved_modes.append(torch.is_grad_enabled())
        torch.set_grad_enabled(False)

    def leave(module: nn.Module, args: tuple, output: object) -> None:
        torch.set_grad_enabled(saved_modes.pop() if saved_modes else True)

    handles = [layers[0].register_forward_pre_hook(enter), layers[n_frozen - 1].register_forward_hook(leave)]
    outer_mode = torch.is_grad_enabled()
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        torch.set_grad_enabled(outer_mode)  # an exception inside the prefix must not leak no-grad mode
