"""The PGT model as transformers classes, presets, and model-directory loading.

Everything is imported lazily (PEP 562) so that `import pgt` and `pgt --help` stay fast:
torch and transformers load on first use of a model class.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

_EXPORTS = {
    "PgtConfig": "pgt.model.configuration_pgt",
    "PgtPreTrainedModel": "pgt.model.modeling_pgt",
    "PgtModel": "pgt.model.modeling_pgt",
    "PgtDecoderLayer": "pgt.model.modeling_pgt",
    "PgtForCausalLM": "pgt.model.modeling_pgt",
    "PgtMergedConfig": "pgt.model.configuration_pgt_merged",
    "PgtMergedForCausalLM": "pgt.model.modeling_pgt_merged",
    "PRESETS": "pgt.model.presets",
    "get_preset": "pgt.model.presets",
    "preset_config": "pgt.model.presets",
    "parameter_counts": "pgt.model.presets",
    "init_model_dir": "pgt.model.loading",
    "load_model": "pgt.model.loading",
    "save_model": "pgt.model.loading",
    "substrate_meta_of": "pgt.model.loading",
}

__all__ = [*_EXPORTS, "register_auto_classes"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_MODEL_MODULES = (
    "pgt.model.configuration_pgt",
    "pgt.model.modeling_pgt",
    "pgt.model.configuration_pgt_merged",
    "pgt.model.modeling_pgt_merged",
)
_WATCHED = ("transformers", *_MODEL_MODULES)
_registered = False


def _register_now() -> None:
    global _registered
    _registered = True
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from pgt.model.configuration_pgt import PgtConfig
    from pgt.model.configuration_pgt_merged import PgtMergedConfig
    from pgt.model.modeling_pgt import PgtForCausalLM, PgtModel
    from pgt.model.modeling_pgt_merged import PgtMergedForCausalLM

    AutoConfig.register(PgtConfig.model_type, PgtConfig, exist_ok=True)
    AutoModel.register(PgtConfig, PgtModel, exist_ok=True)
    AutoModelForCausalLM.register(PgtConfig, PgtForCausalLM, exist_ok=True)
    # save_pretrained then writes `auto_map` and copies the two self-contained source files,
    # so a directory loads with trust_remote_code where pgt is not installed.
    PgtConfig.register_for_auto_class()
    PgtModel.register_for_auto_class("AutoModel")
    PgtForCausalLM.register_for_auto_class("AutoModelForCausalLM")
    AutoConfig.register(PgtMergedConfig.model_type, PgtMergedConfig, exist_ok=True)
    AutoModelForCausalLM.register(PgtMergedConfig, PgtMergedForCausalLM, exist_ok=True)
    PgtMergedConfig.register_for_auto_class()
    PgtMergedForCausalLM.register_for_auto_class("AutoModelForCausalLM")


def _still_loading(name: str, finished: str) -> bool:
    module = sys.modules.get(name)
    spec = getattr(module, "__spec__", None)
    return name != finished and module is not None and bool(getattr(spec, "_initializing", False))


def _register_when_ready(finished: str) -> None:
    """Register once transformers is loaded and no PGT module is half-imported (a circular
    import: the outer import finishes later and calls this again)."""
    if _registered or "transformers" not in sys.modules:
        return
    if any(_still_loading(name, finished) for name in _WATCHED):
        return
    _register_now()


class _RegisterOnImport(importlib.abc.MetaPathFinder):
    """Import hook: after transformers or a PGT model module loads, try to register."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if _registered:
            sys.meta_path.remove(self)
            return None
        if fullname not in _WATCHED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        load = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            load(module)
            _register_when_ready(fullname)

        spec.loader.exec_module = exec_module
        return spec


def register_auto_classes() -> None:
    """Make `AutoConfig`/`AutoModel`/`AutoModelForCausalLM` know `model_type = "pgt"` (and
    `AutoConfig`/`AutoModelForCausalLM` the merged experts' `"pgt_merged"`).

    Registration needs torch and transformers, which `import pgt` must not pay for, so
    when transformers is not loaded yet this defers the work, through an import hook,
    to the moment it is.
    """
    if "transformers" in sys.modules:
        _register_when_ready("")
    if not _registered and not any(isinstance(finder, _RegisterOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterOnImport())
