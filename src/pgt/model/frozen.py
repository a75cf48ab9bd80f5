"""Keeping a PGT model's token embedding frozen (torch only: merged-model directories ship this file).

The substrate matrix is never trained. `requires_grad=False` alone is undone by a careless
`model.requires_grad_(True)`, so a forward hook also detaches the looked-up vectors: no
gradient can reach the matrix, and an optimizer skips a parameter whose gradient stays None.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn


def _detach(module: nn.Module, args: tuple, output: Any) -> Any:
    return output.detach()


def freeze_embedding(model: nn.Module) -> nn.Module:
    """Freeze the token embedding of `model` when its config says `freeze_embeddings` (the PGT
    setting; the trainable-embedding baseline says False); return the model."""
    if not getattr(model.config, "freeze_embeddings", True):
        return model
    embedding = model.get_input_embeddings()
    embedding.weight.requires_grad_(False)
    if _detach not in embedding._forward_hooks.values():
        embedding.register_forward_hook(_detach)
    return model
