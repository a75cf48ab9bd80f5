"""Named model sizes: the published `abs-bvv-1` ... `abs-bvv-6` and `best-bvv`, plus small CPU sizes.

A preset fixes depth, heads and the width it was published with; the vocabulary is that
of its substrate family (the reference size plus our 256 byte-fallback ids). Sizes are
checked by instantiating the model on the meta device, which allocates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgt.errors import PgtError
from pgt.model.architecture import DEFAULT_CONTEXT, pgt_config
from pgt.substrate.layout import SMALL_FAMILY, get_family

if TYPE_CHECKING:
    from transformers import ArceeConfig


@dataclass(frozen=True, kw_only=True)
class Preset:
    """One named size. `published` is the size the reference reports, in billions."""

    name: str
    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    family: str
    published: float | None = None
    max_position_embeddings: int = DEFAULT_CONTEXT

    @property
    def vocab_size(self) -> int:
        """The family's: its reference layout plus the byte-fallback ids (pgt.substrate.layout)."""
        return get_family(self.family).vocab_size

    def config(self, **overrides: Any) -> ArceeConfig:
        """The preset as a PGT `ArceeConfig`; keyword arguments override its fields."""
        fields = {
            "num_hidden_layers": self.num_hidden_layers,
            "hidden_size": self.hidden_size,
            "num_attention_heads": self.num_attention_heads,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
        }
        return pgt_config(**{**fields, **overrides})


_PUBLISHED_ABS = (1.3, 1.5, 1.7, 1.9, 2.1, 2.3)  # abs-bvv-1 ... 6, billions

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in [
        *(
            Preset(
                name=f"abs-bvv-{k}",
                num_hidden_layers=k,
                hidden_size=4096,
                num_attention_heads=32,
                family="bvv241-abs",
                published=published,
            )
            for k, published in enumerate(_PUBLISHED_ABS, start=1)
        ),
        Preset(
            name="best-bvv",
            num_hidden_layers=16,
            hidden_size=1024,
            num_attention_heads=32,
            family="bvv241-max",
            published=0.5,
        ),
        # CPU sizes for tests, the demo and quick experiments.
        Preset(name="tiny", num_hidden_layers=2, hidden_size=64, num_attention_heads=4, family=SMALL_FAMILY),
        Preset(name="small", num_hidden_layers=4, hidden_size=256, num_attention_heads=8, family=SMALL_FAMILY),
        Preset(name="medium", num_hidden_layers=8, hidden_size=512, num_attention_heads=8, family=SMALL_FAMILY),
    ]
}


def get_preset(name: str) -> Preset:
    """The preset called `name`, or a PgtError listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise PgtError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None


def preset_config(name: str, **overrides: Any) -> ArceeConfig:
    """PGT `ArceeConfig` of the named preset, with optional field overrides."""
    return get_preset(name).config(**overrides)
