"""The PGT model: transformers' built-in `ArceeForCausalLM` on a frozen substrate, merged
experts, presets, model cards and model-directory loading.

Everything is imported lazily (PEP 562) so that `import pgt` and `pgt --help` stay fast:
torch and transformers load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgt.lazy import lazy_exports

if TYPE_CHECKING:
    from pgt.model.architecture import (
        build_model,
        from_substrate,
        new_decoder_layer,
        pgt_config,
    )
    from pgt.model.card import model_card
    from pgt.model.configuration_pgt_merged import PgtMergedConfig
    from pgt.model.frozen import freeze_embedding
    from pgt.model.hub import push_model
    from pgt.model.loading import (
        init_model_dir,
        load_model,
        parameter_counts,
        save_model,
        substrate_meta_of,
    )
    from pgt.model.modeling_pgt_merged import PgtMergedForCausalLM
    from pgt.model.presets import PRESETS, get_preset, preset_config

_EXPORTS = {
    "pgt_config": "architecture",
    "from_substrate": "architecture",
    "build_model": "architecture",
    "new_decoder_layer": "architecture",
    "freeze_embedding": "frozen",
    "PgtMergedConfig": "configuration_pgt_merged",
    "PgtMergedForCausalLM": "modeling_pgt_merged",
    "PRESETS": "presets",
    "get_preset": "presets",
    "preset_config": "presets",
    "parameter_counts": "loading",
    "model_card": "card",
    "init_model_dir": "loading",
    "load_model": "loading",
    "save_model": "loading",
    "substrate_meta_of": "loading",
    "push_model": "hub",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
