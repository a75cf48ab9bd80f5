"""The PGT model: transformers' built-in `ArceeForCausalLM` on a frozen substrate, merged
experts, presets, model cards and model-directory loading.

Everything is imported lazily (PEP 562) so that `import pgt` and `pgt --help` stay fast:
torch and transformers load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "pgt_config": "pgt.model.architecture",
    "from_substrate": "pgt.model.architecture",
    "build_model": "pgt.model.architecture",
    "new_decoder_layer": "pgt.model.architecture",
    "freeze_embedding": "pgt.model.frozen",
    "PgtMergedConfig": "pgt.model.configuration_pgt_merged",
    "PgtMergedForCausalLM": "pgt.model.modeling_pgt_merged",
    "PRESETS": "pgt.model.presets",
    "get_preset": "pgt.model.presets",
    "preset_config": "pgt.model.presets",
    "parameter_counts": "pgt.model.presets",
    "model_card": "pgt.model.card",
    "init_model_dir": "pgt.model.loading",
    "load_model": "pgt.model.loading",
    "save_model": "pgt.model.loading",
    "substrate_meta_of": "pgt.model.loading",
    "push_model": "pgt.model.hub",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
