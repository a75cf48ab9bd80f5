"""Configuration of a merged PGT model: N experts on one frozen substrate (shipped into saved directories).

Experts that share the substrate share their input and output index spaces, so their
next-token logits can be combined directly (docs/merging.md). Each expert is a standard
transformers `ArceeConfig`. Saved merged directories carry this file for
`trust_remote_code` loading, so it imports only transformers.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import ArceeConfig, PretrainedConfig

# pgt.model.architecture.MERGE_MODES: this file travels into model directories without pgt.
MERGE_MODES = ("mean", "adapter")

# Bookkeeping that `to_diff_dict()` adds and that has no meaning inside a merged config.
_EXPERT_KEYS_DROPPED = ("architectures", "auto_map", "transformers_version", "_name_or_path", "dtype")


def expert_config_dict(config: ArceeConfig) -> dict[str, Any]:
    """The part of an expert's config that rebuilds it inside a merged model."""
    return {key: value for key, value in config.to_diff_dict().items() if key not in _EXPERT_KEYS_DROPPED}


def check_merge_mode(mode: str) -> None:
    """ValueError unless `mode` is one of MERGE_MODES."""
    if mode not in MERGE_MODES:
        raise ValueError(f"unknown merge mode {mode!r} (choose {' or '.join(MERGE_MODES)})")


class PgtMergedConfig(PretrainedConfig):
    """Hyper-parameters of `PgtMergedForCausalLM`: the experts' configs and how their logits combine.

    - `experts`: one `ArceeConfig` dict per expert (see `expert_config_dict`).
    - `mode="mean"`: logits = Σ wᵢ·logitsᵢ, the paper's logit averaging; `expert_weights`
      wᵢ default to equal and are normalised to sum to 1.
    - `mode="adapter"`: a trainable adapter over the concatenated logits
      (`adapter_hidden_size` wide) that starts out equal to the weighted mean.

    `vocab_size`, `hidden_size`, `substrate_fingerprint` and the special token ids are the
    experts' (which must agree); the context `max_position_embeddings` is the shortest
    expert's; `num_hidden_layers` is their total, because one KV cache holds every expert's
    layers, expert i's after those of experts 0 … i-1.
    """

    model_type = "pgt_merged"
    keys_to_ignore_at_inference = ["cache"]

    experts: list | None = None
    mode: str = "mean"
    expert_weights: list | None = None
    adapter_hidden_size: int = 64
    vocab_size: int = 65536
    hidden_size: int = 1024
    num_hidden_layers: int = 0
    max_position_embeddings: int = 1024
    substrate_fingerprint: str | None = None
    freeze_embeddings: bool = True
    use_cache: bool = True
    pad_token_id: int | None = 57344
    bos_token_id: int | None = 57345
    eos_token_id: int | list[int] | None = 57346
    # In transformers 5 this flag enables `_tied_weights_keys`; here that ties the experts'
    # identical frozen embeddings to expert 0's (one tensor in memory and on disk), never a head.
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs) -> None:
        # The no-argument constructor must work (transformers builds defaults with it).
        self.experts = [dict(expert) for expert in self.experts or []]
        check_merge_mode(self.mode)
        if self.adapter_hidden_size < 1:
            raise ValueError(f"adapter_hidden_size must be positive, not {self.adapter_hidden_size}")
        if self.experts:
            self._derive_from_experts()
        super().__post_init__(**kwargs)

    def _derive_from_experts(self) -> None:
        configs = self.expert_configs()
        for key in ("vocab_size", "hidden_size", "substrate_fingerprint"):
            values = {getattr(config, key, None) for config in configs}
            if len(values) > 1:
                raise ValueError(f"the experts disagree on {key}: {sorted(map(str, values))}")
        first = configs[0]
        self.vocab_size = first.vocab_size
        self.hidden_size = first.hidden_size
        self.substrate_fingerprint = getattr(first, "substrate_fingerprint", None)
        self.pad_token_id = first.pad_token_id
        self.bos_token_id = first.bos_token_id
        self.eos_token_id = first.eos_token_id
        self.num_hidden_layers = sum(config.num_hidden_layers for config in configs)
        self.max_position_embeddings = min(config.max_position_embeddings for config in configs)
        self.tie_word_embeddings = len(configs) > 1
        self.expert_weights = normalised_weights(self.expert_weights, len(configs))

    def expert_configs(self) -> list[ArceeConfig]:
        """The experts' configurations, in order."""
        return [ArceeConfig(**expert) for expert in self.experts]

    @property
    def expert_layer_counts(self) -> list[int]:
        return [config.num_hidden_layers for config in self.expert_configs()]


def normalised_weights(weights: list[float] | None, count: int) -> list[float]:
    """`count` positive weights scaled to sum to 1 (equal weights when `weights` is None)."""
    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count:
        raise ValueError(f"{len(weights)} weights given for {count} experts")
    if not all(math.isfinite(weight) and weight > 0 for weight in weights):
        raise ValueError(f"expert weights must be positive numbers, not {list(weights)}")
    total = math.fsum(weights)
    return [weight / total for weight in weights]


__all__ = ["MERGE_MODES", "PgtMergedConfig", "check_merge_mode", "expert_config_dict", "normalised_weights"]
