"""The PGT model: transformers' built-in `ArceeForCausalLM` on a frozen substrate, merged
experts, presets, model cards and model-directory loading.

Everything is imported lazily (PEP 562) so that `import pgt` and `pgt --help` stay fast:
torch and transformers load on first use.
"""

from __future__ import annotations

from pgt.lazy import lazy_exports

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

__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
