"""Named model sizes: the published `abs-bvv-1` ... `abs-bvv-6` and `best-bvv`, plus small CPU sizes.

A preset fixes depth, heads and the width it was published with; the vocabulary is that
of its substrate family (the reference size plus our 256 byte-fallback ids). Sizes are
checked by instantiating the model on the meta device, which allocates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pgt.errors import PgtError

if TYPE_CHECKING:
    from transformers import PretrainedConfig

    from pgt.model.configuration_pgt import PgtConfig

BYTE_FALLBACK_IDS = 256  # see pgt.substrate.layout: appended after the reference layout
VOCAB_131K = 131_072 + BYTE_FALLBACK_IDS  # bvv241-abs / bvv241-max
VOCAB_65K = 65_536 + BYTE_FALLBACK_IDS  # bvv241-2-3


@dataclass(frozen=True)
class Preset:
    """One named size. `published` is the size the reference reports, in billions."""

    name: str
    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    vocab_size: int
    family: str
    published: float | None = None
    max_position_embeddings: int = 1024

    def config(self, **overrides: object) -> PgtConfig:
        """The preset as a `PgtConfig`; keyword arguments override its fields."""
        from pgt.model.configuration_pgt import PgtConfig

        fields = {
            "num_hidden_layers": self.num_hidden_layers,
            "hidden_size": self.hidden_size,
            "num_attention_heads": self.num_attention_heads,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
        }
        return PgtConfig(**{**fields, **overrides})


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in [
        *(
            Preset(f"abs-bvv-{k}", k, 4096, 32, VOCAB_131K, "bvv241-abs", published)
            for k, published in zip(range(1, 7), (1.3, 1.5, 1.7, 1.9, 2.1, 2.3), strict=True)
        ),
        Preset("best-bvv", 16, 1024, 32, VOCAB_131K, "bvv241-max", 0.5),
        # CPU sizes for tests, the demo and quick experiments.
        Preset("tiny", 2, 64, 4, VOCAB_65K, "bvv241-2-3"),
        Preset("small", 4, 256, 8, VOCAB_65K, "bvv241-2-3"),
        Preset("medium", 8, 512, 8, VOCAB_65K, "bvv241-2-3"),
    ]
}


def get_preset(name: str) -> Preset:
    """The preset called `name`, or a PgtError listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise PgtError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None


def preset_config(name: str, **overrides: object) -> PgtConfig:
    """`PgtConfig` of the named preset, with optional field overrides."""
    return get_preset(name).config(**overrides)


def parameter_counts(config: PretrainedConfig) -> tuple[int, int]:
    """(total, trainable) parameters of the causal LM of `config` (a `PgtConfig` or a merged
    one), counted on the meta device. Trainable excludes the frozen substrate embedding."""
    import torch
    from transformers import AutoModelForCausalLM

    from pgt.model import register_auto_classes

    register_auto_classes()
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
