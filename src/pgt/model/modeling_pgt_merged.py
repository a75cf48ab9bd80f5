"""Merged PGT experts: N `ArceeForCausalLM` on one frozen substrate, their logits combined.

Experts trained on different data but on the same frozen matrix share input and output
index spaces, so `mean(logits_i)` is a mixture of experts without training (docs/merging.md);
the paper's trainable alternative fuses the concatenated logits with a small adapter.

transformers has no standard class for either, so this file (with its siblings) is copied
into saved merged directories for `trust_remote_code` loading: it imports only torch,
transformers and those siblings.
"""

from __future__ import annotations

import copy
from itertools import accumulate

import torch
import torch.nn.functional as F
from torch import nn
from transformers import ArceeForCausalLM, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.utils import can_return_tuple

from .configuration_pgt_merged import PgtMergedConfig, expert_config_dict
from .frozen import freeze_embedding


class PgtLogitAdapter(nn.Module):
    """Fuses N experts' logits: a per-position gate over the experts plus a low-rank correction.

    A dense Linear(N·V → V) would need N·V² weights (34 G for V = 131,072 and N = 2).
    Instead the experts' next-token distributions (the concatenation, N·V values) are
    projected to `hidden_size` features (N·V·h weights); the features choose, per position,
    how much to trust each expert (a softmax gate, whose bias starts at log wᵢ) and add a
    low-rank correction to the logits (h·V weights and a V bias, starting at zero). So initialised, the
    adapter computes exactly the weighted logit mean, and training moves it from there.
    """

    def __init__(self, num_experts: int, vocab_size: int, hidden_size: int) -> None:
        super().__init__()
        # Plain parameters rather than nn.Linear children: transformers' initialisation of
        # remote code visits a module only if it owns parameters directly.
        self.down_weight = nn.Parameter(torch.empty(hidden_size, num_experts * vocab_size))
        self.down_bias = nn.Parameter(torch.empty(hidden_size))
        self.gate_weight = nn.Parameter(torch.empty(num_experts, hidden_size))
        self.gate_bias = nn.Parameter(torch.empty(num_experts))
        self.up_weight = nn.Parameter(torch.empty(vocab_size, hidden_size))
        self.up_bias = nn.Parameter(torch.empty(vocab_size))

    def reset_parameters(self, weights: list[float]) -> None:
        """Start as the weighted mean with `weights` (which sum to 1)."""
        # Each input is a probability distribution, so a feature is a p-weighted average of
        # unit-variance entries: O(1) for a confident expert.
        init.normal_(self.down_weight, mean=0.0, std=1.0)
        init.zeros_(self.down_bias)
        init.zeros_(self.gate_weight)
        init.copy_(self.gate_bias, torch.tensor(weights).log())
        # Zeros keep the start exact; `down` still learns once gate/up move off zero.
        init.zeros_(self.up_weight)
        init.zeros_(self.up_bias)

    def forward(self, expert_logits: torch.Tensor) -> torch.Tensor:
        """[..., N, V] expert logits -> [..., V] fused logits."""
        distributions = expert_logits.softmax(dim=-1).flatten(-2)  # concat(p_1 … p_N)
        features = F.gelu(F.linear(distributions, self.down_weight, self.down_bias))
        mix = F.linear(features, self.gate_weight, self.gate_bias).softmax(dim=-1)  # [..., N]
        return (mix.unsqueeze(-1) * expert_logits).sum(dim=-2) + F.linear(features, self.up_weight, self.up_bias)


def expert_cache_view(cache: Cache, start: int, stop: int) -> Cache:
    """A cache whose layers 0 … stop-start-1 ARE `cache.layers[start:stop]` (shared objects).

    Each expert numbers its layers from 0 and reads the past length from its layer 0, so it
    gets its own window onto the one cache that `generate` creates, reorders and crops.
    """
    if cache.layer_class_to_replicate is not None:  # a lazily grown cache: create the layers now
        while len(cache.layers) < stop:
            cache.layers.append(cache.layer_class_to_replicate())
    view = copy.copy(cache)
    view.layers = cache.layers[start:stop]
    return view


class PgtMergedPreTrainedModel(PreTrainedModel):
    """Weight initialisation and transformers capabilities of merged PGT models."""

    config_class = PgtMergedConfig
    config: PgtMergedConfig
    base_model_prefix = "merged"
    supports_gradient_checkpointing = True
    _no_split_modules = ["ArceeDecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True

    def _init_weights(self, module: nn.Module) -> None:
        # The experts are PreTrainedModels and initialise themselves; only the adapter is ours.
        if isinstance(module, PgtLogitAdapter):
            module.reset_parameters(self.config.expert_weights)


class PgtMergedForCausalLM(PgtMergedPreTrainedModel, GenerationMixin):
    """N PGT (Arcee) experts sharing one substrate; logits = weighted mean, or a trainable adapter of them.

    Build one from trained experts with `from_experts`; `save_pretrained`/`from_pretrained`
    and `generate` work as for any causal LM. The experts' frozen embeddings are one tensor.
    """

    # Experts 1 … N-1 use expert 0's embedding tensor (see `tie_word_embeddings` in the config).
    _tied_weights_keys = {r"experts\.[1-9]\d*\.model\.embed_tokens\.weight": "experts.0.model.embed_tokens.weight"}

    def __init__(self, config: PgtMergedConfig, experts: list[ArceeForCausalLM] | None = None) -> None:
        super().__init__(config)
        if not config.experts:
            raise ValueError("a merged model needs at least one expert config")
        if experts is None:
            experts = [ArceeForCausalLM(expert_config) for expert_config in config.expert_configs()]
        self.experts = nn.ModuleList(freeze_embedding(expert) for expert in experts)
        self.adapter = (
            PgtLogitAdapter(len(experts), config.vocab_size, config.adapter_hidden_size)
            if config.mode == "adapter"
            else None
        )
        ends = list(accumulate(config.expert_layer_counts))
        self._cache_slices = list(zip([0, *ends[:-1]], ends, strict=True))  # expert i's layers in the shared cache
        self.post_init()

    @classmethod
    def from_experts(
        cls,
        experts: list[ArceeForCausalLM],
        *,
        mode: str = "mean",
        weights: list[float] | None = None,
        adapter_hidden_size: int = 64,
    ) -> PgtMergedForCausalLM:
        """Merge trained experts (taken over, not copied) into one model.

        Raises ValueError unless the experts are distinct modules that share vocabulary, width
        and substrate and have identical frozen embeddings; `weights` (default equal) are
        normalised to sum to 1.
        """
        if len({id(expert) for expert in experts}) < len(experts):
            raise ValueError("the same expert module is given twice; load it twice or pass a copy.deepcopy of it")
        config = PgtMergedConfig(
            experts=[expert_config_dict(expert.config) for expert in experts],
            mode=mode,
            expert_weights=weights,
            adapter_hidden_size=adapter_hidden_size,
        )
        embedding = experts[0].get_input_embeddings().weight
        for index, expert in enumerate(experts[1:], start=1):
            if not torch.equal(expert.get_input_embeddings().weight, embedding):
                raise ValueError(f"expert {index}'s token embedding differs from expert 0's (a trained embedding?)")
        return cls(config, experts=list(experts))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.experts[0].get_input_embeddings()

    def get_output_embeddings(self) -> None:
        return None  # each expert has its own head; there is no single output matrix

    def combine(self, expert_logits: list[torch.Tensor]) -> torch.Tensor:
        """The merged logits from the experts' logits (each [..., V])."""
        if self.adapter is not None:
            return self.adapter(torch.stack(expert_logits, dim=-2))
        merged = expert_logits[0] * self.config.expert_weights[0]
        for logits, weight in zip(expert_logits[1:], self.config.expert_weights[1:], strict=True):
            merged = merged + logits * weight
        return merged

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Merged logits for every position (or the last `logits_to_keep`); with `labels`, the
        mean next-token cross-entropy of the merged logits. `cache` holds all experts' layers."""
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        expert_logits = [
            expert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                cache=expert_cache_view(cache, start, stop) if use_cache else None,
                inputs_embeds=inputs_embeds,
                use_cache=use_cache,
                logits_to_keep=logits_to_keep,
            ).logits
            for expert, (start, stop) in zip(self.experts, self._cache_slices, strict=True)
        ]
        logits = self.combine(expert_logits)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=cache if use_cache else None)


__all__ = ["PgtLogitAdapter", "PgtMergedPreTrainedModel", "PgtMergedForCausalLM", "expert_cache_view"]

# save_pretrained writes `auto_map` and copies this file and its siblings beside the weights,
# so a merged directory loads with trust_remote_code where pgt is not installed.
PgtMergedConfig.register_for_auto_class()
PgtMergedForCausalLM.register_for_auto_class("AutoModelForCausalLM")
